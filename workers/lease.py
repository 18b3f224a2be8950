"""One step of a quest runs at a time, anywhere.

The step claim in Postgres tells a redelivery from a duplicate, but a redelivery can also
happen while the first delivery still runs (a worker that fell silent long enough to be
declared dead). A short Redis lease, renewed every few seconds while the step runs, keeps the
second one out until the first finishes — or, if its worker really died, for a few seconds.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from uuid import UUID

import redis

from messages.redis_keys import step_lease_key
from workers.errors import TryLater
from workers.integrations.lock import RELEASE

_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"


class StepLeases:
    def __init__(self, client: redis.Redis, *, ttl_ms: int = 6_000) -> None:
        self.redis = client
        self.ttl_ms = ttl_ms
        self._held: dict[str, str] = {}
        self._lock = threading.Lock()
        self._release = client.register_script(RELEASE)
        self._renew = client.register_script(_RENEW)
        threading.Thread(target=self._renew_forever, name="s2-step-leases", daemon=True).start()

    @contextlib.contextmanager
    def hold(self, quest_id: UUID) -> Iterator[None]:
        """Run the block as the quest's only running step, or raise ``TryLater``."""
        key, owner = step_lease_key(quest_id), uuid.uuid4().hex
        if not self.redis.set(key, owner, nx=True, px=self.ttl_ms):
            wait = max(100, int(self.redis.pttl(key)))
            raise TryLater("another worker is running this quest's step", retry_after_ms=wait)
        with self._lock:
            self._held[key] = owner
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(key, None)
            with contextlib.suppress(redis.RedisError):
                self._release(keys=[key], args=[owner])

    def _renew_forever(self) -> None:
        while True:
            threading.Event().wait(self.ttl_ms / 3000)
            with self._lock:
                held = list(self._held.items())
            for key, owner in held:
                with contextlib.suppress(redis.RedisError):
                    self._renew(keys=[key], args=[owner, self.ttl_ms])
