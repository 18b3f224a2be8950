"""Support grants: one engineer's time-limited access to one company's content.

The app role writes them (``grant``, ``revoke``, ``log_expired``) in the company's tenant,
each with its audit row, which the company's admins read in the product. Engineers sign in
as logins of their own (``store.engineers``) in the operator role, whose policies (migration
0013) admit a company's rows only while the session's engineer holds a live grant:
``open_read`` finds that grant and writes the ``support.read`` row saying who read what.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg.types.json import Jsonb

from store import activity as activity_store
from store.activity import NewActivity
from store.db import Database, TenantTx
from store.errors import StoreError

_COLUMNS = (
    "id, company_id, engineer, reason, granted_by, granted_at, expires_at, revoked_at, "
    "revoked_by, expiry_logged_at"
)


class NoSupportGrant(StoreError):
    """An engineer read a company's content without a live support grant for it."""


@dataclass(frozen=True)
class SupportGrant:
    id: UUID
    company_id: UUID
    engineer: str
    reason: str
    granted_by: str
    granted_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    expiry_logged_at: datetime | None

    def live(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at

    def view(self, now: datetime) -> dict[str, Any]:
        state = "revoked" if self.revoked_at else ("live" if self.live(now) else "expired")
        return {**self.__dict__, "state": state}


async def grant(tx: TenantTx, engineer: str, reason: str, *, by: str, ttl_s: int) -> SupportGrant:
    """Admit ``engineer`` to the company's content for ``ttl_s`` from now (the database's)."""
    found = await tx.first(
        SupportGrant,
        f"INSERT INTO support_grants (id, company_id, engineer, reason, granted_by, expires_at) "
        f"VALUES (%s, %s, %s, %s, %s, now() + make_interval(secs => %s)) RETURNING {_COLUMNS}",
        (uuid4(), tx.company_id, engineer, reason, by, ttl_s),
    )
    assert found is not None  # INSERT ... RETURNING returns the row
    await _audit(
        tx, "support.granted", found, by, found.granted_at, {"reason": reason, "ttl_s": ttl_s}
    )
    return found


async def revoke(tx: TenantTx, grant_id: UUID, *, by: str) -> SupportGrant | None:
    """End a live grant now; None if the company has no such live grant."""
    ended = await _revoke(tx, by, grant_id)
    return ended[0] if ended else None


async def revoke_all(tx: TenantTx, *, by: str) -> int:
    """End every live grant of the company now (it is being deleted); returns how many."""
    return len(await _revoke(tx, by, None))


async def _revoke(tx: TenantTx, by: str, grant_id: UUID | None) -> list[SupportGrant]:
    """End the company's live grants (``grant_id``: only that one) now, each with its row."""
    ended = await tx.rows(
        SupportGrant,
        f"UPDATE support_grants SET revoked_at = now(), revoked_by = %s "
        f"WHERE (%s::uuid IS NULL OR id = %s) AND revoked_at IS NULL AND expires_at > now() "
        f"RETURNING {_COLUMNS}",
        (by, grant_id, grant_id),
    )
    for g in ended:
        await _audit(tx, "support.revoked", g, by, _at(g.revoked_at), {})
    return ended


async def listed(tx: TenantTx, *, live_only: bool, now: datetime) -> list[SupportGrant]:
    """The company's grants, newest first (``live_only``: those admitting someone now)."""
    return await tx.rows(
        SupportGrant,
        f"SELECT {_COLUMNS} FROM support_grants "
        f"WHERE NOT %s OR (revoked_at IS NULL AND expires_at > %s) "
        f"ORDER BY granted_at DESC, id",
        (live_only, now),
    )


async def log_expired(tx: TenantTx) -> int:
    """Write a ``support.expired`` row for each of the company's grants that ran out unrevoked
    and has none yet; returns how many. Access ended at ``expires_at`` whether or not this
    ran: the row is the admins' record of it."""
    ended = await tx.rows(
        SupportGrant,
        f"UPDATE support_grants SET expiry_logged_at = now() "
        f"WHERE id IN (SELECT id FROM support_grants WHERE revoked_at IS NULL "
        f"AND expiry_logged_at IS NULL AND expires_at <= now() FOR UPDATE SKIP LOCKED) "
        f"RETURNING {_COLUMNS}",
    )
    for g in ended:
        await _audit(tx, "support.expired", g, "system2", g.expires_at, {})
    return len(ended)


async def open_read(tx: TenantTx, what: str, quest_id: UUID | None = None) -> SupportGrant:
    """In an engineer's transaction (the operator store): their live grant for the company,
    after writing the ``support.read`` row that records ``what`` they read (and which quest);
    ``NoSupportGrant`` if they hold none."""
    found = await tx.first(
        SupportGrant,
        f"SELECT {_COLUMNS} FROM support_grants WHERE company_id = %s AND revoked_at IS NULL "
        f"AND expires_at > statement_timestamp() ORDER BY expires_at DESC LIMIT 1",
        (tx.company_id,),
    )
    if found is None:
        raise NoSupportGrant(
            f"{await whoami(tx.conn)} holds no live support grant for company "
            f"{tx.company_id}: ask for one (system2 support grant)"
        )
    # A plain INSERT of the four columns the operator role may name (it may not read the
    # webhook endpoints activity.append fans rows out to); migration 0013's trigger writes
    # the key, time, actor, target and grant.
    await tx.execute(
        "INSERT INTO activity_log (company_id, action, quest_id, payload) "
        "VALUES (%s, 'support.read', %s, %s)",
        (tx.company_id, quest_id, Jsonb({"read": what})),
    )
    return found


async def whoami(conn: psycopg.AsyncConnection[Any]) -> str:
    """The engineer a session reads as: its login."""
    row = await (await conn.execute("SELECT session_user::text")).fetchone()
    return str(row[0]) if row else ""


async def _audit(
    tx: TenantTx, action: str, g: SupportGrant, by: str, at: datetime, extra: dict[str, Any]
) -> None:
    row = NewActivity(
        idempotency_key=f"{action}:{g.id}",
        occurred_at=at,
        actor_type="system" if by == "system2" else "operator",
        actor_id=by,
        action=action,
        target=f"engineer:{g.engineer}",
        rationale=None,
        originating_message_id=None,
        quest_id=None,
        payload={"grant_id": str(g.id), "expires_at": g.expires_at.isoformat(), **extra},
    )
    if not await activity_store.append(tx, [row]):
        # Its key is the grant's own: taken already means the trail was tampered with.
        raise StoreError(f"the audit row {row.idempotency_key} exists already: nothing changed")


async def granted_companies(db: Database) -> list[UUID]:
    """On the operator store: the companies the session's engineer holds a live grant for
    (their own grants are all the operator role sees of the table)."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT DISTINCT company_id FROM support_grants "
            "WHERE revoked_at IS NULL AND expires_at > statement_timestamp()"
        )
        return [row[0] for row in await cur.fetchall()]


def _at(when: datetime | None) -> datetime:
    assert when is not None  # set by the statement that returned the row
    return when


async def live(tx: TenantTx) -> bool:
    """Whether the session's engineer still holds a live grant for the transaction's company."""
    found = await tx.one("SELECT support_live(%s)", (tx.company_id,))
    return bool(found and found[0])
