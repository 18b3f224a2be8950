"""Opaque page cursors: where a newest-first page ended, as ``(time, id)`` of its last row.

The next page is the rows strictly before that pair, so rows written meanwhile never shift a
page. The text is URL-safe and says nothing a caller should rely on.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from store.db import TenantTx
from store.errors import StoreError

CURSOR_MAX = 200
_DIGITS = re.compile(r"[0-9]{1,18}")  # within a bigint
T = TypeVar("T")


class _Row(Protocol):
    @property
    def id(self) -> object: ...


R = TypeVar("R", bound=_Row)


class BadCursor(StoreError):
    """The pagination cursor was not one this API handed out."""


def encode(at: datetime, row_id: object) -> str:
    raw = f"{at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, parse_id: Callable[[str], T]) -> tuple[datetime, T]:
    """The ``(time, id)`` a cursor holds, its id read by ``parse_id`` (which raises
    ValueError for what is not one); ``BadCursor`` for anything else."""
    try:
        if len(cursor) > CURSOR_MAX:
            raise ValueError(cursor)
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, row_id = raw.split("|")
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            raise ValueError(raw)
        return when, parse_id(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadCursor("cursor is not valid; start again without one") from None


def bigint(text: str) -> int:
    """A serial id as a cursor holds it (ASCII digits only: ``int`` takes ``²`` too)."""
    if not _DIGITS.fullmatch(text):
        raise ValueError(text)
    return int(text)


async def newest_first(
    tx: TenantTx,
    row: type[R],
    select: str,
    filters: Sequence[tuple[str, object | None]],
    *,
    at: str,
    parse_id: Callable[[str], object],
    cursor: str | None,
    limit: int,
) -> tuple[list[R], str | None]:
    """A page of ``select`` (``SELECT … FROM table``) for the transaction's company, newest
    first by ``(at, id)``: the rows that match every filter whose value is not None (each a
    clause with one ``%s``), before the cursor's row. Returns them and the next page's cursor
    (None at the end). ``row`` has the attribute named by ``at``, and ``id``."""
    where = ["company_id = %s"]
    params: list[Any] = [tx.company_id]
    for clause, value in filters:
        if value is not None:
            where.append(clause)
            params.append(value)
    if cursor:
        when, last_id = decode(cursor, parse_id)
        where.append(f"({at}, id) < (%s, %s)")
        params.extend([when, last_id])
    params.append(limit + 1)
    found = await tx.rows(
        row,
        f"{select} WHERE {' AND '.join(where)} ORDER BY {at} DESC, id DESC LIMIT %s",
        params,
    )
    if len(found) <= limit:
        return found, None
    found = found[:limit]
    return found, encode(getattr(found[-1], at), found[-1].id)
