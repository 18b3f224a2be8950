"""Tool calls that change state somewhere: recorded by idempotency key, so a redelivered step
that finds one done returns its recorded result instead of calling again, and one that finds
it sent but not done knows the provider may have performed it (``sent_s_ago``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from store.db import TenantTx


@dataclass(frozen=True)
class ToolCallRecord:
    idempotency_key: str
    tool: str
    status: str  # started | done
    result: dict[str, Any] | None
    started_at: datetime
    sent_s_ago: float | None = None  # since the last ``sent``; None: never sent


_RECORD = (
    "SELECT idempotency_key, tool, status, result, started_at, "
    "extract(epoch FROM clock_timestamp() - attempted_at)::float8 AS sent_s_ago FROM tool_calls "
    "WHERE company_id = %s AND idempotency_key = %s"
)


async def begin(tx: TenantTx, key: str, quest_id: UUID, step: int, tool: str) -> ToolCallRecord:
    """Record that the call starts (once); returns the record as it stands."""
    await tx.execute(
        "INSERT INTO tool_calls (company_id, idempotency_key, quest_id, step, tool, status) "
        "VALUES (%s, %s, %s, %s, %s, 'started') ON CONFLICT (company_id, idempotency_key) DO NOTHING",
        (tx.company_id, key, quest_id, step, tool),
    )
    found = await tx.rows(ToolCallRecord, _RECORD, (tx.company_id, key))
    return found[0]


async def sent(tx: TenantTx, key: str, *, performed: bool = True) -> None:
    """The call is about to go to the provider (again); ``performed=False``: the provider
    answered that it did not perform it (a rate limit), so no attempt can be in flight."""
    await tx.execute(
        "UPDATE tool_calls SET attempted_at = CASE WHEN %s THEN clock_timestamp() END "
        "WHERE company_id = %s AND idempotency_key = %s",
        (performed, tx.company_id, key),
    )


async def finish(tx: TenantTx, key: str, result: dict[str, Any]) -> None:
    await tx.execute(
        "UPDATE tool_calls SET status = 'done', result = %s, finished_at = now() "
        "WHERE company_id = %s AND idempotency_key = %s",
        (Jsonb(result), tx.company_id, key),
    )
