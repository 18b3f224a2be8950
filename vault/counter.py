"""How many encryptions each key has done, shared by every worker process.

AES-GCM with random 96-bit nonces stays within NIST SP 800-38D's collision bound only for
at most 2**32 encryptions per key, so the vault counts them and refuses past a bound set well
below that. The count lives outside any one process: ``RedisEncryptionCounter`` in
production, ``MemoryEncryptionCounter`` for unit tests of a single process.

A vault reserves counts in blocks (see ``vault.vault``), so a counter value is the number of
encryptions *reserved*, an upper bound on those done.
"""

from __future__ import annotations

import threading
from typing import Protocol

import redis

from vault.errors import CounterUnavailable


class EncryptionCounter(Protocol):
    def incr(self, kid: str, n: int = 1) -> int:
        """Add ``n`` to the key's count and return the new total, atomically."""
        ...

    def get(self, kid: str) -> int:
        """The key's count (0 if it has none)."""
        ...


class RedisEncryptionCounter:
    """One Redis integer per key id (``INCRBY``), shared by every process on that Redis.

    Losing Redis (a flush, a restart without persistence) resets the counts. That is accepted:
    the bound (2**28 by default) is far below the NIST limit, and the durable per-key figure
    is derived from the database rows by ``system2 vault status``, which is how an operator
    sees a key approach its bound and rotates.
    """

    def __init__(self, client: redis.Redis, *, prefix: str = "s2:vault:encryptions:") -> None:
        self.redis = client
        self.prefix = prefix

    def key(self, kid: str) -> str:
        return self.prefix + kid

    def incr(self, kid: str, n: int = 1) -> int:
        try:
            return int(self.redis.incrby(self.key(kid), n))
        except redis.RedisError as e:
            raise CounterUnavailable(
                f"the vault's encryption counter (Redis) did not answer: {type(e).__name__}"
            ) from e

    def get(self, kid: str) -> int:
        try:
            value = self.redis.get(self.key(kid))
        except redis.RedisError as e:
            raise CounterUnavailable(
                f"the vault's encryption counter (Redis) did not answer: {type(e).__name__}"
            ) from e
        return int(value) if value is not None else 0


class MemoryEncryptionCounter:
    """Counts in this process only: for unit tests, never for workers."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def incr(self, kid: str, n: int = 1) -> int:
        with self._lock:
            total = self._counts.get(kid, 0) + n
            self._counts[kid] = total
            return total

    def get(self, kid: str) -> int:
        with self._lock:
            return self._counts.get(kid, 0)
