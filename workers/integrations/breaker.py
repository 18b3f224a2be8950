"""A circuit breaker per provider, shared by every worker through Redis.

``failures`` failures within ``window_s`` open it for ``open_s``: calls are not made, steps
wait instead. When it closes again, the next call is the probe; a success (the provider
working: a 2xx or 3xx answer, never a company's 4xx) forgets the failures, another failure
opens it again at once.

Two views of the same keys: ``AsyncBreaker`` is the step path's (redis.asyncio, awaited on
the worker's event loop, by ``ProviderClient``); ``Breaker`` is the operators' (a sync
client: ``system2 ops provider status|pause|resume``, and the metrics exporter, which reads
each provider's state at scrape time from prometheus's HTTP thread, where no loop runs).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
import redis.asyncio

from messages.redis_keys import breaker_failures_key, breaker_open_key, breaker_tripped_key

# KEYS: failures, open, tripped. ARGV: window ms, failures that open it, open ms.
_FAIL = """
local n = redis.call('incr', KEYS[1])
if n == 1 then redis.call('pexpire', KEYS[1], ARGV[1]) end
if n >= tonumber(ARGV[2]) or redis.call('exists', KEYS[3]) == 1 then
  redis.call('set', KEYS[2], '1', 'px', ARGV[3])
  redis.call('set', KEYS[3], '1', 'px', tonumber(ARGV[3]) * 4)
  return 1
end
return 0
"""


def breaker_keys(provider: str) -> list[str]:
    """The provider's failures counter, its open marker and its tripped marker (the latter
    makes the first call after it closes a probe)."""
    return [
        breaker_failures_key(provider),
        breaker_open_key(provider),
        breaker_tripped_key(provider),
    ]


class _Thresholds:
    """When a breaker opens, and for how long: the same for both views of it."""

    def __init__(self, failures: int, window_s: int, open_s: int) -> None:
        self.failures = failures
        self.window_ms = window_s * 1000
        self.open_ms = open_s * 1000

    def fail_args(self) -> list[int]:
        return [self.window_ms, self.failures, self.open_ms]


@dataclass(frozen=True)
class Reading:
    """The breaker before a call: how long it stays open (0: closed), and whether it holds
    failures or a trip for a success to forget (if not, a success has nothing to do)."""

    open_for_ms: int
    counting: bool


class AsyncBreaker(_Thresholds):
    """The breaker as a step's provider call sees it: one round trip per question."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        failures: int = 5,
        window_s: int = 30,
        open_s: int = 30,
    ) -> None:
        super().__init__(failures, window_s, open_s)
        self.client = client
        self._fail = client.register_script(_FAIL)

    async def read(self, provider: str) -> Reading:
        """The breaker before a call, in one round trip."""
        failures, open_key, tripped = breaker_keys(provider)
        pipe = self.client.pipeline(transaction=False)
        pipe.pttl(open_key)
        pipe.exists(failures, tripped)
        ttl, marks = await pipe.execute()
        return Reading(open_for_ms=max(0, int(ttl)), counting=bool(marks))

    async def open_for_ms(self, provider: str) -> int:
        """0 when calls may go through; else how long the breaker stays open."""
        return max(0, int(await self.client.pttl(breaker_keys(provider)[1])))

    async def failure(self, provider: str) -> bool:
        """Count a failure; True if the breaker is (now) open."""
        return bool(await self._fail(keys=breaker_keys(provider), args=self.fail_args()))

    async def success(self, provider: str) -> None:
        """The provider answered: forget its failures (the probe, if it was one, passed)."""
        failures, _, tripped = breaker_keys(provider)
        await self.client.delete(failures, tripped)


class Breaker(_Thresholds):
    """The breaker as operators and the metrics exporter see it, on a sync client: its
    state, and an operator's pause and reset. ``failure`` counts one as a worker's failed
    call does (for drills and tests)."""

    def __init__(
        self, client: redis.Redis, *, failures: int = 5, window_s: int = 30, open_s: int = 30
    ) -> None:
        super().__init__(failures, window_s, open_s)
        self.client = client
        self._fail = client.register_script(_FAIL)

    def open_for_ms(self, provider: str) -> int:
        """0 when calls may go through; else how long the breaker stays open."""
        return max(0, int(self.client.pttl(breaker_keys(provider)[1])))

    def failure(self, provider: str) -> bool:
        """Count a failure as a worker's call does; True if the breaker is (now) open."""
        return bool(self._fail(keys=breaker_keys(provider), args=self.fail_args()))

    def failure_count(self, provider: str) -> int:
        """Failures counted in the current window."""
        return int(self.client.get(breaker_keys(provider)[0]) or 0)

    def pause(self, provider: str, ms: int) -> None:
        """Open the breaker for ``ms`` whatever its failures (an operator's pause); the first
        call after it closes is a probe, as after a trip."""
        _, open_key, tripped = breaker_keys(provider)
        pipe = self.client.pipeline()
        pipe.set(open_key, "1", px=ms)
        pipe.set(tripped, "1", px=ms * 4)
        pipe.execute()

    def reset(self, provider: str) -> None:
        """Close the breaker and forget its failures: calls go through again."""
        self.client.delete(*breaker_keys(provider))

    def state(self, provider: str) -> str:
        """closed, open, or probing (closed again, and the next call is the probe)."""
        if self.open_for_ms(provider):
            return "open"
        return "probing" if self.client.exists(breaker_keys(provider)[2]) else "closed"
