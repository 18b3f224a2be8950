"""Work one worker of the fleet does every interval: whoever takes the interval's Redis lock.

Every process runs the loop; the lock (held for the interval less a second) elects one per
interval, so the work neither stops with one process nor runs twice at once. A Redis or
Postgres failure skips that interval: the next one tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from store import StoreError


async def every_interval(
    client: Redis,
    lock: str,
    interval_s: int,
    work: Callable[[], Awaitable[object]],
    *,
    skipped: tuple[type[Exception], ...] = (),
) -> None:
    """Run ``work`` every ``interval_s`` in the process that takes ``lock``, until cancelled;
    ``skipped``: further failures that skip an interval."""
    while True:
        await asyncio.sleep(interval_s)
        with contextlib.suppress(RedisError, StoreError, *skipped):
            if await client.set(lock, uuid.uuid4().hex, nx=True, ex=max(1, interval_s - 1)):
                await work()
