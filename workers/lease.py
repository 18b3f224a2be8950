"""One step of a quest runs at a time, anywhere.

The step claim in Postgres tells a redelivery from a duplicate, but a redelivery can also
happen while the first delivery still runs (a worker that fell silent long enough to be
declared dead). A short Redis lease, renewed every few seconds while the step runs, keeps the
second one out until the first finishes — or, if its worker really died, for a few seconds.
The renewals of every lease a process holds share one round trip (``run``, one of the
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

_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"


class StepLeases:
    def __init__(self, client: Redis, *, ttl_ms: int = 6_000) -> None:
        self.redis = client
        self.ttl_ms = ttl_ms
        self._held: dict[str, str] = {}
        self._release = client.register_script(RELEASE)
        self._renew = client.register_script(_RENEW)

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
            if not held:
                continue
            with contextlib.suppress(RedisError):
                async with self.redis.pipeline(transaction=False) as pipe:
                    for key, owner in held:
                        await self._renew(keys=[key], args=[owner, self.ttl_ms], client=pipe)
                    await pipe.execute()
