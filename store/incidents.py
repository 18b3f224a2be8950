"""Incidents and the notices their affected admins are sent (migration 0014).

An incident is the operator's record, read and written outside any tenant; which companies it
touched comes from the owner-rights functions of 0014, in counts and ids only. A notice is a
company's row: each one is claimed ('sending') and committed before its email is handed to
the mail server, so a run that dies after the hand-over leaves a claim that the next run
reports as uncertain rather than sending a second email.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import psycopg
from psycopg.rows import class_row

from store.db import TenantTx

Conn = psycopg.AsyncConnection[Any]
NoticeStatus = Literal["sending", "sent", "failed"]

_INCIDENT = (
    "id, summary, since, until, confirmed_at, company_ids, integration, opened_by, created_at"
)
_NOTICE = "user_id, email, status, attempts, message_id, last_error, claimed_at, sent_at"


@dataclass(frozen=True)
class Incident:
    id: UUID
    summary: str
    since: datetime
    until: datetime
    confirmed_at: datetime
    company_ids: list[UUID] | None  # None: every company active in the window
    integration: str | None
    opened_by: str
    created_at: datetime | None = None


@dataclass(frozen=True)
class Touched:
    """What of one company's fell in the incident's window: counts, never content."""

    company_id: UUID
    company_name: str
    quests: int
    audit_rows: int
    credentials_decrypted: dict[str, int]  # integration -> decrypts


@dataclass(frozen=True)
class Admin:
    company_id: UUID
    user_id: str
    email: str | None  # None: no address on file


@dataclass(frozen=True)
class Notice:
    user_id: str
    email: str
    status: NoticeStatus
    attempts: int
    message_id: str | None
    last_error: str | None
    claimed_at: datetime
    sent_at: datetime | None


async def add(conn: Conn, incident: Incident) -> None:
    await conn.execute(
        f"INSERT INTO incidents ({_INCIDENT}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now())",
        (
            incident.id,
            incident.summary,
            incident.since,
            incident.until,
            incident.confirmed_at,
            incident.company_ids,
            incident.integration,
            incident.opened_by,
        ),
    )


async def get(conn: Conn, incident_id: UUID) -> Incident | None:
    async with conn.cursor(row_factory=class_row(Incident)) as cur:
        await cur.execute(f"SELECT {_INCIDENT} FROM incidents WHERE id = %s", (incident_id,))
        return await cur.fetchone()


async def touched(conn: Conn, incident: Incident) -> list[Touched]:
    """The companies the incident touched, with counts (``incident_companies()``)."""
    async with conn.cursor(row_factory=class_row(Touched)) as cur:
        await cur.execute(
            "SELECT company_id, company_name, quests, audit_rows, credentials_decrypted "
            "FROM incident_companies(%s, %s, %s, %s)",
            (incident.since, incident.until, incident.company_ids, incident.integration),
        )
        found = await cur.fetchall()
    # jsonb orders keys by length first: by name here
    return [
        replace(t, credentials_decrypted=dict(sorted(t.credentials_decrypted.items())))
        for t in found
    ]


async def admins(conn: Conn, company_ids: list[UUID]) -> list[Admin]:
    """The admins of these companies and their addresses (``incident_admins()``)."""
    async with conn.cursor(row_factory=class_row(Admin)) as cur:
        await cur.execute(
            "SELECT company_id, user_id, email FROM incident_admins(%s)", (company_ids,)
        )
        return await cur.fetchall()


async def claim(
    tx: TenantTx, incident_id: UUID, user_id: str, email: str, message_id: str
) -> NoticeStatus | None:
    """Claim the notice of ``user_id`` ('sending'), new or failed before; None when claimed,
    else the status that stands in the way ('sent', or 'sending': an uncertain send). The
    Message-ID is kept so that an uncertain send can be looked up in the mail server's log."""
    row = await tx.one(
        "INSERT INTO incident_notices "
        "(company_id, incident_id, user_id, email, status, message_id) "
        "VALUES (%s, %s, %s, %s, 'sending', %s) "
        "ON CONFLICT (company_id, incident_id, user_id) DO UPDATE "
        "SET status = 'sending', email = EXCLUDED.email, message_id = EXCLUDED.message_id, "
        "claimed_at = now(), last_error = NULL "
        "WHERE incident_notices.status = 'failed' RETURNING status",
        (tx.company_id, incident_id, user_id, email, message_id),
    )
    if row is not None:
        return None
    held = await tx.one(
        "SELECT status FROM incident_notices "
        "WHERE company_id = %s AND incident_id = %s AND user_id = %s",
        (tx.company_id, incident_id, user_id),
    )
    assert held is not None  # the conflict was with this row
    status: NoticeStatus = held[0]
    return status


async def mark_sent(tx: TenantTx, incident_id: UUID, user_id: str, attempts: int) -> None:
    await tx.execute(
        "UPDATE incident_notices SET status = 'sent', sent_at = now(), "
        "attempts = attempts + %s WHERE company_id = %s AND incident_id = %s AND user_id = %s",
        (attempts, tx.company_id, incident_id, user_id),
    )


async def mark_failed(
    tx: TenantTx, incident_id: UUID, user_id: str, error: str, attempts: int
) -> None:
    await tx.execute(
        "UPDATE incident_notices SET status = 'failed', last_error = %s, "
        "attempts = attempts + %s WHERE company_id = %s AND incident_id = %s AND user_id = %s",
        (error[:500], attempts, tx.company_id, incident_id, user_id),
    )


async def notices(tx: TenantTx, incident_id: UUID) -> list[Notice]:
    """The company's notices of this incident, by user id."""
    return await tx.rows(
        Notice,
        f"SELECT {_NOTICE} FROM incident_notices WHERE company_id = %s AND incident_id = %s "
        "ORDER BY user_id",
        (tx.company_id, incident_id),
    )
