"""Injected GitHub trouble, switched at runtime over the test-only ``/_faults`` route.

A rule acts at the edge, before authentication and rate counting, as a load balancer or
GitHub's abuse detection would. ``status`` (or ``kind``) answers instead of performing the
request; ``delay_s`` alone holds the request, then performs it even if the client has given
up; ``after`` performs the request first and then answers the fault (the effect happened,
the client sees a failure). ``kind`` is GitHub's rate-limit shapes: ``primary_rate_limit``
(403 or 429 with ``x-ratelimit-remaining: 0`` and ``x-ratelimit-reset``) and
``secondary_rate_limit`` (403 or 429 with ``retry-after`` and GitHub's message); a bare 429
is the secondary one. ``logins`` limits a rule to tokens of those users, ``html`` sends a
proxy's HTML page instead of JSON. Paths under ``/_`` are never faulted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# 200 only with html: a proxy or captive portal answering for GitHub with a page of its own
FAULT_STATUSES = frozenset({200, 401, 403, 404, 422, 429, 500, 502, 503, 504})
KINDS = ("primary_rate_limit", "secondary_rate_limit")
MAX_DELAY_S = 300.0
_FIELDS = {"status", "kind", "delay_s", "after", "count", "paths", "methods", "logins"}
_FIELDS |= {"html", "retry_after_s", "reset_s"}


class FaultRefused(ValueError):
    """A rule ``POST /_faults`` cannot take; the message says why."""


@dataclass(slots=True)
class FaultRule:
    id: int
    status: int | None
    kind: str | None
    delay_s: float = 0.0
    after: bool = False
    remaining: int | None = None  # None: until cleared
    paths: tuple[str, ...] = ()  # path prefixes; empty: every path
    methods: tuple[str, ...] = ()
    logins: tuple[str, ...] = ()  # whose token; empty: anyone's, or none
    html: bool = False
    retry_after_s: int | None = None
    reset_s: int = 60
    hits: int = 0

    @property
    def answers(self) -> bool:
        """Whether the client gets an injected reply (not only a delay)."""
        return self.status is not None

    def matches(self, method: str, path: str, login: str | None) -> bool:
        if self.methods and method not in self.methods:
            return False
        if self.logins and (login is None or login.lower() not in self.logins):
            return False
        return not self.paths or any(path.startswith(prefix) for prefix in self.paths)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "kind": self.kind,
            "delay_s": self.delay_s,
            "after": self.after,
            "count": self.remaining,
            "paths": list(self.paths),
            "methods": list(self.methods),
            "logins": list(self.logins),
            "html": self.html,
            "retry_after_s": self.retry_after_s,
            "reset_s": self.reset_s,
            "hits": self.hits,
        }


def _strings(body: dict[str, Any], name: str) -> tuple[str, ...]:
    value = body.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise FaultRefused(f"{name} must be a list of non-empty strings")
    return tuple(value)


def _whole(body: dict[str, Any], name: str, least: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise FaultRefused(f"{name} must be an integer >= {least}")
    return value


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise FaultRefused(f"{name} must be true or false")
    return value


def _status_and_kind(body: dict[str, Any]) -> tuple[int | None, str | None]:
    status, kind = body.get("status"), body.get("kind")
    if status is not None and status not in FAULT_STATUSES:
        raise FaultRefused(f"status must be one of {sorted(FAULT_STATUSES)}")
    if kind is not None and kind not in KINDS:
        raise FaultRefused(f"kind must be one of {', '.join(KINDS)}")
    if kind is not None and status not in (None, 403, 429):
        raise FaultRefused("a rate-limit kind answers 403 or 429")
    if status == 429 and kind is None:
        kind = "secondary_rate_limit"
    if kind is not None and status is None:
        status = 403
    return status, kind


def _delay(body: dict[str, Any]) -> float:
    delay_s = body.get("delay_s", 0.0)
    if not isinstance(delay_s, int | float) or isinstance(delay_s, bool):
        raise FaultRefused("delay_s must be a number")
    if not 0 <= delay_s <= MAX_DELAY_S:
        raise FaultRefused(f"delay_s must be between 0 and {MAX_DELAY_S:g}")
    return float(delay_s)


def parse_rule(body: dict[str, Any], rule_id: int) -> FaultRule:
    if unknown := sorted(set(body) - _FIELDS):
        raise FaultRefused(f"unknown field(s): {', '.join(unknown)}")
    status, kind = _status_and_kind(body)
    delay_s = _delay(body)
    if status is None and delay_s == 0:
        raise FaultRefused("a fault needs a status, a kind, a delay_s above 0, or both")
    html = _flag(body, "html")
    if html and status is None:
        raise FaultRefused("html needs a status")
    if status == 200 and not html:
        raise FaultRefused("status 200 is a proxy's page: it needs html")
    return FaultRule(
        rule_id,
        status,
        kind,
        delay_s=delay_s,
        after=_flag(body, "after"),
        remaining=_whole(body, "count", 1),
        paths=_strings(body, "paths"),
        methods=tuple(m.upper() for m in _strings(body, "methods")),
        logins=tuple(login.lower() for login in _strings(body, "logins")),
        html=html,
        retry_after_s=_whole(body, "retry_after_s", 0),
        reset_s=_default(_whole(body, "reset_s", 0), 60),
    )


def _default(value: int | None, default: int) -> int:
    return default if value is None else value


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
    def by_login(self) -> bool:
        return any(rule.logins for rule in self.rules)

    def take(self, method: str, path: str, login: str | None) -> FaultRule | None:
        for rule in self.rules:
            if rule.matches(method, path, login):
                rule.hits += 1
                self.injected += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self.rules.remove(rule)
                return rule
        return None
