"""Which Web API calls reached the stand-in and how each was answered: ``/_requests``.

One entry per ``/api/<method>`` call, written once the answer has gone out (faulted or
not): the method name, the workspace of the token it carried (``None`` for no token, or
one this stand-in never issued), the HTTP status, and ``ok`` / ``error`` from the body
(both ``None`` when the body was not JSON, as with an injected HTML page). Never a token.
The journal keeps the newest ``limit`` entries.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

JOURNAL_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Entry:
    method: str
    team: str | None
    status: int
    ok: bool | None
    error: str | None
    fault: int | None  # the id of the fault rule that hit the call, if any

    def view(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "team": self.team,
            "status": self.status,
            "ok": self.ok,
            "error": self.error,
            "fault": self.fault,
        }


class Journal:
    def __init__(self, limit: int = JOURNAL_LIMIT) -> None:
        self.entries: deque[Entry] = deque(maxlen=limit)

    def add(self, entry: Entry) -> None:
        self.entries.append(entry)

    def clear(self) -> None:
        self.entries.clear()

    def view(self, team: str | None = None) -> list[dict[str, Any]]:
        return [e.view() for e in self.entries if team is None or e.team == team]
