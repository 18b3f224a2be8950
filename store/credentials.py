"""Integration credentials (ciphertexts only) and the record of who used them.

A credential the provider keeps refusing is marked as needing reconnection (when and why,
never a token); connecting the integration again clears the mark.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from store.activity import NewActivity
from store.activity import append as append_activity
from store.db import TenantTx

_COLUMNS = (
    "id, integration, account, key_id, access_token, refresh_token, access_expires_at, scopes, "
    "connected_by, version, created_at, updated_at, needs_reconnect_at, needs_reconnect_reason"
)
REASON_MAX = 500


@dataclass(frozen=True)
class Credential:
    id: UUID
    integration: str
    account: str | None
    key_id: str
    access_token: bytes
    refresh_token: bytes | None
    access_expires_at: datetime | None
    scopes: list[str]
    connected_by: str
    version: int
    created_at: datetime
    updated_at: datetime
    needs_reconnect_at: datetime | None = None
    needs_reconnect_reason: str | None = None

    @property
    def needs_reconnect(self) -> bool:
        return self.needs_reconnect_at is not None


@dataclass(frozen=True)
class NewTokens:
    key_id: str
    access_token: bytes
    refresh_token: bytes | None
    access_expires_at: datetime | None


@dataclass(frozen=True)
class Use:
    credential_id: UUID
    integration: str
    key_id: str
    purpose: str
    quest_id: UUID | None
    worker: str
    used_at: datetime


async def get(tx: TenantTx, integration: str, *, for_update: bool = False) -> Credential | None:
    """``for_update``: hold the row until the transaction ends (``FOR NO KEY UPDATE``: readers
    and rows that refer to it do not wait)."""
    lock = " FOR NO KEY UPDATE" if for_update else ""
    return await tx.first(
        Credential,
        f"SELECT {_COLUMNS} FROM integration_credentials WHERE company_id = %s AND integration = %s{lock}",
        (tx.company_id, integration),
    )


async def all_for_company(tx: TenantTx) -> list[Credential]:
    return await tx.rows(
        Credential,
        f"SELECT {_COLUMNS} FROM integration_credentials WHERE company_id = %s ORDER BY integration",
        (tx.company_id,),
    )


async def integrations(tx: TenantTx) -> set[str]:
    """The names of the integrations the company has connected (no ciphertext is read)."""
    rows = await tx.all(
        "SELECT integration FROM integration_credentials WHERE company_id = %s", (tx.company_id,)
    )
    return {str(name) for (name,) in rows}


async def connect(
    tx: TenantTx,
    credential_id: UUID,
    integration: str,
    tokens: NewTokens,
    *,
    account: str | None,
    scopes: list[str],
    connected_by: str,
) -> None:
    """Store (or replace) the company's credential for ``integration``.

    ``credential_id`` must be the id the ciphertexts are bound to; reconnecting keeps the row's
    id only if the caller passes the existing one. Reconnecting clears a needs-reconnect mark.
    """
    await tx.execute(
        "INSERT INTO integration_credentials (id, company_id, integration, account, key_id, "
        "access_token, refresh_token, access_expires_at, scopes, connected_by) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (company_id, integration) DO UPDATE SET id = EXCLUDED.id, "
        "account = EXCLUDED.account, key_id = EXCLUDED.key_id, access_token = EXCLUDED.access_token, "
        "refresh_token = EXCLUDED.refresh_token, access_expires_at = EXCLUDED.access_expires_at, "
        "scopes = EXCLUDED.scopes, connected_by = EXCLUDED.connected_by, "
        "version = integration_credentials.version + 1, updated_at = now(), "
        "needs_reconnect_at = NULL, needs_reconnect_reason = NULL",
        (
            credential_id,
            tx.company_id,
            integration,
            account,
            tokens.key_id,
            tokens.access_token,
            tokens.refresh_token,
            tokens.access_expires_at,
            scopes,
            connected_by,
        ),
    )


async def replace_tokens(
    tx: TenantTx, credential_id: UUID, expected_version: int, tokens: NewTokens
) -> bool:
    """Store refreshed (or re-encrypted) tokens if nobody changed the row since
    ``expected_version``. True if stored."""
    cur = await tx.execute(
        "UPDATE integration_credentials SET key_id = %s, access_token = %s, refresh_token = %s, "
        "access_expires_at = %s, version = version + 1, updated_at = now() "
        "WHERE company_id = %s AND id = %s AND version = %s",
        (
            tokens.key_id,
            tokens.access_token,
            tokens.refresh_token,
            tokens.access_expires_at,
            tx.company_id,
            credential_id,
            expected_version,
        ),
    )
    return cur.rowcount == 1


async def mark_needs_reconnect(
    tx: TenantTx,
    integration: str,
    version: int,
    reason: str,
    *,
    audit: Callable[[Credential], NewActivity],
) -> Credential | None:
    """Mark the company's credential for ``integration`` as needing reconnection, if it is
    still at ``version`` (a reconnect or another refresh since leaves it alone) and not marked
    already. The audit row ``audit(credential)`` is written in the same transaction, so the
    mark and its row exist together or not at all; a key seen before writes nothing. Returns
    the credential as marked, or ``None`` if this call changed nothing."""
    marked = await tx.first(
        Credential,
        "UPDATE integration_credentials SET needs_reconnect_at = now(), "
        "needs_reconnect_reason = %s WHERE company_id = %s AND integration = %s "
        f"AND version = %s AND needs_reconnect_at IS NULL RETURNING {_COLUMNS}",
        (reason[:REASON_MAX], tx.company_id, integration, version),
    )
    if marked is not None:
        await append_activity(tx, [audit(marked)])
    return marked


async def disconnect(tx: TenantTx, integration: str) -> bool:
    cur = await tx.execute(
        "DELETE FROM integration_credentials WHERE company_id = %s AND integration = %s",
        (tx.company_id, integration),
    )
    return cur.rowcount == 1


async def record_use(
    tx: TenantTx, credential: Credential, *, purpose: str, quest_id: UUID | None, worker: str
) -> None:
    await tx.execute(
        "INSERT INTO credential_uses (company_id, credential_id, integration, key_id, purpose, "
        "quest_id, worker) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            tx.company_id,
            credential.id,
            credential.integration,
            credential.key_id,
            purpose,
            quest_id,
            worker,
        ),
    )


async def uses(tx: TenantTx, integration: str | None = None, limit: int = 100) -> list[Use]:
    where = "company_id = %s" + (" AND integration = %s" if integration else "")
    params: tuple[object, ...] = (tx.company_id, integration) if integration else (tx.company_id,)
    return await tx.rows(
        Use,
        "SELECT credential_id, integration, key_id, purpose, quest_id, worker, used_at "
        f"FROM credential_uses WHERE {where} ORDER BY used_at DESC LIMIT %s",
        (*params, limit),
    )


async def under(tx: TenantTx, key_ids: list[str], limit: int) -> list[Credential]:
    """Credentials of the company encrypted under one of ``key_ids``."""
    return await tx.rows(
        Credential,
        f"SELECT {_COLUMNS} FROM integration_credentials WHERE company_id = %s AND key_id = ANY(%s) "
        "ORDER BY id LIMIT %s",
        (tx.company_id, key_ids, limit),
    )


async def key_counts(tx: TenantTx) -> Counter[str]:
    """How many ciphertexts of the company each key id protects."""
    rows = await tx.all(
        "SELECT key_id, count(*) + count(refresh_token) FROM integration_credentials "
        "WHERE company_id = %s GROUP BY key_id",
        (tx.company_id,),
    )
    return Counter({str(kid): int(n) for kid, n in rows})
