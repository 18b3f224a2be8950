"""Injected Slack trouble (rate limits, outages, error answers, slowness), set over HTTP.

Tests run the stand-in in another process, so the switch is the test-only ``/_faults``
route. A rule acts on Web API calls (``/api/<method>``) only, at the edge, before
authentication: an injected ``status`` means the call was not performed. Slack's own
refusals keep HTTP 200 and say ``ok: false``; ``error`` injects one of those (say
``token_revoked`` or ``channel_not_found``). A 429 is ``ratelimited`` with ``Retry-After``
(``retry_after_s``, 1 unless given; ``null`` leaves the header out). ``html`` answers a
proxy's HTML page instead of JSON. ``delay_s`` holds the call first; with no status or error
it is then performed normally even if the client has given up (a timeout after the
effect). ``after`` performs the call, then answers with the fault instead of the real
answer: the message was posted, but the client sees a failure. ``methods`` and ``teams``
narrow a rule to some method names and to tokens of some workspaces; ``count`` is how many
calls it hits (absent: until cleared). Paths under ``/_`` are never faulted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from standins.slack.errors import bad_request

FAULT_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_DELAY_S = 300.0
_ERROR_CODE = re.compile(r"[a-z][a-z0-9_]{1,63}")
_STATUS_ERRORS = {429: "ratelimited", 503: "service_unavailable"}
_FIELDS = {
    "status",
    "error",
    "delay_s",
    "after",
    "count",
    "methods",
    "teams",
    "html",
    "retry_after_s",
}


@dataclass(slots=True)
class FaultRule:
    id: int
    status: int | None  # None: HTTP 200 (with ``error``) or a delay alone
    error: str | None
    delay_s: float
    after: bool
    remaining: int | None  # None: until cleared
    methods: tuple[str, ...]  # Slack method names; empty: every method
    teams: tuple[str, ...]  # whose token; empty: anyone's (or none)
    html: bool
    retry_after_s: int | None
    hits: int = 0

    @property
    def answers(self) -> bool:
        """Whether the rule replaces the answer (rather than only holding the call)."""
        return self.status is not None or self.error is not None

    @property
    def code(self) -> str:
        return self.error or _STATUS_ERRORS.get(self.status or 0, "internal_error")

    def matches(self, method: str, team: str | None) -> bool:
        if self.methods and method not in self.methods:
            return False
        return not self.teams or team in self.teams

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "error": self.error,
            "delay_s": self.delay_s,
            "after": self.after,
            "count": self.remaining,
            "methods": list(self.methods),
            "teams": list(self.teams),
            "html": self.html,
            "retry_after_s": self.retry_after_s,
            "hits": self.hits,
        }


def _strings(body: dict[str, Any], name: str) -> tuple[str, ...]:
    value = body.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise bad_request(f"{name} must be a list of non-empty strings or null")
    return tuple(value)


def _whole(value: Any, name: str, least: int) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise bad_request(f"{name} must be an integer >= {least} or null")
    return value


def _switch(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false")
    return value


def _delay(body: dict[str, Any]) -> float:
    delay_s = body.get("delay_s", 0.0)
    if not isinstance(delay_s, int | float) or isinstance(delay_s, bool):
        raise bad_request("delay_s must be a number")
    if not 0 <= delay_s <= _MAX_DELAY_S:
        raise bad_request(f"delay_s must be between 0 and {_MAX_DELAY_S:g}")
    return float(delay_s)


def parse_rule(body: dict[str, Any], rule_id: int) -> FaultRule:
    """``{"status"?, "error"?, "delay_s"?, "after"?, "count"?, "methods"?, "teams"?,
    "html"?, "retry_after_s"?}``."""
    if unknown := sorted(set(body) - _FIELDS):
        raise bad_request(f"unknown field(s): {', '.join(unknown)}")
    status, error = body.get("status"), body.get("error")
    if status is not None and status not in FAULT_STATUSES:
        raise bad_request(f"status must be one of {sorted(FAULT_STATUSES)}, or null")
    if error is not None and not (isinstance(error, str) and _ERROR_CODE.fullmatch(error)):
        raise bad_request("error must be a Slack error code such as token_revoked")
    delay_s, after, html = _delay(body), _switch(body, "after"), _switch(body, "html")
    if status is None and error is None and delay_s == 0:
        raise bad_request("a fault needs a status, an error, a delay_s above 0, or some of them")
    if after and status is None and error is None:
        raise bad_request("after needs a status or an error to answer with")
    if html and (status is None or error is not None):
        raise bad_request("html needs a status and no error")
    default_retry = 1 if status == 429 else None
    return FaultRule(
        rule_id,
        status,
        error,
        delay_s,
        after,
        _whole(body.get("count"), "count", 1),
        _strings(body, "methods"),
        _strings(body, "teams"),
        html,
        _whole(body.get("retry_after_s", default_retry), "retry_after_s", 0),
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

    def take(self, method: str, team: str | None) -> FaultRule | None:
        for rule in self.rules:
            if rule.matches(method, team):
                rule.hits += 1
                self.injected += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self.rules.remove(rule)
                return rule
        return None
