"""Access tokens for a tool call: decrypted only in memory, each use recorded, refreshed once.

A refresh runs under a per-credential lock with an owner token; whoever waited for the lock
re-reads the row and, finding it refreshed by someone else, uses the new token — so 16 steps
on an expired token make one refresh. The rotated refresh token is encrypted and stored
before the new access token is used: a provider that rotates refresh tokens invalidates the
old one, and losing the new one would lose the connection.

A credential the provider refuses for good — its token refused again right after the one
refresh, its refresh token refused (``invalid_grant``), or an expired token with no refresh
token — is marked as needing reconnection, with one audit row, and every call on it fails
its quest with ``NeedsReconnect`` (no token decrypted, no request sent) until the company
connects the integration again.

On the worker's event loop: each read or write of the credential is one short transaction
(``Database.in_tenant``), none is open while a step waits for the lock (an ``async with``
on Redis, sleeping between tries), and one only, holding the credential's row, is open
across the provider's token endpoint: the one that stores what it answers (see
``TokenBroker._rotate``). Opening a token
is CPU work in memory (AES-GCM, microseconds). Sealing a refreshed one may ask the vault's
shared encryption counter for a new block of counts, a sync Redis call, about once per
block of encryptions (see ``vault.vault``); it is left on the loop: a round trip that rare
costs less than a thread hop on every refresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import redis.asyncio
import structlog

from integrations import OAuthClient, OAuthError, TokenEndpointTrouble
from messages.redis_keys import credential_lock_key
from store import Database, TenantTx
from store import credentials as credentials_store
from store.activity import NewActivity
from store.credentials import Credential, NewTokens
from vault import Secret, Vault
from vault.sealed_tokens import ACCESS, REFRESH, seal, unseal
from workers.errors import NotConnected, ProviderUnavailable, TryLater, WorkerError
from workers.integrations.errors import NeedsReconnect, ProviderRateLimited
from workers.integrations.lock import RedisLock

log = structlog.get_logger(__name__)

NEEDS_RECONNECT = "integration.needs_reconnect"
AUDIT_ACTOR = "integrations"  # a system actor: the workers' integration code


class TokenBroker:
    def __init__(
        self,
        db: Database,
        vault: Vault,
        client: redis.asyncio.Redis,
        oauth: Mapping[str, OAuthClient],
        *,
        worker: str,
        skew: timedelta = timedelta(seconds=30),
    ) -> None:
        self.db = db
        self.vault = vault
        self.redis = client
        self.oauth = oauth
        self.worker = worker
        self.skew = skew

    async def access_token(
        self,
        company_id: UUID,
        integration: str,
        *,
        purpose: str,
        quest_id: UUID | None,
        origin_message_id: UUID | None = None,
    ) -> tuple[Secret, int]:
        """A valid access token and the credential version it came from.
        ``origin_message_id``: the message that started the quest, for the audit row of a
        credential marked as needing reconnection."""

        async def current(tx: TenantTx) -> tuple[Credential, tuple[Secret, int] | None]:
            cred = await self._connected(tx, integration)
            if self._expired(cred):
                return cred, None
            await credentials_store.record_use(
                tx, cred, purpose=purpose, quest_id=quest_id, worker=self.worker
            )
            return cred, (self._open(company_id, cred, ACCESS), cred.version)

        cred, token = await self.db.in_tenant(company_id, current)
        if token is not None:
            return token
        return await self.refreshed_token(
            company_id,
            integration,
            stale_version=cred.version,
            purpose=purpose,
            quest_id=quest_id,
            origin_message_id=origin_message_id,
        )

    async def refreshed_token(
        self,
        company_id: UUID,
        integration: str,
        *,
        stale_version: int,
        purpose: str,
        quest_id: UUID | None,
        origin_message_id: UUID | None = None,
    ) -> tuple[Secret, int]:
        """A token newer than ``stale_version`` (expired or refused): refresh it, once. The
        provider's trouble at its token endpoint (429, 5xx) leaves the credential as it is:
        ``ProviderRateLimited`` or ``ProviderUnavailable``, and the step waits."""
        async with RedisLock(self.redis, credential_lock_key(company_id, integration)):

            async def under_lock(tx: TenantTx) -> tuple[Credential, Secret | None, bool]:
                """The credential; its access token if refreshed meanwhile (True), else its
                refresh token (False), or None when it has none."""
                cred = await self._connected(tx, integration)
                if cred.version != stale_version and not self._expired(cred):
                    await credentials_store.record_use(
                        tx, cred, purpose=purpose, quest_id=quest_id, worker=self.worker
                    )
                    return cred, self._open(company_id, cred, ACCESS), True
                if cred.refresh_token is None:
                    return cred, None, False
                await credentials_store.record_use(
                    tx,
                    cred,
                    purpose=f"refresh for {purpose}",
                    quest_id=quest_id,
                    worker=self.worker,
                )
                return cred, self._open(company_id, cred, REFRESH), False

            cred, secret, refreshed_meanwhile = await self.db.in_tenant(company_id, under_lock)
            if refreshed_meanwhile:
                assert secret is not None
                return secret, cred.version
            refresh = secret
            if refresh is None:
                raise await self.needs_reconnect(
                    company_id,
                    integration,
                    cred.version,
                    f"{self._title(integration)}'s token expired or was refused, and there is "
                    "no refresh token to renew it",
                    quest_id=quest_id,
                    origin_message_id=origin_message_id,
                )
            try:
                async with self.db.tenant(company_id) as tx:
                    return await self._rotate(tx, cred, refresh, purpose, quest_id)
            except _Refused as refused:  # marked once the transaction holding the row is over
                raise await self.needs_reconnect(
                    company_id,
                    integration,
                    cred.version,
                    refused.why,
                    quest_id=quest_id,
                    origin_message_id=origin_message_id,
                ) from None

    async def _rotate(
        self,
        tx: TenantTx,
        cred: Credential,
        refresh: Secret,
        purpose: str,
        quest_id: UUID | None,
    ) -> tuple[Secret, int]:
        """Trade the refresh token for new tokens, holding the credential's row from before the
        provider is asked until the new tokens are committed.

        A provider that rotates refresh tokens has invalidated the old one as soon as it
        answers: a process killed before the new one is stored loses the connection (the next
        refresh is a reuse, which such providers punish by revoking the grant). Holding the
        row, and a pooled connection for this rare call, shrinks that window to sealing in
        memory and one UPDATE and COMMIT on a connection already open. It also keeps the
        refresh single if the Redis lock lapses during a slow token endpoint: the next
        refresher waits on the row, then uses the tokens it finds. ``FOR NO KEY UPDATE``
        leaves other steps free to read the row meanwhile."""
        integration = cred.integration
        held = await self._connected(tx, integration, lock=True)
        if held.version != cred.version:  # refreshed (or reconnected) since we read it
            if self._expired(held):
                raise NotConnected(f"{integration} changed during a refresh; try again")
            await credentials_store.record_use(
                tx, held, purpose=purpose, quest_id=quest_id, worker=self.worker
            )
            return self._open(tx.company_id, held, ACCESS), held.version
        try:
            fresh = await self.oauth[integration].refresh(refresh)
        except TokenEndpointTrouble as exc:  # nobody's grant refused: the step waits
            if exc.rate_limited:
                raise ProviderRateLimited(
                    str(exc), retry_after_ms=exc.retry_after_ms, limited="our token requests"
                ) from None
            raise ProviderUnavailable(str(exc), retry_after_ms=exc.retry_after_ms) from None
        except OAuthError as exc:
            if exc.error != "invalid_grant":  # e.g. our client is refused: not the company's
                raise NotConnected(
                    f"{integration} refused to refresh the connection ({_refusal(exc)})"
                ) from None
            raise _Refused(
                f"{self._title(integration)} refused to refresh its token (invalid_grant)"
            ) from None
        sealed = seal(
            self.vault, company_id=tx.company_id, integration=integration, credential_id=cred.id,
            access=fresh.access, refresh=fresh.refresh or refresh,
        )  # fmt: skip
        tokens = NewTokens(
            sealed.key_id, sealed.access_token, sealed.refresh_token, fresh.expires_at
        )
        await credentials_store.replace_tokens(tx, cred.id, cred.version, tokens)  # held: stored
        log.info("credential refreshed", integration=integration, credential_id=str(cred.id))
        return fresh.access, cred.version + 1

    async def needs_reconnect(
        self,
        company_id: UUID,
        integration: str,
        version: int,
        why: str,
        *,
        quest_id: UUID | None,
        origin_message_id: UUID | None = None,
        data: dict[str, Any] | None = None,
    ) -> WorkerError:
        """Mark the credential (still at ``version``) as needing reconnection, with its one
        audit row, and return the error that ends the quest: ``NeedsReconnect``; or
        ``TryLater`` when the credential changed meanwhile (reconnected, or refreshed again by
        another step), so the step tries once more with what is there now. ``why`` holds no
        token and no provider text. The audit row's originating message is
        ``origin_message_id``: the message that started the quest whose call met the
        refusal."""

        def audit(cred: Credential) -> NewActivity:
            return NewActivity(
                idempotency_key=f"{NEEDS_RECONNECT}:{cred.id}:{cred.version}",
                occurred_at=datetime.now(UTC),
                actor_type="system",
                actor_id=AUDIT_ACTOR,
                action=NEEDS_RECONNECT,
                target=f"integration:{integration}",
                rationale=why,
                originating_message_id=origin_message_id,
                quest_id=quest_id,
                payload={"credential_version": cred.version, **(data or {})},
            )

        async def mark(tx: TenantTx) -> tuple[Credential | None, Credential | None]:
            marked = await credentials_store.mark_needs_reconnect(
                tx, integration, version, why, audit=audit
            )
            return marked, marked or await credentials_store.get(tx, integration)

        marked, current = await self.db.in_tenant(company_id, mark)
        if marked is not None:
            log.warning(
                "credential needs reconnecting",
                integration=integration,
                credential_id=str(marked.id),
                reason=why,
            )
            return NeedsReconnect(integration, why)
        if current is None:
            return NotConnected(f"the company has not connected {integration}")
        if current.needs_reconnect:
            return NeedsReconnect(integration, current.needs_reconnect_reason or why)
        return TryLater(
            f"the {integration} credential changed during the call; trying again with it",
            retry_after_ms=1_000,
        )

    async def _connected(self, tx: TenantTx, integration: str, *, lock: bool = False) -> Credential:
        cred = await credentials_store.get(tx, integration, for_update=lock)
        if cred is None:
            raise NotConnected(f"the company has not connected {integration}")
        _still_connected(cred)
        return cred

    def _title(self, integration: str) -> str:
        client = self.oauth.get(integration)
        return client.provider.title if client is not None else integration

    def _expired(self, cred: Credential) -> bool:
        return (
            cred.access_expires_at is not None
            and cred.access_expires_at <= datetime.now(UTC) + self.skew
        )

    def _open(self, company_id: UUID, cred: Credential, field: str) -> Secret:
        ciphertext = cred.access_token if field == ACCESS else cred.refresh_token
        assert ciphertext is not None
        return unseal(
            self.vault, ciphertext, company_id=company_id, integration=cred.integration,
            credential_id=cred.id, field=field,
        )  # fmt: skip


class _Refused(WorkerError):
    """The provider refused the refresh token for good (``invalid_grant``); caught by
    ``refreshed_token``, which marks the credential once the row is no longer held."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _still_connected(cred: Credential) -> None:
    """A credential marked as needing reconnection is not used: the provider refused it."""
    if cred.needs_reconnect:
        raise NeedsReconnect(cred.integration, cred.needs_reconnect_reason or "it was refused")


def _code(text: str) -> str:
    """An OAuth error code, as a word of ours: never the provider's free text."""
    word = text.strip()[:40]
    return word if word.replace("_", "").isalnum() else "an error"


def _refusal(exc: OAuthError) -> str:
    """The status and error code of a refused refresh, e.g. ``HTTP 401 invalid_client``."""
    code = _code(exc.error) if exc.error else ""
    return " ".join(part for part in (f"HTTP {exc.status}" if exc.status else "", code) if part)
