"""The shared guard store: live spend per quest and per company window, in Redis.

Every Claude call is reserved at its worst case before it is made and settled to its real
cost after, each in one Lua script, so concurrent steps cannot together pass a cap. A
reservation is keyed by the call's charge key: reserving or settling it twice does nothing
the second time. When counters are missing (Redis restarted or flushed) the caller's ledger
(Postgres) rebuilds them before anything is reserved — a budget never resets because
Redis did.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from redis.asyncio import Redis

from guard.errors import GuardUnavailable
from guard.policy import Limits, Tier
from guard.scripts import LuaScript, unavailable_on_redis_error

DAY_S = 86_400


@dataclass(frozen=True)
class Scope:
    """One counter a call is charged to: the quest, or a company budget window."""

    name: str  # "quest", "day" or "month"
    key: str
    cap: int  # micro-USD; 0 means no limit
    ttl_s: int
    window: str = ""  # "2026-11-29" / "2026-11" for windows


@dataclass(frozen=True)
class Refused:
    """The reservation does not fit ``scope``: spent + reserved + amount > the halt line."""

    scope: Scope
    spent: int
    reserved: int
    limit: int

    @property
    def available(self) -> int:
        return max(0, self.limit - self.spent - self.reserved)

    @property
    def left(self) -> int:
        """What spent money alone leaves before the halt line (calls in flight aside)."""
        return max(0, self.limit - self.spent)

    @property
    def exhausted(self) -> bool:
        """Spent money alone has reached the halt line: waiting will not help."""
        return self.spent >= self.limit


@dataclass(frozen=True)
class Reserved:
    amount: int
    duplicate: bool = False  # this charge key was reserved before (a redelivered step)
    settled: bool = False  # ... and that reservation has been settled since


@dataclass(frozen=True)
class ScopeLevel:
    scope: Scope
    spent: int
    tier: Tier
    crossed: bool  # this settlement moved the scope into ``tier``


class Guard:
    def __init__(
        self, client: Redis, *, prefix: str = "s2:g", reservation_ttl_s: int = 3 * DAY_S
    ) -> None:
        self.redis = client
        self.prefix = prefix
        self.reservation_ttl_s = reservation_ttl_s
        self._reserve = LuaScript(client, "reserve")
        self._settle = LuaScript(client, "settle")
        self._rebuild = LuaScript(client, "rebuild")

    # -- keys -------------------------------------------------------------------------------

    def scopes(
        self, company_id: UUID, quest_id: UUID, quest_cap: int, limits: Limits, at: datetime
    ) -> list[Scope]:
        """The quest and the company's current day and month windows (UTC). A window rolls
        over by its key's name; nothing has to reset it."""
        return [
            Scope("quest", f"{self.prefix}:q:{company_id}:{quest_id}", quest_cap, 30 * DAY_S),
            *self.window_scopes(company_id, limits, at),
        ]

    def window_scopes(self, company_id: UUID, limits: Limits, at: datetime) -> list[Scope]:
        """The company's day and month budget windows (UTC) that contain ``at``."""
        day, month = at.strftime("%Y-%m-%d"), at.strftime("%Y-%m")
        return [
            Scope(
                "day", f"{self.prefix}:d:{company_id}:{day}", limits.daily_budget, 3 * DAY_S, day
            ),
            Scope(
                "month",
                f"{self.prefix}:m:{company_id}:{month}",
                limits.monthly_budget,
                40 * DAY_S,
                month,
            ),
        ]

    def reservation_key(self, company_id: UUID, charge_key: str) -> str:
        return f"{self.prefix}:r:{company_id}:{charge_key}"

    # -- reserve and settle -----------------------------------------------------------------

    async def reserve(
        self,
        company_id: UUID,
        charge_key: str,
        amount: int,
        scopes: Sequence[Scope],
        limits: Limits,
        *,
        ledger: Callable[[Scope], Awaitable[tuple[int, int]]],
    ) -> Reserved | Refused:
        """Reserve ``amount`` against every scope at once, or refuse without reserving.

        ``ledger(scope)`` returns (spent, reserved) from the durable ledger; it is called only
        for a scope whose counters Redis no longer has.
        """
        args: list[Any] = [amount, limits.halt_pct, self.reservation_ttl_s]
        for s in scopes:
            args += [s.name, s.cap]
        keys = [self.reservation_key(company_id, charge_key), *(s.key for s in scopes)]
        by_name = {s.name: s for s in scopes}
        for _ in range(len(scopes) + 1):
            reply = await self._reserve(keys, args)
            status = _text(reply[0])
            if status == "ok":
                return Reserved(amount)
            if status == "dup":
                return Reserved(
                    int(reply[1]), duplicate=True, settled=reply[2] in (b"settled", "settled")
                )
            scope = by_name[_text(reply[1])]
            if status == "missing":
                await self.rebuild(scope, *(await ledger(scope)), limits)
                continue
            spent, reserved, cap = int(reply[2]), int(reply[3]), int(reply[4])
            return Refused(scope, spent, reserved, cap * limits.halt_pct // 100)
        raise GuardUnavailable("the guard's counters keep disappearing; is Redis evicting keys?")

    async def settle(
        self,
        company_id: UUID,
        charge_key: str,
        *,
        amount: int,
        actual: int,
        scopes: Sequence[Scope],
        limits: Limits,
    ) -> list[ScopeLevel]:
        """Settle a reservation to ``actual`` (or keep it: ``actual == amount``), once.

        Returns each scope's level after it; an empty list if it was settled before.
        ``scopes`` are used only if Redis lost the reservation's own record.
        """
        keys = [self.reservation_key(company_id, charge_key), *(s.key for s in scopes)]
        args = [
            amount,
            actual,
            limits.warn_pct,
            limits.slow_pct,
            limits.halt_pct,
            self.reservation_ttl_s,
        ]
        reply = await self._settle(keys, args)
        if _text(reply[0]) == "noop":
            return []
        by_key = {s.key: s for s in scopes}
        levels = []
        for i in range(1, len(reply), 5):
            key = _text(reply[i])
            scope = by_key.get(key) or _scope_from_key(key, int(reply[i + 2]))
            levels.append(
                ScopeLevel(scope, int(reply[i + 1]), Tier(int(reply[i + 3])), reply[i + 4] == 1)
            )
        return levels

    async def rebuild(self, scope: Scope, spent: int, reserved: int, limits: Limits) -> bool:
        """Recreate a scope's counters from the ledger unless they exist. True if it did."""
        tier = limits.tier_of(spent, scope.cap)
        done = await self._rebuild(
            [scope.key], [spent, reserved, scope.cap, int(tier), scope.ttl_s]
        )
        return bool(done)

    async def exhausted_windows(
        self,
        company_id: UUID,
        limits: Limits,
        at: datetime,
        *,
        ledger: Callable[[Scope], Awaitable[tuple[int, int]]],
        least: int = 1,
    ) -> list[Refused]:
        """The company's budget windows at ``at`` whose spent money alone leaves less than
        ``least`` (micro-USD, the least a call can cost) before the halt line, each as the
        refusal a reservation against it would get: every step that would charge it halts,
        however little it asks for, and waiting for calls in flight will not help (spent
        money never goes down). With ``least`` 1, the windows at the halt line
        (``Refused.exhausted``). Day before month; empty when none is.

        Reads only: ``ledger(scope)`` gives (spent, reserved) from the durable ledger for a
        window whose counters Redis does not have, as in ``reserve``; nothing is rebuilt or
        reserved. Lower tiers (warn, slow) and money merely reserved are not refusals here.
        """
        windows = [s for s in self.window_scopes(company_id, limits, at) if s.cap > 0]
        held = {s.key: (spent, reserved) for s, spent, reserved in await self.levels(windows)}
        found = []
        for scope in windows:
            spent, reserved = held[scope.key] if scope.key in held else await ledger(scope)
            refused = Refused(scope, spent, reserved, scope.cap * limits.halt_pct // 100)
            if refused.left < max(1, least):
                found.append(refused)
        return found

    async def levels(self, scopes: Sequence[Scope]) -> list[tuple[Scope, int, int]]:
        """(scope, spent, reserved) of each scope that Redis has, for status displays."""
        with unavailable_on_redis_error():
            async with self.redis.pipeline(transaction=False) as pipe:
                for s in scopes:
                    pipe.hmget(s.key, "spent", "reserved")
                replies = await pipe.execute()
        return [
            (s, int(r[0] or 0), int(r[1] or 0))
            for s, r in zip(scopes, replies, strict=True)
            if r[0] is not None
        ]


def window_bounds(name: str, at: datetime) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the "day" or "month" window containing ``at``."""
    if name == "day":
        start = datetime(at.year, at.month, at.day, tzinfo=UTC)
        return start, start + timedelta(days=1)
    start = datetime(at.year, at.month, 1, tzinfo=UTC)
    return start, datetime(at.year + (at.month == 12), at.month % 12 + 1, 1, tzinfo=UTC)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _scope_from_key(key: str, cap: int) -> Scope:
    kind = key.split(":")[-3] if key.count(":") >= 3 else "quest"
    name = {"q": "quest", "d": "day", "m": "month"}.get(kind, kind)
    return Scope(name, key, cap, 0, key.rsplit(":", 1)[-1] if name != "quest" else "")
