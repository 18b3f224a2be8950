"""DoS-by-prompt: how many quests a company may start per minute and run at once."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from redis.asyncio import Redis

from guard.scripts import LuaScript, unavailable_on_redis_error


@dataclass(frozen=True)
class Admission:
    ok: bool
    retry_after_ms: int = 0
    reason: str = ""

    @property
    def retry_after_s(self) -> int:
        return max(1, -(-self.retry_after_ms // 1000))


class Admissions:
    def __init__(self, client: Redis, *, prefix: str = "s2:g") -> None:
        self.redis = client
        self.prefix = prefix
        self._rate = LuaScript(client, "rate")
        self._slot = LuaScript(client, "slot")

    async def start(self, company_id: UUID, per_minute: int, now_ms: int) -> Admission:
        """Count one quest start in the company's current minute, if there is room."""
        minute = now_ms // 60_000
        n = await self._rate([f"{self.prefix}:rate:{company_id}:{minute}"], [per_minute, 120])
        if int(n) < 0:
            wait = 60_000 - now_ms % 60_000
            return Admission(False, wait, f"more than {per_minute} quest starts a minute")
        return Admission(True)

    async def take_slot(
        self, company_id: UUID, quest_id: UUID, limit: int, now_ms: int, ttl_ms: int
    ) -> Admission:
        """Hold (or refresh) one of the company's running-quest slots for ``ttl_ms``."""
        held, wait = await self._slot(
            [self.slots_key(company_id)], [str(quest_id), now_ms, ttl_ms, limit]
        )
        if int(held):
            return Admission(True)
        return Admission(
            False, max(100, int(wait)), f"{limit} quests of this company are already running"
        )

    async def release_slot(self, company_id: UUID, quest_id: UUID) -> None:
        with unavailable_on_redis_error():
            await self.redis.zrem(self.slots_key(company_id), str(quest_id))

    async def running(self, company_id: UUID, now_ms: int) -> list[str]:
        """Quests holding a live slot."""
        with unavailable_on_redis_error():
            members = await self.redis.zrangebyscore(self.slots_key(company_id), now_ms, "+inf")
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]

    def slots_key(self, company_id: UUID) -> str:
        return f"{self.prefix}:slots:{company_id}"
