"""Opaque page cursors: where a newest-first page ended, as ``(time, id)`` of its last row.

The next page is the rows strictly before that pair, so rows written meanwhile never shift a
page. The text is URL-safe and says nothing a caller should rely on.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from store.errors import StoreError

CURSOR_MAX = 200


class BadCursor(StoreError):
    """The pagination cursor was not one this API handed out."""


def encode(at: datetime, row_id: object) -> str:
    raw = f"{at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> tuple[datetime, str]:
    """The ``(time, id)`` a cursor holds; ``BadCursor`` for anything else."""
    try:
        if len(cursor) > CURSOR_MAX:
            raise ValueError(cursor)
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, row_id = raw.split("|")
        when = datetime.fromisoformat(at)
        if when.tzinfo is None or not row_id:
            raise ValueError(raw)
        return when, row_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadCursor("cursor is not valid; start again without one") from None
