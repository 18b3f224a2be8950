"""The one place that builds a request to a provider from a tool's input.

The rule for every integration: a tool never concatenates a URL. It declares a ``Route`` —
a method, a path template whose variables are whole segments (``/api/v1/tasks/{id}``), and
which input fields go to the query string and which to the JSON body — and its JSON schema
(the one Claude sees, in the provider's module). ``RequestBuilder`` then

- at wiring time, refuses a route that does not fit its schema: every field of the schema is
  routed to exactly one place; a path variable is a required string with an anchored
  ``pattern`` (that admits neither ``.`` nor ``..``) and a ``maxLength``, or an integer;
- at call time, validates the whole input against the schema before anything else, checks
  each path value again against its pattern (whole string), refuses ``''``, ``.`` and ``..``,
  percent-encodes it as exactly one segment (``/ ? # %`` and every other reserved character
  encoded), and checks that the URL httpx will send has exactly the path it built — so no
  input can move a request, and the company's token with it, to another path.

An input that fails is an error for Claude and nothing else: no token is fetched, no HTTP
call is made, no call is recorded, no audit row is written. ``ProviderBase.url`` also builds
the fixed URLs of an integration's OAuth endpoints.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from integrations.errors import RouteError, UnsafePath
from integrations.schema import check_schema, validate

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_BODYLESS = frozenset({"GET", "DELETE"})
_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LITERAL = re.compile(r"[A-Za-z0-9._~-]+")  # RFC 3986 unreserved characters only
_DOTS = frozenset({"", ".", ".."})


def path_segment(value: str) -> str:
    """``value`` percent-encoded as exactly one path segment; ``''``, ``.``, ``..`` refused."""
    if value in _DOTS:
        raise UnsafePath(f"{value!r} cannot be a path segment")
    return quote(value, safe="")


def _segments(template: str) -> list[tuple[bool, str]]:
    """``(is_variable, text)`` for each segment of an absolute path template."""
    if not template.startswith("/") or template == "/":
        raise RouteError(f"path {template!r} must start with / and name a resource")
    found: list[tuple[bool, str]] = []
    for part in template[1:].split("/"):
        variable = _VARIABLE.fullmatch(part)
        if variable:
            found.append((True, variable.group(1)))
        elif _LITERAL.fullmatch(part) and part not in _DOTS:
            found.append((False, part))
        else:
            raise RouteError(
                f"path {template!r}: segment {part!r} must be plain text or one whole {{variable}}"
            )
    return found


class ProviderBase:
    """A provider's base URL, and the URLs under it."""

    def __init__(self, base_url: str) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise RouteError("a provider's base URL must be http(s)://host[:port][/prefix]")
        if url.query or url.fragment:
            raise RouteError("a provider's base URL carries no query or fragment")
        prefix = url.raw_path.decode("ascii").rstrip("/")
        if prefix:
            _segments(prefix)  # plain segments only
        self.url_base = url
        self.prefix = prefix

    def contains(self, url: httpx.URL) -> bool:
        """Whether ``url`` is under this base (same origin, path below its prefix)."""
        same_origin = (url.scheme, url.host, url.port) == (
            self.url_base.scheme,
            self.url_base.host,
            self.url_base.port,
        )
        return same_origin and url.raw_path.decode("ascii").startswith(self.prefix + "/")

    def url(self, template: str, values: Mapping[str, str] | None = None) -> httpx.URL:
        """The URL of ``template`` with each ``{name}`` replaced by ``values[name]`` as one
        encoded segment; ``UnsafePath`` if a value cannot be one."""
        values = values or {}
        parts = [
            path_segment(values[text]) if variable else text
            for variable, text in _segments(template)
        ]
        raw = (self.prefix + "/" + "/".join(parts)).encode("ascii")
        url = self.url_base.copy_with(raw_path=raw)
        same_origin = (url.scheme, url.host, url.port) == (
            self.url_base.scheme,
            self.url_base.host,
            self.url_base.port,
        )
        if url.raw_path != raw or not same_origin:  # httpx normalised something: never send it
            raise UnsafePath(f"the path {raw!r} would not be sent as built")
        return url


Check = Callable[[Mapping[str, Any]], str | None]


@dataclass(frozen=True)
class Route:
    """How a tool's input becomes a request: ``path`` is a template whose ``{name}`` segments
    are input fields; ``query`` and ``body`` name the fields sent in the query string and in the
    JSON body. ``check`` adds rules across fields that a schema cannot say (its answer, if
    any, is the error for Claude). ``fixed_query`` and ``fixed_body`` are what the provider
    needs whatever the input (``state: closed`` for a tool that closes an issue); an input
    field of the same name is refused at wiring time."""

    method: str
    path: str
    query: tuple[str, ...] = ()
    body: tuple[str, ...] = ()
    check: Check | None = None
    fixed_query: Mapping[str, str] = field(default_factory=dict)
    fixed_body: Mapping[str, Any] = field(default_factory=dict)

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(text for variable, text in _segments(self.path) if variable)


@dataclass(frozen=True)
class ProviderRequest:
    method: str
    url: httpx.URL  # the whole URL, without a query: httpx adds ``params``, encoded
    json: dict[str, Any] | None
    params: dict[str, str] | None
    path_values: Mapping[str, str] = field(default_factory=dict)  # checked, not yet encoded


def _query_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class RequestBuilder:
    """Builds one tool's requests: checked against its schema once, every input at call time."""

    def __init__(self, base: ProviderBase, schema: Mapping[str, Any], route: Route) -> None:
        check_schema(schema)
        if route.method not in METHODS:
            raise RouteError(f"method {route.method!r} is not one of {', '.join(sorted(METHODS))}")
        if route.method in _BODYLESS and (route.body or route.fixed_body):
            raise RouteError(f"a {route.method} request sends no body")
        if clash := (set(route.query) & set(route.fixed_query)) | (
            set(route.body) & set(route.fixed_body)
        ):
            raise RouteError(f"{route.path}: {sorted(clash)} both fixed and from the input")
        properties: Mapping[str, Any] = schema.get("properties", {})
        routed = [*route.variables, *route.query, *route.body]
        if len(set(routed)) != len(routed):
            raise RouteError(f"{route.path}: a field is routed to more than one place")
        if set(routed) != set(properties):
            missing, unknown = set(properties) - set(routed), set(routed) - set(properties)
            raise RouteError(
                f"{route.path}: every schema field is routed once "
                f"(not routed: {sorted(missing)}; not in the schema: {sorted(unknown)})"
            )
        for name in route.variables:
            _check_path_variable(name, properties[name], schema.get("required", []))
        for name in route.query:
            if properties[name]["type"] == "object":
                raise RouteError(f"query field {name!r} must be a scalar")
        self.base = base
        self.schema = schema
        self.route = route
        base.url(route.path, {name: "x" for name in route.variables})  # the template builds

    def build(self, tool_input: Mapping[str, Any]) -> ProviderRequest | str:
        """The request for ``tool_input``, or the reason it is refused (for Claude)."""
        if problem := validate(self.schema, tool_input):
            return problem
        inp = dict(tool_input)
        if self.route.check is not None and (problem := self.route.check(inp)):
            return problem
        properties = self.schema["properties"]
        values: dict[str, str] = {}
        for name in self.route.variables:
            text = str(inp[name])
            pattern = properties[name].get("pattern")
            if pattern is not None and not re.fullmatch(pattern, text):
                return f"input.{name} must match the pattern {pattern}"
            values[name] = text
        try:
            url = self.base.url(self.route.path, values)
        except UnsafePath as exc:
            return str(exc)
        params = {n: _query_text(inp[n]) for n in self.route.query if n in inp}
        params.update(self.route.fixed_query)
        body: dict[str, Any] | None = None
        if self.route.body or self.route.fixed_body:
            body = {n: inp[n] for n in self.route.body if n in inp} | dict(self.route.fixed_body)
        return ProviderRequest(self.route.method, url, body, params or None, values)


def _check_path_variable(name: str, prop: Mapping[str, Any], required: list[str]) -> None:
    if name not in required:
        raise RouteError(f"path variable {name!r} must be required by the schema")
    if prop["type"] == "integer":
        return
    pattern = prop.get("pattern")
    if prop["type"] != "string" or pattern is None or "maxLength" not in prop:
        raise RouteError(
            f"path variable {name!r} must be an integer or a string with a pattern and maxLength"
        )
    if not (pattern.startswith("^") and pattern.endswith("$") and not pattern.endswith("\\$")):
        raise RouteError(f"path variable {name!r}: its pattern must be anchored (^...$)")
    if any(re.fullmatch(pattern, dots) for dots in _DOTS):
        raise RouteError(f"path variable {name!r}: its pattern must not admit '', '.' or '..'")
