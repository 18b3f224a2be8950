"""Which requests reached the stand-in, whose token they carried, and how they were answered:
the test-only ``/_requests``.

Recorded at the outermost edge, after the reply, so injected faults and refusals are seen
with the status the client got. A token is never kept, only the login it was issued to
(``None`` without one, or for a token this stand-in never issued). Paths under ``/_`` are
not recorded. The journal keeps the newest ``limit`` entries; per-path counts are kept whole.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

JOURNAL_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Entry:
    method: str
    path: str
    query: str
    login: str | None
    status: int
    api_version: str | None  # the X-GitHub-Api-Version header as sent
    accept: str | None


class Journal:
    def __init__(self, limit: int = JOURNAL_LIMIT) -> None:
        self.entries: deque[Entry] = deque(maxlen=limit)
        self.paths: Counter[str] = Counter()
        self.logins: Counter[str] = Counter()

    def add(self, entry: Entry) -> None:
        self.entries.append(entry)
        self.paths[f"{entry.method} {entry.path}"] += 1
        if entry.login is not None:
            self.logins[entry.login] += 1

    def clear(self) -> None:
        self.entries.clear()

    def view(self, login: str | None = None) -> list[dict[str, Any]]:
        return [asdict(e) for e in self.entries if login is None or e.login == login]


class JournalMiddleware:
    """Pure ASGI: passes the request on, then records it with its status (through ``record``)."""

    def __init__(self, app: ASGIApp, *, record: Callable[[Scope, int], None]) -> None:
        self.app = app
        self.record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith("/_"):
            await self.app(scope, receive, send)
            return
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.record(scope, status)
