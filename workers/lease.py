"""One step of a quest runs at a time, anywhere.

The step claim in Postgres tells a redelivery from a duplicate, but a redelivery can also
happen while the first delivery still runs (a worker that fell silent long enough to be
declared dead). A short Redis lease, renewed every few seconds while the step runs, keeps the
second one out until the first finishes — or, if its worker really died, for a few seconds.
The renewals of every lease a process holds are one script call (``run``, one of the
process's supervised tasks).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from uuid import UUID

from redis.asyncio import Redis
from redis.exceptions import RedisError

from messages.redis_keys import step_lease_key
from workers.errors import NotStarted
from workers.integrations.lock import RELEASE

# Every lease the process holds, renewed by one script call: a thousand steps waiting on
# Claude cost one command every few seconds, not a thousand.
_RENEW_ALL = """
local ttl = ARGV[#ARGV]
local renewed = 0
for i, key in ipairs(KEYS) do
  if redis.call('get', key) == ARGV[i] then
    redis.call('pexpire', key, ttl)
    renewed = renewed + 1
  end
end
return renewed
"""
RENEW_CHUNK = 500  # leases per script call: Redis runs nothing else while a script runs


class StepLeases:
    def __init__(self, client: Redis, *, ttl_ms: int = 6_000) -> None:
        self.redis = client
        self.ttl_ms = ttl_ms
        self._held: dict[str, str] = {}
        self._release = client.register_script(RELEASE)
        self._renew = client.register_script(_RENEW_ALL)

    @contextlib.asynccontextmanager
    async def hold(self, quest_id: UUID) -> AsyncIterator[None]:
        """Run the block as the quest's only running step, or raise ``NotStarted``."""
        key, owner = step_lease_key(quest_id), uuid.uuid4().hex
        if not await self.redis.set(key, owner, nx=True, px=self.ttl_ms):
            wait = max(100, int(await self.redis.pttl(key)))
            raise NotStarted("another worker is running this quest's step", retry_after_ms=wait)
        self._held[key] = owner
        try:
            yield
        finally:
            self._held.pop(key, None)
            with contextlib.suppress(RedisError):
                await self._release(keys=[key], args=[owner])

    async def run(self) -> None:
        """Renew every held lease each third of its lifetime, until cancelled."""
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            held = list(self._held.items())
            for i in range(0, len(held), RENEW_CHUNK):
                chunk = held[i : i + RENEW_CHUNK]
                with contextlib.suppress(RedisError):
                    await self._renew(
                        keys=[key for key, _ in chunk],
                        args=[*(owner for _, owner in chunk), self.ttl_ms],
                    )
