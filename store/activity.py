"""The append-only audit trail: one row per agent-initiated state change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from store import cursors
from store.db import TenantTx
from store.webhooks import ADDED_COLUMNS, FAN_OUT

_COLUMNS = (
    "id, occurred_at, recorded_at, actor_type, actor_id, action, target, rationale, "
    "originating_message_id, quest_id, payload, idempotency_key"
)


@dataclass(frozen=True)
class NewActivity:
    idempotency_key: str
    occurred_at: datetime
    actor_type: str
    actor_id: str
    action: str
    target: str
    rationale: str | None
    originating_message_id: UUID | None
    quest_id: UUID | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class Activity:
    id: int
    occurred_at: datetime
    recorded_at: datetime
    actor_type: str
    actor_id: str
    action: str
    target: str
    rationale: str | None
    originating_message_id: UUID | None
    quest_id: UUID | None
    payload: dict[str, Any]
    idempotency_key: str


@dataclass(frozen=True)
class ActivityFilter:
    quest_id: UUID | None = None
    actor_id: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


_STAGED = (
    "occurred_at, actor_type, actor_id, action, target, rationale, originating_message_id, "
    "quest_id, payload, idempotency_key"
)
# The staging table's column types, in ``COPY`` order: the rows go over in binary, which
# spares formatting each value as text on our side and parsing it on the server's.
_STAGE_TYPES = [
    "uuid", "timestamptz", "text", "text", "text", "text", "text", "uuid", "uuid", "jsonb", "text",
]  # fmt: skip
_STAGE_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS audit_stage (company_id uuid, occurred_at timestamptz, "
    "actor_type text, actor_id text, action text, target text, rationale text, "
    "originating_message_id uuid, quest_id uuid, payload jsonb, idempotency_key text) "
    "ON COMMIT DELETE ROWS"
)


async def append(tx: TenantTx, rows: Sequence[NewActivity]) -> int:
    """Insert rows for the transaction's company; returns how many were new (a key seen
    before is skipped)."""
    await create_stage(tx.conn)
    await stage(tx.conn, [(tx.company_id, r) for r in rows])
    found = await (await insert_staged(tx)).fetchone()
    return int(found[0]) if found else 0


async def create_stage(conn: psycopg.AsyncConnection[Any]) -> None:
    """Create the connection's staging table; outside a transaction, so it stays."""
    await conn.execute(_STAGE_TABLE)


async def stage(
    conn: psycopg.AsyncConnection[Any], rows: Sequence[tuple[UUID, NewActivity]]
) -> None:
    """COPY rows into the connection's staging table (``create_stage`` made it).

    COPY is refused on a table under row-level security, so rows go through a temporary
    table (no RLS, gone at commit); ``insert_staged`` then moves them with INSERT ... SELECT,
    which the policy still checks.
    """
    sql = f"COPY audit_stage (company_id, {_STAGED}) FROM STDIN (FORMAT BINARY)"
    async with conn.cursor().copy(sql) as copy:
        copy.set_types(_STAGE_TYPES)
        for company_id, r in rows:
            await copy.write_row(
                (
                    company_id,
                    r.occurred_at,
                    r.actor_type,
                    r.actor_id,
                    r.action,
                    r.target,
                    r.rationale,
                    r.originating_message_id,
                    r.quest_id,
                    Jsonb(r.payload),
                    r.idempotency_key,
                )
            )


async def insert_staged(tx: TenantTx) -> psycopg.AsyncCursor[Any]:
    """Move the staged rows of the transaction's company into activity_log, and make the
    webhook deliveries of the new ones (``store.webhooks.FAN_OUT``), in one statement. Its
    one row is the count of new rows; it is not read here, so that a pipeline of these (the
    audit writer's, one per company) stays one round trip."""
    return await tx.execute(
        f"WITH added AS (INSERT INTO activity_log (company_id, {_STAGED}) "
        f"SELECT company_id, {_STAGED} FROM audit_stage WHERE company_id = %s "
        "ON CONFLICT (company_id, idempotency_key) DO NOTHING "
        f"RETURNING {ADDED_COLUMNS}){FAN_OUT}SELECT count(*) FROM added",
        (tx.company_id,),
    )


async def page(
    tx: TenantTx, filters: ActivityFilter, *, cursor: str | None = None, limit: int = 50
) -> tuple[list[Activity], str | None]:
    """Newest first. Returns the rows and the cursor of the next page (None at the end)."""
    return await cursors.newest_first(
        tx,
        Activity,
        f"SELECT {_COLUMNS} FROM activity_log",
        [
            ("quest_id = %s", filters.quest_id),
            ("actor_id = %s", filters.actor_id),
            ("action = %s", filters.action),
            ("occurred_at >= %s", filters.since),
            ("occurred_at < %s", filters.until),
        ],
        at="occurred_at",
        parse_id=cursors.bigint,
        cursor=cursor,
        limit=limit,
    )
