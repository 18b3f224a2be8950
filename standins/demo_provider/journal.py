"""Which requests reached the provider, and with whose token: the test-only ``/_requests``.

Recorded at the outermost edge, before faults, routing and authentication, so a request that
a route would refuse (or that no route serves) is still seen, with the path exactly as it
arrived. A bearer token is never kept: only the account it was issued to (``None`` for no
token, another scheme, or a token this provider never issued). Paths under ``/_`` are not
recorded. The journal keeps the newest ``limit`` entries.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

JOURNAL_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Entry:
    method: str
    path: str  # percent-decoded, as routing sees it
    raw_path: str  # as sent on the wire (without the query)
    query: str
    auth_scheme: str | None  # "bearer", "basic", ... or None
    account: str | None  # whose token it carried, if a bearer token this provider issued

    def view(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "raw_path": self.raw_path,
            "query": self.query,
            "auth_scheme": self.auth_scheme,
            "account": self.account,
        }


class Journal:
    def __init__(self, limit: int = JOURNAL_LIMIT) -> None:
        self.entries: deque[Entry] = deque(maxlen=limit)

    def add(self, entry: Entry) -> None:
        self.entries.append(entry)

    def clear(self) -> None:
        self.entries.clear()

    def view(self, account: str | None = None) -> list[dict[str, Any]]:
        return [e.view() for e in self.entries if account is None or e.account == account]


def _authorization(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return ""


class JournalMiddleware:
    """Pure ASGI: records each HTTP request (through ``record``), then passes it on."""

    def __init__(self, app: ASGIApp, *, record: Callable[[Scope, str, str], None]) -> None:
        self.app = app
        self.record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("path", "").startswith("/_"):
            scheme, _, credentials = _authorization(scope).partition(" ")
            self.record(scope, scheme.lower(), credentials.strip())
        await self.app(scope, receive, send)


def entry(scope: Scope, scheme: str, account: str | None) -> Entry:
    raw: bytes = scope.get("raw_path") or scope.get("path", "").encode()
    return Entry(
        method=scope["method"],
        path=scope.get("path", ""),
        raw_path=raw.decode("latin-1"),
        query=scope.get("query_string", b"").decode("latin-1"),
        auth_scheme=scheme or None,
        account=account,
    )
