"""Maintenance actors' work: re-encrypting credentials (and webhook endpoints' signing
secrets) under the vault's new primary key.

One message per company and batch; each batch commits on its own and the next batch is a new
message, so the rewrap is resumable, can run twice, and runs beside live workers (a row that
a refresh changed meanwhile is skipped and picked up by the next pass). Plaintext never
leaves the vault.
"""

from __future__ import annotations

import functools
from uuid import UUID

import structlog

from messages import Envelope, RewrapCredentials
from store import Database, TenantTx
from store import credentials as credentials_store
from store import webhooks as webhooks_store
from store.credentials import Credential, NewTokens
from store.webhooks import Endpoint
from vault import Vault, key_id_of, webhook_secrets
from vault.sealed_tokens import rewrap
from workers.errors import TryLater
from workers.publisher import QueuePublisher

log = structlog.get_logger(__name__)


class Rewrapper:
    def __init__(self, db: Database, vault: Vault, publisher: QueuePublisher) -> None:
        self.db = db
        self.vault = vault
        self.publisher = publisher

    async def run(self, env: Envelope[RewrapCredentials]) -> int:
        """Rewrap one batch; returns how many credentials moved to the primary key."""
        wanted, primary = env.payload.primary_kid, self.vault.keyring.primary.kid
        if primary != wanted:
            raise TryLater(
                f"this worker's primary key is {primary}, the rewrap asks for {wanted}: restart the "
                "workers with the new S2_VAULT_KEYS",
                retry_after_ms=30_000,
            )
        older = [kid for kid in self.vault.keyring.kids if kid != primary]
        batch = await self.db.in_tenant(  # a key not in the keyring cannot be opened
            env.company_id, lambda tx: credentials_store.under(tx, older, env.payload.batch)
        )
        moved = 0
        for cred in batch:
            tokens = self._rewrapped(env.company_id, cred)
            moved += await self.db.in_tenant(
                env.company_id, functools.partial(_replace, cred, tokens)
            )
        endpoints = await self.db.in_tenant(
            env.company_id, lambda tx: webhooks_store.under(tx, older, env.payload.batch)
        )
        for endpoint in endpoints:
            moved += await self.db.in_tenant(
                env.company_id, functools.partial(self._rewrap_secret, env.company_id, endpoint)
            )
        if env.payload.batch in (len(batch), len(endpoints)):  # there may be more: a new message
            await self.publisher.publish(env.follow_up(env.payload))
        log.info(
            "credentials rewrapped",
            moved=moved,
            batch=len(batch),
            webhook_secrets=len(endpoints),
            key_id=primary,
        )
        return moved

    async def _rewrap_secret(self, company_id: UUID, endpoint: Endpoint, tx: TenantTx) -> bool:
        sealed = webhook_secrets.rewrap(
            self.vault, endpoint.secret, company_id=company_id, endpoint_id=endpoint.id
        )
        return await webhooks_store.replace_secret(tx, endpoint, key_id_of(sealed), sealed)

    def _rewrapped(self, company_id: UUID, cred: Credential) -> NewTokens:
        sealed = rewrap(
            self.vault,
            company_id=company_id,
            integration=cred.integration,
            credential_id=cred.id,
            access=cred.access_token,
            refresh=cred.refresh_token,
        )
        return NewTokens(
            sealed.key_id, sealed.access_token, sealed.refresh_token, cred.access_expires_at
        )


async def _replace(cred: Credential, tokens: NewTokens, tx: TenantTx) -> bool:
    """Store the rewrapped tokens unless a refresh changed the row meanwhile."""
    return await credentials_store.replace_tokens(tx, cred.id, cred.version, tokens)
