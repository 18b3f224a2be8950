"""Everything one stand-in remembers, owned by its app (``app.state.slack``).

One lock guards it all. Handlers take it only around synchronous work (never across an
``await``), so it is held for microseconds; it is a thread lock rather than an asyncio one
so the state stays consistent when tests drive one app from several threads.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from standins.slack.edge import outcome
from standins.slack.faults import FaultBook, FaultRule
from standins.slack.ids import app_id
from standins.slack.journal import Entry, Journal
from standins.slack.oauth import Authority
from standins.slack.workspace import Directory, Team


class Slack:
    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        access_ttl_s: float,
        rotation: bool,
        clock: Callable[[], float],
    ) -> None:
        if access_ttl_s <= 0:
            raise ValueError("access_ttl_s must be positive")
        self.lock = threading.Lock()
        self.clock = clock
        self.app_id = app_id(client_id)
        self.oauth = Authority(client_id, client_secret, access_ttl_s, rotation, clock)
        self.directory = Directory()
        self.faults = FaultBook()
        self.journal = Journal()
        self.calls: Counter[tuple[str | None, str]] = Counter()  # (team, method) -> calls

    def admit(self, method: str, credentials: list[str]) -> tuple[str | None, FaultRule | None]:
        """At the edge: whose call this is, and the fault rule it meets, if any."""
        with self.lock:
            team = next(filter(None, map(self.oauth.team_of, credentials)), None)
            self.calls[team, method] += 1
            return team, self.faults.take(method, team)

    def record(
        self, method: str, team: str | None, status: int, body: bytes, rule: FaultRule | None
    ) -> None:
        ok, error = outcome(body)
        entry = Entry(method, team, status, ok, error, None if rule is None else rule.id)
        with self.lock:
            self.journal.add(entry)

    def stats(self) -> dict[str, Any]:
        """The ``GET /_stats`` document; holds no token, secret or message."""
        with self.lock:
            oauth = self.oauth
            names = set(self.directory.teams) | {t for t, _ in self.calls if t is not None}
            methods: Counter[str] = Counter()
            for (_, method), count in self.calls.items():
                methods[method] += count
            totals = {
                "codes_exchanged": oauth.exchanged.total(),
                "refreshes": oauth.refreshed.total(),
                "refresh_reuse_refused": oauth.reuse_refused.total(),
                "api_calls": methods.total(),
                "faults_injected": self.faults.injected,
            }
            return {
                "totals": totals,
                "methods": dict(sorted(methods.items())),
                "teams": {name: self._team_stats(name) for name in sorted(names)},
                "faults": [rule.view() for rule in self.faults.rules],
            }

    def _team_stats(self, name: str) -> dict[str, Any]:
        oauth = self.oauth
        calls = sorted((m, n) for (t, m), n in self.calls.items() if t == name)
        return {
            "codes_exchanged": oauth.exchanged[name],
            "refreshes": oauth.refreshed[name],
            "refresh_reuse_refused": oauth.reuse_refused[name],
            "installations": sum(g.team == name for g in oauth.grants.values()),
            "live_installations": sum(
                g.team == name and not g.revoked for g in oauth.grants.values()
            ),
            "methods": dict(calls),
        }

    def snapshot(self) -> dict[str, Any]:
        """The ``GET /_state`` document: every workspace, channel and message."""
        with self.lock:
            return {"teams": {t.id: _team_view(t) for t in self.directory.teams.values()}}


def _team_view(team: Team) -> dict[str, Any]:
    return {
        "id": team.id,
        "name": team.name,
        "domain": team.domain,
        "url": team.url,
        "bot_user_id": team.bot_user_id,
        "bot_id": team.bot_id,
        "installer_id": team.installer_id,
        "channels": [
            {
                **channel.view(),
                "messages": [
                    m.view(metadata=True, parent_user=channel.parent_user(m))
                    for m in channel.messages.values()
                ],
            }
            for channel in team.channels.values()
        ],
    }
