"""When a step began waiting on something that is down, so that its wait is bounded from the
first failure and not from its last attempt: one Redis key per wait, set once, expiring well
after the bound (a wait that outlives Redis starts again: it only waits longer)."""

from __future__ import annotations

import contextlib
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError


class WaitClock:
    def __init__(self, client: Redis, *, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix

    async def waiting_since(self, key: str, *, bound_s: float) -> float:
        """The epoch time this wait began: now if it begins now."""
        now = time.time()
        name = f"{self.prefix}:{key}"
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(name, now, nx=True, ex=max(60, int(bound_s * 4)))
                pipe.get(name)
                _, since = await pipe.execute()
            return float(since or now)
        except RedisError:
            return now

    async def done(self, key: str) -> None:
        with contextlib.suppress(RedisError):
            await self.redis.delete(f"{self.prefix}:{key}")
