"""Injected provider trouble (errors and slowness), switched at runtime over HTTP.

Tests of timeouts, retries and circuit breakers run the provider in another thread or
process, so the switch is the test-only ``/_faults`` route rather than a Python call. A rule
acts at the edge, before authentication and before any handler, the way an overloaded load
balancer would: an injected status means the request was not performed. A delay alone only
holds the request; it is then performed normally, even if the client has given up waiting,
which is exactly the case an ``Idempotency-Key`` exists for. Paths under ``/_`` are never
faulted, so a test can always clear what it set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from system2.demo_provider.errors import ProviderError, error_response, invalid_request

FAULT_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_DELAY_S = 300.0
_ERROR_CODES = {429: "rate_limited", 503: "temporarily_unavailable"}
_FIELDS = {"status", "delay_s", "count", "paths", "methods", "retry_after_s"}


@dataclass(slots=True)
class FaultRule:
    id: int
    status: int | None
    delay_s: float
    remaining: int | None  # None: until cleared
    paths: tuple[str, ...]  # path prefixes; empty: every path
    methods: tuple[str, ...]  # empty: every method
    retry_after_s: int | None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.methods and method not in self.methods:
            return False
        return not self.paths or any(path.startswith(prefix) for prefix in self.paths)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "delay_s": self.delay_s,
            "count": self.remaining,
            "paths": list(self.paths),
            "methods": list(self.methods),
            "retry_after_s": self.retry_after_s,
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
    """``{"status"?, "delay_s"?, "count"?, "paths"?, "methods"?, "retry_after_s"?}``."""
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
    return FaultRule(
        rule_id,
        status,
        float(delay_s),
        _whole(body, "count", 1),
        _strings(body, "paths"),
        methods,
        _whole(body, "retry_after_s", 0),
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

    def take(self, method: str, path: str) -> FaultRule | None:
        for rule in self.rules:
            if rule.matches(method, path):
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


class FaultMiddleware:
    """Pure ASGI: applies the first matching rule (through ``take``) before the app runs."""

    def __init__(self, app: ASGIApp, *, take: Callable[[str, str], FaultRule | None]) -> None:
        self.app = app
        self.take = take

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith("/_"):
            await self.app(scope, receive, send)
            return
        rule = self.take(scope["method"], path)
        if rule is None:
            await self.app(scope, receive, send)
            return
        if rule.delay_s > 0:
            receive = await _buffered(receive)
            await asyncio.sleep(rule.delay_s)
        if rule.status is None:
            await self.app(scope, receive, send)
            return
        headers = {} if rule.retry_after_s is None else {"Retry-After": str(rule.retry_after_s)}
        code = _ERROR_CODES.get(rule.status, "server_error")
        error = ProviderError(rule.status, code, f"injected fault #{rule.id}", headers)
        await error_response(error)(scope, receive, send)
