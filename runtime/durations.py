"""Durations as people write them: ``90s``, ``30m``, ``2h``, ``1h30m``, ``1d`` (or plain
seconds)."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+)\s*([dhms])")
_WHOLE = re.compile(r"(?:\s*\d+\s*[dhms])+\s*")
_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


def duration_s(text: str) -> int:
    """Seconds in ``text``; ``ValueError`` naming the expected form for anything else."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    if not text or not _WHOLE.fullmatch(text):
        raise ValueError("a duration is a number of seconds or a span such as 90s, 30m, 2h, 1h30m")
    return sum(int(n) * _SECONDS[unit] for n, unit in _PART.findall(text))


def spoken(seconds: int) -> str:
    """``2h``, ``1h30m``, ``45s``: the short form back."""
    parts: list[str] = []
    for unit, size in _SECONDS.items():
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(p for p in parts if not p.startswith("0") or len(parts) == 1)
