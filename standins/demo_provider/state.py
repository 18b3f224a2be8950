"""Everything one provider instance remembers, owned by its app (``app.state.provider``).

One lock guards it all. Handlers take it only around synchronous work (never across an
``await``), so it is held for microseconds; it is a thread lock rather than an asyncio one
so the state stays consistent even when several test clients drive one app from threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from starlette.types import Scope

from standins.demo_provider.faults import FaultBook, FaultRule
from standins.demo_provider.journal import Journal, entry
from standins.demo_provider.oauth import Authority
from standins.demo_provider.tasks import Account, TaskBook


class Provider:
    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        access_ttl_s: float,
        clock: Callable[[], float],
    ) -> None:
        if access_ttl_s <= 0:
            raise ValueError("access_ttl_s must be positive")
        self.lock = threading.Lock()
        self.clock = clock
        self.oauth = Authority(client_id, client_secret, access_ttl_s, clock)
        self.tasks = TaskBook(clock)
        self.faults = FaultBook()
        self.unauthorized = 0  # API requests refused with 401
        self.journal = Journal()  # which paths were reached, with whose token

    def record_request(self, scope: Scope, scheme: str, credentials: str) -> None:
        with self.lock:
            account = self.oauth.holder(credentials) if scheme == "bearer" else None
            self.journal.add(entry(scope, scheme, account))

    def take_fault(self, method: str, path: str, bearer: str | None) -> FaultRule | None:
        with self.lock:
            account = self.oauth.holder(bearer) if bearer and self.faults.by_account else None
            return self.faults.take(method, path, account)

    def stats(self) -> dict[str, Any]:
        """The ``GET /_stats`` document; holds no token, secret or task content."""
        with self.lock:
            accounts: dict[str, dict[str, Any]] = {
                name: {**account.view(), "refreshes": 0, "families": {}}
                for name, account in self.tasks.accounts.items()
            }
            for family in self.oauth.families.values():
                entry = accounts.setdefault(
                    family.account,
                    {**Account(family.account).view(), "refreshes": 0, "families": {}},
                )
                entry["refreshes"] += family.refreshes
                entry["families"][family.id] = family.view()
            totals = {
                key: sum(entry[key] for entry in accounts.values())
                for key in ("requests", "mutations", "idempotent_replays", "refreshes")
            }
            totals |= {
                "families": len(self.oauth.families),
                "refresh_reuse_detected": self.oauth.reuse_detected,
                "unauthorized": self.unauthorized,
                "faults_injected": self.faults.injected,
            }
            return {
                "accounts": accounts,
                "totals": totals,
                "faults": [rule.view() for rule in self.faults.rules],
            }
