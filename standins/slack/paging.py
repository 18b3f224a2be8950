"""Arguments as Slack reads them: cursors, limits, timestamps and boolean flags.

Slack's cursors are opaque base64 (``dGVhbTpDMDYxRkE1UEI=`` is ``team:C061FA5PB``); these
are built the same way, so a client that inspects or edits one learns nothing useful. A
``limit`` above a method's maximum is quietly lowered, as Slack does ("fewer than the
requested number of items may be returned"); one that is not a positive integer is an error.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from standins.slack.errors import SlackError
from standins.slack.ids import parse_ts

_TRUE = {"1", "true", "yes"}


def flag(value: Any) -> bool:
    """Slack's booleans: ``true``/``1`` in a form or query, ``true`` in JSON."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    return isinstance(value, str) and value.strip().lower() in _TRUE


def limit(value: Any, *, default: int, maximum: int, error: str) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise SlackError(error)
    try:
        number = int(value) if isinstance(value, int) else int(str(value).strip())
    except ValueError:
        raise SlackError(error) from None
    if number < 1:
        raise SlackError(error)
    return min(number, maximum)


def encode_cursor(kind: str, value: str) -> str:
    return base64.b64encode(f"{kind}:{value}".encode()).decode()


def decode_cursor(value: Any, kind: str) -> str | None:
    """The position a cursor of this ``kind`` names; ``None`` for the first page."""
    if value is None or value == "":
        return None
    try:
        text = base64.b64decode(str(value), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise SlackError("invalid_cursor") from None
    found, sep, position = text.partition(":")
    if found != kind or not sep or not position:
        raise SlackError("invalid_cursor")
    return position


def next_ts_cursor(ts: int) -> str:
    return encode_cursor("next_ts", str(ts))


def ts_cursor(value: Any) -> int | None:
    """A ``next_ts`` cursor (``next_ts:1512085861000543``, microseconds) as a ts."""
    position = decode_cursor(value, "next_ts")
    if position is None:
        return None
    if not position.isdigit():
        raise SlackError("invalid_cursor")
    return int(position)


def bound(value: Any, error: str) -> int | None:
    """``oldest`` / ``latest``: a Unix timestamp, or absent."""
    if value is None or value == "":
        return None
    ts = parse_ts(value)
    if ts is None:
        raise SlackError(error)
    return ts


def in_range(ts: int, oldest: int | None, latest: int | None, inclusive: bool) -> bool:
    if oldest is not None and (ts < oldest or (ts == oldest and not inclusive)):
        return False
    return latest is None or ts < latest or (ts == latest and inclusive)
