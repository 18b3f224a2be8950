"""Tool calls that change state somewhere: recorded by idempotency key, so a redelivered step
that finds one done returns its recorded result instead of calling again, and one that finds
it sent but not done knows the provider may have performed it (``sent_s_ago``). A delivery
``claim``s the record just before each send, only if it still holds what that delivery saw:
two deliveries of one step never both send."""

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
    attempted_at: datetime | None = None  # the last send's claim; None: never sent
    sent_s_ago: float | None = None  # since then


_RECORD = (
    "SELECT idempotency_key, tool, status, result, started_at, attempted_at, "
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


async def claim(tx: TenantTx, key: str, seen: datetime | None) -> datetime | None:
    """Mark the call as being sent now, if its record still holds ``seen`` (what the caller
    read, or its own last claim) and is not done; the new mark, or ``None`` when another
    delivery got there first."""
    rows = await tx.all(
        "UPDATE tool_calls SET attempted_at = clock_timestamp() "
        "WHERE company_id = %s AND idempotency_key = %s AND status = 'started' "
        "AND attempted_at IS NOT DISTINCT FROM %s::timestamptz RETURNING attempted_at",
        (tx.company_id, key, seen),
    )
    return rows[0][0] if rows and isinstance(rows[0][0], datetime) else None


async def unclaim(tx: TenantTx, key: str, mine: datetime) -> None:
    """The provider answered that it did not perform the call (a rate limit): no attempt of
    it can be in flight, so a retry sends without waiting or looking (if the mark is still
    the caller's)."""
    await tx.execute(
        "UPDATE tool_calls SET attempted_at = NULL "
        "WHERE company_id = %s AND idempotency_key = %s AND attempted_at = %s",
        (tx.company_id, key, mine),
    )


async def finish(tx: TenantTx, key: str, result: dict[str, Any]) -> None:
    await tx.execute(
        "UPDATE tool_calls SET status = 'done', result = %s, finished_at = now() "
        "WHERE company_id = %s AND idempotency_key = %s",
        (Jsonb(result), tx.company_id, key),
    )
