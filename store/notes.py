"""Ted's notebook: notes a quest writes for the company's people to read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from store.db import TenantTx


@dataclass(frozen=True)
class Note:
    id: UUID
    quest_id: UUID | None
    text: str
    created_at: datetime


async def add(
    tx: TenantTx, quest_id: UUID | None, text: str, idempotency_key: str
) -> tuple[UUID, bool]:
    """Add a note once per idempotency key; returns its id and whether this call wrote it."""
    row = await tx.one(
        "INSERT INTO notes (id, company_id, quest_id, text, idempotency_key) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (company_id, idempotency_key) DO NOTHING "
        "RETURNING id",
        (uuid4(), tx.company_id, quest_id, text, idempotency_key),
    )
    if row is not None:
        return row[0], True
    existing = await tx.one(
        "SELECT id FROM notes WHERE company_id = %s AND idempotency_key = %s",
        (tx.company_id, idempotency_key),
    )
    assert existing is not None
    return existing[0], False


async def recent(tx: TenantTx, limit: int = 20) -> list[Note]:
    return await tx.rows(
        Note,
        "SELECT id, quest_id, text, created_at FROM notes WHERE company_id = %s "
        "ORDER BY created_at DESC LIMIT %s",
        (tx.company_id, limit),
    )
