"""When a provider that answered 429 says the company may call again.

Providers say it in one of a few ways; the first one found wins:

- ``Retry-After`` (RFC 9110 §10.2.3): seconds, or an HTTP date;
- ``RateLimit-Reset`` (the IETF draft's older form) and the ``t`` parameter of ``RateLimit``
  (its newer form): seconds from now;
- ``X-RateLimit-Reset``: epoch seconds (GitHub, Twitter) or, when too small to be a date,
  seconds from now (as some providers send it).

``delay_ms`` turns the answer into how long this company's step waits: never less than a
backoff that doubles with each 429 the same call met (so a provider saying "1 second" again
and again is not asked a hundred times), and ``None`` when the reset is further away than
the quest may still wait.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

_EPOCH_AFTER = 1_000_000_000  # a reset above this is a Unix time (2001-09-09 onwards)
_RATELIMIT_T = re.compile(r"(?:^|;)\s*t\s*=\s*(\d+)\s*(?:;|,|$)")
DEFAULT_MS = 5_000  # a 429 that says nothing
FIRST_BACKOFF_MS = 1_000


def _seconds(text: str) -> float | None:
    text = text.strip()
    return float(text) if re.fullmatch(r"\d{1,12}(\.\d{1,6})?", text) else None


def _retry_after(value: str, now: float) -> int | None:
    seconds = _seconds(value)
    if seconds is not None:
        return math.ceil(seconds * 1000)
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # not an HTTP date (those are GMT)
        return None
    return max(0, math.ceil((when.timestamp() - now) * 1000))


def _delta(value: str, _: float) -> int | None:
    seconds = _seconds(value)
    return None if seconds is None else math.ceil(seconds * 1000)


def _structured(value: str, _: float) -> int | None:
    found = _RATELIMIT_T.search(value)
    return None if found is None else int(found.group(1)) * 1000


def _epoch_or_delta(value: str, now: float) -> int | None:
    seconds = _seconds(value)
    if seconds is None:
        return None
    if seconds >= _EPOCH_AFTER:
        return max(0, math.ceil((seconds - now) * 1000))
    return math.ceil(seconds * 1000)


_READERS = (
    ("retry-after", _retry_after),
    ("ratelimit-reset", _delta),
    ("ratelimit", _structured),
    ("x-ratelimit-reset", _epoch_or_delta),
)


def reset_after_ms(headers: Mapping[str, str], now: float) -> int | None:
    """Milliseconds until the provider says to try again (0 if already past), or ``None``
    when it says nothing this code understands. ``headers`` is case-insensitive (httpx's);
    ``now`` is Unix time."""
    for name, read in _READERS:
        value = headers.get(name)
        if value is not None and (ms := read(value, now)) is not None:
            return ms
    return None


def delay_ms(said_ms: int | None, times: int, *, waited_s: float, max_s: int) -> int | None:
    """How long the step waits after the ``times``-th 429 of one call (1 for the first), or
    ``None`` if that would take the call's waiting past ``max_s`` in all."""
    backoff: int = FIRST_BACKOFF_MS << min(max(times, 1) - 1, 20)
    wait = max(DEFAULT_MS if said_ms is None else said_ms, backoff)
    if waited_s * 1000 + wait > max_s * 1000:
        return None
    return wait
