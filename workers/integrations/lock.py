"""A lock in Redis with an owner token: only the owner releases it, and it lapses on its own
if its owner dies."""

from __future__ import annotations

import time
import uuid
from types import TracebackType

import redis

from workers.errors import WorkerError

# Delete KEYS[1] only if it still holds the owner token ARGV[1].
RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


class LockTimeout(WorkerError):
    """Someone else held the lock for longer than we were willing to wait."""


class RedisLock:
    def __init__(
        self, client: redis.Redis, key: str, *, ttl_ms: int = 15_000, wait_s: float = 20.0
    ) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = ttl_ms
        self.wait_s = wait_s
        self.owner = uuid.uuid4().hex
        self.waited = False  # True if someone else held it when we asked

    def __enter__(self) -> RedisLock:
        deadline = time.monotonic() + self.wait_s
        delay = 0.01
        while not self.client.set(self.key, self.owner, nx=True, px=self.ttl_ms):
            self.waited = True
            if time.monotonic() > deadline:
                raise LockTimeout(f"lock {self.key} still held after {self.wait_s:.0f}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.client.eval(RELEASE, 1, self.key, self.owner)
