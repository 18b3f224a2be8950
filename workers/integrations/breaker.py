"""A circuit breaker per provider, shared by every worker through Redis.

``failures`` failures within ``window_s`` open it for ``open_s``: calls are not made, steps
wait instead. When it closes again, the next call is the probe; a success (the provider
working: a 2xx or 3xx answer, never a company's 4xx) forgets the failures, another failure
opens it again at once.
"""

from __future__ import annotations

import redis

from messages.redis_keys import breaker_failures_key, breaker_open_key, breaker_tripped_key

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


class Breaker:
    def __init__(
        self, client: redis.Redis, *, failures: int = 5, window_s: int = 30, open_s: int = 30
    ) -> None:
        self.client = client
        self.failures = failures
        self.window_ms = window_s * 1000
        self.open_ms = open_s * 1000
        self._fail = client.register_script(_FAIL)

    def _keys(self, provider: str) -> list[str]:
        return [
            breaker_failures_key(provider),
            breaker_open_key(provider),
            breaker_tripped_key(provider),
        ]

    def open_for_ms(self, provider: str) -> int:
        """0 when calls may go through; else how long the breaker stays open."""
        return max(0, int(self.client.pttl(self._keys(provider)[1])))

    def failure(self, provider: str) -> bool:
        """Count a failure; True if the breaker is (now) open."""
        return bool(
            self._fail(
                keys=self._keys(provider), args=[self.window_ms, self.failures, self.open_ms]
            )
        )

    def success(self, provider: str) -> None:
        failures, _, tripped = self._keys(provider)
        self.client.delete(failures, tripped)

    def failure_count(self, provider: str) -> int:
        """Failures counted in the current window."""
        return int(self.client.get(self._keys(provider)[0]) or 0)

    def pause(self, provider: str, ms: int) -> None:
        """Open the breaker for ``ms`` whatever its failures (an operator's pause); the first
        call after it closes is a probe, as after a trip."""
        _, open_key, tripped = self._keys(provider)
        pipe = self.client.pipeline()
        pipe.set(open_key, "1", px=ms)
        pipe.set(tripped, "1", px=ms * 4)
        pipe.execute()

    def reset(self, provider: str) -> None:
        """Close the breaker and forget its failures: calls go through again."""
        self.client.delete(*self._keys(provider))

    def state(self, provider: str) -> str:
        if self.open_for_ms(provider):
            return "open"
        return "probing" if self.client.exists(self._keys(provider)[2]) else "closed"
