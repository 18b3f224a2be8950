"""Slack-shaped identifiers, tokens and message timestamps.

IDs are a type letter and ten uppercase alphanumerics (``C0123ABCDE``), as Slack's are.
Token bodies are alphanumeric only, so a redactor's ``xoxb-[A-Za-z0-9-]+`` pattern covers
a whole token rather than stopping at an ``_``. A message ``ts`` is the posting time in
microseconds written ``"%d.%06d"``; it is the message's identity within its channel.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from decimal import Decimal, InvalidOperation

_ID_CHARS = string.ascii_uppercase + string.digits
_TOKEN_CHARS = string.ascii_letters + string.digits


def new_id(kind: str, length: int = 10) -> str:
    """``C``, ``U``, ``B``, ``T``... followed by ``length`` uppercase alphanumerics."""
    return kind + "".join(secrets.choice(_ID_CHARS) for _ in range(length))


def app_id(client_id: str) -> str:
    """A stable ``A…`` id per client, so restarts of the stand-in keep the same app."""
    encoded = hashlib.sha256(client_id.encode()).hexdigest().upper()
    return "A" + encoded[:10]


def token_body(length: int) -> str:
    return "".join(secrets.choice(_TOKEN_CHARS) for _ in range(length))


def digits(length: int) -> str:
    return str(secrets.randbelow(9) + 1) + "".join(
        secrets.choice(string.digits) for _ in range(length - 1)
    )


def digest(token: str) -> str:
    """Tokens are kept only as SHA-256 digests, as a real provider keeps them."""
    return hashlib.sha256(token.encode()).hexdigest()


def ts_text(micros: int) -> str:
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{seconds}.{fraction:06d}"


def micros(now: float) -> int:
    return round(now * 1_000_000)


def parse_ts(value: object) -> int | None:
    """``"1712345678.000100"`` (or any decimal number of seconds) as microseconds."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        seconds = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not seconds.is_finite() or seconds < 0:
        return None
    return int(seconds * 1_000_000)
