"""Injected provider trouble (errors and slowness), switched at runtime over HTTP.

Tests of timeouts, retries and circuit breakers run the provider in another thread or
process, so the switch is the test-only ``/_faults`` route rather than a Python call. A rule
acts at the edge, before authentication and before any handler, the way an overloaded load
balancer would: an injected status means the request was not performed. A delay alone only
holds the request; it is then performed normally, even if the client has given up waiting,
which is exactly the case an ``Idempotency-Key`` exists for. Paths under ``/_`` are never
faulted, so a test can always clear what it set.

A rule may name ``accounts``: it then matches only requests whose bearer token was issued to
one of them (a provider's rate limits and revocations are per installation, not global).
A 429 can say when the limit resets as a real provider does: ``retry_after_s`` (``Retry-After``
in seconds), ``retry_after_date`` (the same as an HTTP date), and ``reset_s`` with
``reset_header`` (``X-RateLimit-Reset``, epoch seconds, as GitHub; ``RateLimit-Reset``,
seconds from now, as the IETF draft). An injected 401 is ``invalid_token`` with its challenge,
whatever token was sent: the provider refuses the installation, not one token. ``html`` makes
the reply an HTML page instead of the JSON error, as a proxy or load balancer in front of a
provider sends (same status and headers), for clients that must not choke on it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from standins.demo_provider.errors import REALM, ProviderError, error_response, invalid_request

FAULT_STATUSES = frozenset({401, 403, 429, 500, 502, 503, 504})
_MAX_DELAY_S = 300.0
_ERROR_CODES = {
    401: "invalid_token",
    403: "forbidden",
    429: "rate_limited",
    503: "temporarily_unavailable",
}
_CHALLENGES = {
    401: f'Bearer realm="{REALM}", error="invalid_token"',
    403: f'Bearer realm="{REALM}", error="insufficient_scope"',
}
RESET_HEADERS = ("X-RateLimit-Reset", "RateLimit-Reset")
_FIELDS = {
    "status",
    "delay_s",
    "count",
    "paths",
    "methods",
    "accounts",
    "retry_after_s",
    "retry_after_date",
    "reset_s",
    "reset_header",
    "html",
}


@dataclass(slots=True)
class FaultRule:
    id: int
    status: int | None
    delay_s: float
    remaining: int | None  # None: until cleared
    paths: tuple[str, ...]  # path prefixes; empty: every path
    methods: tuple[str, ...]  # empty: every method
    retry_after_s: int | None
    accounts: tuple[str, ...] = ()  # whose bearer token; empty: anyone's (or none)
    retry_after_date: bool = False  # Retry-After as an HTTP date instead of seconds
    reset_s: int | None = None
    reset_header: str = RESET_HEADERS[0]
    html: bool = False  # the reply is a proxy's HTML page, not the JSON error
    hits: int = 0

    def matches(self, method: str, path: str, account: str | None = None) -> bool:
        if self.methods and method not in self.methods:
            return False
        if self.accounts and account not in self.accounts:
            return False
        return not self.paths or any(path.startswith(prefix) for prefix in self.paths)

    def headers(self, now: float) -> dict[str, str]:
        """The headers of the injected reply: when to come back, and the challenge of a 401."""
        found: dict[str, str] = {}
        if self.status in _CHALLENGES:
            found["WWW-Authenticate"] = _CHALLENGES[self.status]
        if self.retry_after_s is not None:
            found["Retry-After"] = (
                formatdate(math.ceil(now + self.retry_after_s), usegmt=True)
                if self.retry_after_date
                else str(self.retry_after_s)
            )
        if self.reset_s is not None:
            epoch = self.reset_header.lower() == "x-ratelimit-reset"
            found[self.reset_header] = str(math.ceil(now + self.reset_s) if epoch else self.reset_s)
        return found

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "delay_s": self.delay_s,
            "count": self.remaining,
            "paths": list(self.paths),
            "methods": list(self.methods),
            "accounts": list(self.accounts),
            "retry_after_s": self.retry_after_s,
            "retry_after_date": self.retry_after_date,
            "reset_s": self.reset_s,
            "reset_header": self.reset_header,
            "html": self.html,
            "hits": self.hits,
        }


def _strings(body: dict[str, Any], name: str) -> tuple[str, ...]:
    value = body.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise invalid_request(f"{name} must be a list of non-empty strings or null")
    return tuple(value)


def _whole(body: dict[str, Any], name: str, least: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise invalid_request(f"{name} must be an integer >= {least} or null")
    return value


def parse_rule(body: dict[str, Any], rule_id: int) -> FaultRule:
    """``{"status"?, "delay_s"?, "count"?, "paths"?, "methods"?, "accounts"?,
    "retry_after_s"?, "retry_after_date"?, "reset_s"?, "reset_header"?, "html"?}``."""
    if unknown := sorted(set(body) - _FIELDS):
        raise invalid_request(f"unknown field(s): {', '.join(unknown)}")
    status = body.get("status")
    if status is not None and status not in FAULT_STATUSES:
        allowed = ", ".join(map(str, sorted(FAULT_STATUSES)))
        raise invalid_request(f"status must be one of {allowed}, or null")
    delay_s = body.get("delay_s", 0.0)
    if not isinstance(delay_s, int | float) or isinstance(delay_s, bool):
        raise invalid_request("delay_s must be a number")
    if not 0 <= delay_s <= _MAX_DELAY_S:
        raise invalid_request(f"delay_s must be between 0 and {_MAX_DELAY_S:g}")
    if status is None and delay_s == 0:
        raise invalid_request("a fault needs a status, a delay_s above 0, or both")
    methods = tuple(m.upper() for m in _strings(body, "methods"))
    retry_after_date = body.get("retry_after_date", False)
    if not isinstance(retry_after_date, bool):
        raise invalid_request("retry_after_date must be true or false")
    reset_header = body.get("reset_header", RESET_HEADERS[0])
    if reset_header not in RESET_HEADERS:
        raise invalid_request(f"reset_header must be one of: {', '.join(RESET_HEADERS)}")
    retry_after_s = _whole(body, "retry_after_s", 0)
    html = body.get("html", False)
    if not isinstance(html, bool):
        raise invalid_request("html must be true or false")
    if html and status is None:
        raise invalid_request("html needs a status")
    if retry_after_date and retry_after_s is None:
        raise invalid_request("retry_after_date needs retry_after_s")
    return FaultRule(
        rule_id,
        status,
        float(delay_s),
        _whole(body, "count", 1),
        _strings(body, "paths"),
        methods,
        retry_after_s,
        accounts=_strings(body, "accounts"),
        retry_after_date=retry_after_date,
        reset_s=_whole(body, "reset_s", 0),
        reset_header=reset_header,
        html=html,
    )


@dataclass(slots=True)
class FaultBook:
    """The active rules, first match wins; each match uses up one of the rule's ``count``."""

    rules: list[FaultRule] = field(default_factory=list)
    injected: int = 0
    _next_id: int = 1

    def add(self, body: dict[str, Any]) -> FaultRule:
        rule = parse_rule(body, self._next_id)
        self._next_id += 1
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    @property
    def by_account(self) -> bool:
        """Whether a rule needs to know whose token a request carries."""
        return any(rule.accounts for rule in self.rules)

    def take(self, method: str, path: str, account: str | None = None) -> FaultRule | None:
        for rule in self.rules:
            if rule.matches(method, path, account):
                rule.hits += 1
                self.injected += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self.rules.remove(rule)
                return rule
        return None


async def _buffered(receive: Receive) -> Receive:
    """Reads the whole request first, so a held request survives its client hanging up."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay


def bearer_token(scope: Scope) -> str | None:
    """The bearer token a request carries, if any (never logged or kept)."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer":
                return None
            return token.strip() or None
    return None


class FaultMiddleware:
    """Pure ASGI: applies the first matching rule (through ``take``) before the app runs."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        take: Callable[[str, str, str | None], FaultRule | None],
        clock: Callable[[], float],
    ) -> None:
        self.app = app
        self.take = take
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith("/_"):
            await self.app(scope, receive, send)
            return
        rule = self.take(scope["method"], path, bearer_token(scope))
        if rule is None:
            await self.app(scope, receive, send)
            return
        if rule.delay_s > 0:
            receive = await _buffered(receive)
            await asyncio.sleep(rule.delay_s)
        if rule.status is None:
            await self.app(scope, receive, send)
            return
        code = _ERROR_CODES.get(rule.status, "server_error")
        headers = rule.headers(self.clock())
        if rule.html:
            page = f"<html><body><h1>{rule.status}</h1><p>{code}</p></body></html>"
            await HTMLResponse(page, rule.status, headers)(scope, receive, send)
            return
        error = ProviderError(rule.status, code, f"injected fault #{rule.id}", headers)
        await error_response(error)(scope, receive, send)
