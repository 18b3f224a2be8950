"""Access tokens for a tool call: decrypted only in memory, each use recorded, refreshed once.

A refresh runs under a per-credential lock with an owner token; whoever waited for the lock
re-reads the row and, finding it refreshed by someone else, uses the new token — so 16 steps
on an expired token make one refresh. The rotated refresh token is encrypted and stored
before the new access token is used: a provider that rotates refresh tokens invalidates the
old one, and losing the new one would lose the connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from uuid import UUID

import redis
import structlog

from store import Database
from store import credentials as credentials_store
from store.credentials import Credential, NewTokens
from vault import Secret, Vault
from vault.tokens import ACCESS, REFRESH, seal, unseal
from workers.errors import NotConnected
from workers.integrations.lock import RedisLock
from workers.integrations.oauth import OAuthClient, OAuthError

log = structlog.get_logger(__name__)


class TokenBroker:
    def __init__(
        self,
        db: Database,
        vault: Vault,
        client: redis.Redis,
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

    def access_token(
        self, company_id: UUID, integration: str, *, purpose: str, quest_id: UUID | None
    ) -> tuple[Secret, int]:
        """A valid access token and the credential version it came from."""
        with self.db.tenant(company_id) as tx:
            cred = credentials_store.get(tx, integration)
            if cred is None:
                raise NotConnected(f"the company has not connected {integration}")
            if not self._expired(cred):
                credentials_store.record_use(
                    tx, cred, purpose=purpose, quest_id=quest_id, worker=self.worker
                )
                return self._open(company_id, cred, ACCESS), cred.version
        return self.refreshed_token(
            company_id, integration, stale_version=cred.version, purpose=purpose, quest_id=quest_id
        )

    def refreshed_token(
        self,
        company_id: UUID,
        integration: str,
        *,
        stale_version: int,
        purpose: str,
        quest_id: UUID | None,
    ) -> tuple[Secret, int]:
        """A token newer than ``stale_version`` (expired or refused): refresh it, once."""
        with RedisLock(self.redis, f"s2:lock:credential:{company_id}:{integration}"):
            with self.db.tenant(company_id) as tx:
                cred = credentials_store.get(tx, integration)
                if cred is None:
                    raise NotConnected(f"the company has not connected {integration}")
                if cred.version != stale_version and not self._expired(cred):
                    credentials_store.record_use(
                        tx, cred, purpose=purpose, quest_id=quest_id, worker=self.worker
                    )
                    return self._open(company_id, cred, ACCESS), cred.version  # refreshed meanwhile
                if cred.refresh_token is None:
                    raise NotConnected(
                        f"the {integration} token expired and there is no refresh token: reconnect"
                    )
                credentials_store.record_use(
                    tx,
                    cred,
                    purpose=f"refresh for {purpose}",
                    quest_id=quest_id,
                    worker=self.worker,
                )
                refresh = self._open(company_id, cred, REFRESH)
            try:
                fresh = self.oauth[integration].refresh(refresh)
            except OAuthError as exc:
                raise NotConnected(
                    f"{integration} refused to refresh the connection ({exc.error}): reconnect it"
                ) from None
            sealed = seal(
                self.vault, company_id=company_id, integration=integration, credential_id=cred.id,
                access=fresh.access, refresh=fresh.refresh or refresh,
            )  # fmt: skip
            with self.db.tenant(company_id) as tx:
                stored = credentials_store.replace_tokens(
                    tx, cred.id, cred.version,
                    NewTokens(sealed.key_id, sealed.access_token, sealed.refresh_token, fresh.expires_at),
                )  # fmt: skip
            if not stored:  # the row changed under the lock: only a reconnect does that
                raise NotConnected(f"{integration} was reconnected during a refresh; try again")
            log.info("credential refreshed", integration=integration, credential_id=str(cred.id))
            return fresh.access, cred.version + 1

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
