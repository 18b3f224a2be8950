"""A lock in Redis with an owner token: only the owner releases it, and it lapses on its own
if its owner dies.

``async with RedisLock(client, key):`` on the worker's event loop: a step waiting for the
lock sleeps between tries (``asyncio.sleep``), costing the loop nothing. A step cancelled
while it holds the lock, or while its request for it is on the wire, releases it on the way
out (a second cancel during that release leaves it to lapse after ``ttl_ms``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from types import TracebackType

import redis
import redis.asyncio

from workers.errors import WorkerError

# Delete KEYS[1] only if it still holds the owner token ARGV[1].
RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)

FIRST_RETRY_S = 0.01
LONGEST_RETRY_S = 0.2


class LockTimeout(WorkerError):
    """Someone else held the lock for longer than we were willing to wait."""


class RedisLock:
    def __init__(
        self,
        client: redis.asyncio.Redis,
        key: str,
        *,
        ttl_ms: int = 15_000,
        wait_s: float = 20.0,
    ) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = ttl_ms
        self.wait_s = wait_s
        self.owner = uuid.uuid4().hex
        self.waited = False  # True if someone else held it when we asked

    async def __aenter__(self) -> RedisLock:
        deadline = time.monotonic() + self.wait_s
        delay = FIRST_RETRY_S
        while not await self._take():
            self.waited = True
            if time.monotonic() > deadline:
                raise LockTimeout(f"lock {self.key} still held after {self.wait_s:.0f}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, LONGEST_RETRY_S)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._release()

    async def _take(self) -> bool:
        """One try. Cut mid-request, Redis may have given us the lock without our knowing:
        release it (if it is ours) before the cancel goes on."""
        try:
            return bool(await self.client.set(self.key, self.owner, nx=True, px=self.ttl_ms))
        except BaseException:
            with contextlib.suppress(redis.RedisError):
                await self._release()
            raise

    async def _release(self) -> None:
        await self.client.eval(RELEASE, 1, self.key, self.owner)
