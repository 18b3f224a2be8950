"""Everything one stand-in remembers, owned by its app (``app.state.github``).

One thread lock guards it all. Handlers take it only around synchronous work, never across
an ``await``, so it is held for microseconds; a thread lock rather than an asyncio one keeps
the state consistent when tests drive one app from several threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from starlette.types import Scope

from standins.github.faults import FaultBook, FaultRule
from standins.github.journal import Entry, Journal
from standins.github.oauth import Authority
from standins.github.presented import header, token_of
from standins.github.ratelimit import Quota, RateLimits
from standins.github.repos import RepoBook


def resource_of(path: str) -> str:
    return "search" if path.startswith("/search/") else "core"


class GitHub:
    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        access_ttl_s: float,
        refresh_ttl_s: float,
        rate_limit: int,
        search_rate_limit: int,
        clock: Callable[[], float],
    ) -> None:
        if access_ttl_s <= 0 or refresh_ttl_s <= 0:
            raise ValueError("token lifetimes must be positive")
        self.lock = threading.Lock()
        self.clock = clock
        self.oauth = Authority(client_id, client_secret, access_ttl_s, refresh_ttl_s, clock)
        self.repos = RepoBook(clock)
        self.faults = FaultBook()
        self.limits = RateLimits(rate_limit, search_rate_limit)
        self.journal = Journal()
        self.unauthorized = 0  # API requests refused with 401

    def login_for(self, token: str) -> str | None:
        with self.lock:
            return self.oauth.login_for(token)

    def take_fault(
        self, method: str, path: str, scope: Scope
    ) -> tuple[FaultRule | None, str | None]:
        token = token_of(scope)
        with self.lock:
            login = self.oauth.login_for(token) if token else None
            return self.faults.take(method, path, login), login

    def peek(self, login: str | None, path: str) -> Quota | None:
        return None if login is None else self.quota(login, path)

    def quota(self, login: str, path: str) -> Quota:
        """The caller's budget for ``path``'s resource, without counting a request."""
        with self.lock:
            return self.limits.peek(login, resource_of(path), self.clock())

    def count(self, login: str, path: str) -> tuple[Quota, bool]:
        with self.lock:
            return self.limits.take(login, resource_of(path), self.clock())

    def anonymous(self, address: str, *, refused: bool) -> Quota:
        with self.lock:
            self.unauthorized += refused
            return self.limits.anonymous(address, self.clock())

    def record(self, scope: Scope, status: int) -> None:
        token = token_of(scope)
        with self.lock:
            login = self.oauth.holder(token) if token else None
            self.journal.add(
                Entry(
                    method=scope["method"],
                    path=scope.get("path", ""),
                    query=scope.get("query_string", b"").decode("latin-1"),
                    login=login,
                    status=status,
                    api_version=header(scope, b"x-github-api-version"),
                    accept=header(scope, b"accept"),
                )
            )

    def stats(self) -> dict[str, Any]:
        """``GET /_stats``: counts only, never a token, a digest or issue content."""
        with self.lock:
            oauth = self.oauth.counts
            names = (
                *("codes_issued", "codes_exchanged", "code_refusals", "client_refusals"),
                *("refreshes", "refresh_refusals", "refresh_reuse_refused", "revocations"),
            )
            return {
                **{name: oauth.get(name, 0) for name in names},
                "unauthorized": self.unauthorized,
                "rate_limited": self.limits.refused,
                "faults_injected": self.faults.injected,
                "repos": len(self.repos.repos),
                "issues": sum(len(r.issues) for r in self.repos.repos.values()),
                "requests": dict(self.journal.paths),
                "requests_by_login": dict(self.journal.logins),
            }
