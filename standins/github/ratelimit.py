"""GitHub's primary rate limit: a budget per user and resource, reset by a fixed window.

As on GitHub, a window opens with the first request after the previous one ended and lasts
an hour for ``core`` and a minute for ``search``; ``x-ratelimit-reset`` is its end in epoch
seconds. When the budget is spent the request is refused (403, ``x-ratelimit-remaining: 0``)
and not counted. Requests without a usable token are counted against the caller's address
with GitHub's anonymous limit (60) for the headers only; they are refused with 401 anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WINDOWS_S = {"core": 3600.0, "search": 60.0}
ANONYMOUS_LIMIT = 60


@dataclass(frozen=True, slots=True)
class Quota:
    limit: int
    used: int
    reset: int
    resource: str

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-reset": str(self.reset),
            "x-ratelimit-used": str(self.used),
            "x-ratelimit-resource": self.resource,
        }

    def spent(self, reset: int | None = None) -> Quota:
        """The same quota shown as exhausted (for an injected primary-limit fault)."""
        return Quota(self.limit, self.limit, self.reset if reset is None else reset, self.resource)


@dataclass(slots=True)
class _Window:
    start: float
    used: int = 0


class RateLimits:
    def __init__(self, core: int, search: int) -> None:
        if core < 1 or search < 1:
            raise ValueError("rate limits must be at least 1")
        self.limits = {"core": core, "search": search}
        self.refused = 0
        self._windows: dict[tuple[str, str], _Window] = {}

    def _window(self, key: str, resource: str, now: float) -> _Window:
        window = self._windows.get((key, resource))
        if window is None or now >= window.start + WINDOWS_S[resource]:
            window = self._windows[(key, resource)] = _Window(now)
        return window

    def _quota(self, window: _Window, limit: int, resource: str) -> Quota:
        reset = math.ceil(window.start + WINDOWS_S[resource])
        return Quota(limit, window.used, reset, resource)

    def peek(self, key: str, resource: str, now: float) -> Quota:
        window = self._window(key, resource, now)
        return self._quota(window, self.limits[resource], resource)

    def take(self, key: str, resource: str, now: float) -> tuple[Quota, bool]:
        """Counts one request; ``False`` when the budget was already spent (not counted)."""
        window = self._window(key, resource, now)
        limit = self.limits[resource]
        if window.used >= limit:
            self.refused += 1
            return self._quota(window, limit, resource), False
        window.used += 1
        return self._quota(window, limit, resource), True

    def anonymous(self, address: str, now: float) -> Quota:
        window = self._window("anonymous:" + address, "core", now)
        window.used = min(window.used + 1, ANONYMOUS_LIMIT)
        return self._quota(window, ANONYMOUS_LIMIT, "core")
