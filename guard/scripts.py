"""The guard's Lua scripts: EVALSHA, loaded again if Redis forgot them (after a restart)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any

import redis
from redis.asyncio import Redis

from guard.errors import GuardUnavailable


class LuaScript:
    def __init__(self, client: Redis, name: str) -> None:
        self.client = client
        self.source = (
            resources.files("guard").joinpath(f"lua/{name}.lua").read_text(encoding="utf-8")
        )
        self.sha = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run it; a Redis failure becomes ``GuardUnavailable`` (no call is made uncounted)."""
        with unavailable_on_redis_error():
            try:
                return await self.client.evalsha(self.sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                await self.client.script_load(self.source)
                return await self.client.evalsha(self.sha, len(keys), *keys, *args)


@contextmanager
def unavailable_on_redis_error() -> Iterator[None]:
    """A Redis failure in the block becomes ``GuardUnavailable``."""
    try:
        yield
    except redis.RedisError as exc:
        raise GuardUnavailable(f"the guard store is unavailable: {type(exc).__name__}") from exc
