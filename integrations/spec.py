"""What a provider is, as data: its OAuth endpoints, its API's conventions and its tools.

A provider module (``integrations.providers.*``) declares one ``Provider`` and the little
code its API needs: how each tool's answer reads for Claude, which answers mean "rate
limited" or "token refused", and, for a mutation the provider cannot deduplicate, how to
mark what we create and find it again. Everything else (building URLs, tokens, retries,
breakers, records, audit rows) is the same for every provider and lives in the workers.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import httpx

from integrations.routes import Route


@dataclass(frozen=True)
class ToolOutcome:
    """What the tool tells Claude, and for a state change, what the audit row records."""

    content: str
    is_error: bool = False
    action: str | None = None
    target: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """A provider's answer to one tool call: the response to the tool's request, the further
    pages its ``Link`` header led to, and the answers to the tool's ``also`` requests."""

    response: httpx.Response
    pages: tuple[httpx.Response, ...] = ()
    also: tuple[httpx.Response, ...] = ()

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self.response.headers

    def json(self) -> Any:
        return self.response.json()


Render = Callable[[Answer, Mapping[str, Any]], ToolOutcome]


def json_object(resp: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or ``{}`` if its body is anything else (a proxy's HTML
    page, a list, bytes that are not UTF-8): never parsed further, never echoed."""
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class Verdict(enum.Enum):
    """What a provider's response means before any tool reads it."""

    ANSWER = "answer"  # for the tool to render (a 4xx included: it is about this call)
    RATE_LIMITED = "rate_limited"  # this company's limit: not performed; wait for the reset
    UNAUTHORIZED = "unauthorized"  # the token is refused: refresh once, then reconnect
    FAILING = "failing"  # the provider's own trouble: retried, counted by its breaker


def http_verdict(resp: httpx.Response) -> Verdict:
    """The plain HTTP reading: 429, 401 and 5xx mean what RFC 9110 and RFC 6750 say."""
    status = resp.status_code
    if status == 429:
        return Verdict.RATE_LIMITED
    if status == 401:
        return Verdict.UNAUTHORIZED
    if status >= 500:
        return Verdict.FAILING
    return Verdict.ANSWER


@dataclass(frozen=True)
class Lookup:
    """A GET that finds what an earlier attempt of a mutation made, by our marker in it.
    ``path``'s variables are the tool's own; ``params`` are the query for the tool's input and
    the time the call was first recorded (minus a margin for the provider's clock); ``find``
    is the made thing in one page of the answer, if there. ``answered``: whether a page is a
    real listing (a refusal in a 200 is not: then nobody knows, and nothing is sent again).
    Pages follow ``Link: rel="next"``, or ``cursor`` (the next page's ``cursor`` parameter,
    from a page), ``pages`` at most."""

    path: str
    params: Callable[[Mapping[str, Any], datetime], dict[str, str]]
    find: Callable[[Any, str], Mapping[str, Any] | None]
    answered: Callable[[Any], bool]
    pages: int = 3
    cursor: Callable[[Any], str | None] | None = None


@dataclass(frozen=True)
class Effect:
    """How a mutation is made exactly once where the provider takes no idempotency key:
    ``mark`` puts the call's key in what we send (hidden: an HTML comment in a GitHub body,
    Slack's message metadata); a retry of a call that may have been performed first looks
    it up (``lookup``) and, found, reports it (``made``) instead of making it again."""

    mark: Callable[[dict[str, Any], str], dict[str, Any]]
    lookup: Lookup
    made: Callable[[Mapping[str, Any], Mapping[str, Any]], ToolOutcome]


@dataclass(frozen=True)
class ToolSpec:
    """One tool: what Claude is shown (name, description, JSON schema), the request its input
    becomes (``route``: see ``integrations.routes``) and how the answer reads (``render``).
    A tool that ``mutates`` gets an idempotency key and an audit row (whose action its
    outcomes name: ``action`` is that name, for the reader);
    ``effect`` says how its mutation is made once at a provider that takes no key.
    ``pages`` bounds the ``Link: rel="next"`` pages followed; ``also`` are further GETs that
    share the tool's path variables (an issue's comments)."""

    name: str
    description: str
    input_schema: dict[str, Any]
    route: Route
    render: Render
    mutates: bool = False
    action: str = ""
    pages: int = 1
    also: tuple[Route, ...] = ()
    effect: Effect | None = None


@dataclass(frozen=True)
class OAuthSpec:
    """The provider's OAuth 2.0 authorization-code flow (RFC 6749), paths under its OAuth
    base URL. ``client_auth``: how the token endpoint takes our client secret (``basic``:
    RFC 6749 §2.3.1's preferred way; ``form``: in the body, as GitHub wants). ``pkce``:
    RFC 7636 with S256. ``refused_refresh``: the error codes that mean the refresh token is
    no good any more (taken as ``invalid_grant``). ``account``: who connected, from the
    token reply (shown in ``integration list``); or ``whoami``: an API path and the field of
    its answer that names them, for a provider whose token reply does not."""

    authorize_path: str
    token_path: str
    scopes: tuple[str, ...]
    scope_separator: str = " "
    pkce: bool = True
    client_auth: Literal["basic", "form"] = "basic"
    refused_refresh: tuple[str, ...] = ("invalid_grant",)
    account: Callable[[Mapping[str, Any]], str | None] = lambda _: None
    whoami: tuple[str, str] | None = None
    authorize_params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Provider:
    """An integration: everything about it that is not a company's.

    ``api_url`` and ``oauth_url`` are the defaults of ``S2_<NAME>_PROVIDER_URL`` and
    ``S2_<NAME>_OAUTH_URL`` (a stand-in's address in tests and the demo). ``client_id`` and
    ``client_secret`` are the dev defaults of ``S2_<NAME>_CLIENT_ID`` and
    ``S2_<NAME>_CLIENT_SECRET``: public, so staging and production refuse them. ``headers``
    go with every API call. ``idempotency_header``: the header a provider deduplicates
    mutations by, if it has one. ``dev_only``: refused in staging and production.
    ``rate_limit_wait_s`` and ``rate_limit_max_s`` are what the provider's documented limits
    need beyond the defaults (GitHub: at least a minute; its hourly reset)."""

    name: str
    title: str
    api_url: str
    oauth_url: str
    oauth: OAuthSpec
    tools: tuple[ToolSpec, ...]
    client_id: str
    client_secret: str
    headers: Mapping[str, str] = field(default_factory=dict)
    verdict: Callable[[httpx.Response], Verdict] = http_verdict
    idempotency_header: str | None = None
    dev_only: bool = False
    rate_limit_wait_s: int | None = None  # a rate limit that says no reset: wait this long
    rate_limit_max_s: int | None = None  # a call may wait this long on its limits (or more)
