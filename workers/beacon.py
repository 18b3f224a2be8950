"""Each worker process says it is alive *and consuming*: every ``interval`` seconds it writes
``s2:workers:<host>:<pid>:<tag>`` (expiring) with its queues, pid, messages done and steps in
flight. A health check reads these keys (``system2.ops.health``); the demo and the tests wait
for them before submitting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from messages.redis_keys import WORKER_BEACON_PREFIX, worker_beacon_key


class Beacon:
    def __init__(
        self,
        client: Redis,
        queues: list[str],
        activity: Callable[[], dict[str, Any]],
        *,
        interval: float = 2.0,
    ) -> None:
        """``activity``: the consumer's figures (processed, last_message_at, in_flight)."""
        self._redis = client
        self._queues = sorted(queues)
        self._activity = activity
        self._interval = interval
        self._key = worker_beacon_key(socket.gethostname(), os.getpid(), uuid.uuid4().hex[:6])

    async def run(self) -> None:
        """Beat until cancelled; the key goes when the process stops consuming."""
        try:
            while True:
                state = {
                    "pid": os.getpid(),
                    "queues": self._queues,
                    **self._activity(),
                    "at": time.time(),
                }
                with contextlib.suppress(RedisError):
                    ttl = max(5, int(self._interval * 3))
                    await self._redis.set(self._key, json.dumps(state), ex=ttl)
                await asyncio.sleep(self._interval)
        finally:
            with contextlib.suppress(RedisError):
                await self._redis.delete(self._key)


def live_workers(client: redis.Redis) -> list[dict[str, Any]]:
    """The beacons of worker processes alive now (for operators' tools, which are sync)."""
    keys = list(client.scan_iter(match=f"{WORKER_BEACON_PREFIX}*", count=500))
    values = client.mget(keys) if keys else []
    return [json.loads(v) for v in values if v]
