"""Storing a connected integration: the tokens of a completed OAuth flow (ours, at the
callback of ``ingress.oauth_flow``, or the upstream API's, handed to ``PUT``) sealed with the
vault; only the ciphertexts are stored. Shared by the HTTP routes and the CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from ingress.schemas import Text
from integrations import PROVIDERS, provider
from messages import Actor, AuditBatch, AuditEvent, Envelope
from runtime.settings import Settings
from store import TenantTx
from store import credentials as credentials_store
from store.credentials import Credential, NewTokens
from vault import Secret, Vault
from vault.sealed_tokens import seal

SCOPE_MAX = 200


class IntegrationTokens(BaseModel):
    """What the upstream API sends; never echoed back, never logged."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    access_token: str = Field(min_length=1, max_length=8192, repr=False)
    refresh_token: str | None = Field(None, min_length=1, max_length=8192, repr=False)
    expires_at: datetime | None = None
    scopes: list[Annotated[Text, Field(max_length=SCOPE_MAX)]] = Field(
        default_factory=list, max_length=50
    )
    account: Text | None = Field(None, max_length=200)

    @field_validator("expires_at")
    @classmethod
    def expires_at_is_storable(cls, value: datetime | None) -> datetime | None:
        # Postgres keeps years up to 294276, Python's datetime only 1-9999: bound it so the
        # stored value can be read back (a naive time is taken as UTC, with a day's margin).
        aware = value.replace(tzinfo=UTC) if value and value.tzinfo is None else value
        if aware is not None and not EARLIEST <= aware <= LATEST:
            raise ValueError("must be between 1970 and 9998")
        return value


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9998, 12, 31, tzinfo=UTC)


ConnectionStatus = Literal["connected", "needs_reconnect", "disabled"]


class IntegrationView(BaseModel):
    integration: str
    title: str
    status: ConnectionStatus = Field(
        description="connected; needs_reconnect (the provider refused the token even after a "
        "refresh, or refused the refresh: a company admin must connect it again); disabled "
        "(this deployment does not offer the integration now: its tools are not offered)"
    )
    account: str | None
    scopes: list[str]
    access_expires_at: datetime | None
    key_id: str
    has_refresh_token: bool
    connected_by: str
    connected_at: datetime
    updated_at: datetime
    needs_reconnect: bool = Field(
        False,
        description="the provider refuses this connection (a 401 after a refresh, or a refused "
        "refresh): quests that use it fail until a company admin connects it again",
    )
    needs_reconnect_since: datetime | None = None
    needs_reconnect_reason: str | None = None


def view(cred: Credential, settings: Settings) -> IntegrationView:
    offered = cred.integration in settings.integrations and (
        settings.integrations[cred.integration].enabled
    )
    status: ConnectionStatus = (
        "disabled" if not offered else "needs_reconnect" if cred.needs_reconnect else "connected"
    )
    return IntegrationView(
        integration=cred.integration,
        status=status,
        title=PROVIDERS[cred.integration].title
        if cred.integration in PROVIDERS
        else cred.integration,
        account=cred.account,
        scopes=cred.scopes,
        access_expires_at=cred.access_expires_at,
        key_id=cred.key_id,
        has_refresh_token=cred.refresh_token is not None,
        connected_by=cred.connected_by,
        connected_at=cred.created_at,
        updated_at=cred.updated_at,
        needs_reconnect=cred.needs_reconnect,
        needs_reconnect_since=cred.needs_reconnect_at,
        needs_reconnect_reason=cred.needs_reconnect_reason,
    )


async def connect(
    tx: TenantTx, vault: Vault, integration: str, tokens: IntegrationTokens, *, connected_by: str
) -> Credential:
    """Seal the tokens (in a worker thread: the vault's counter is in Redis) and store them
    in ``tx``."""
    provider(integration)  # UnknownIntegration if there is none
    credential_id = uuid4()
    sealed = await run_in_threadpool(
        seal,
        vault,
        company_id=tx.company_id,
        integration=integration,
        credential_id=credential_id,
        access=Secret(tokens.access_token),
        refresh=Secret(tokens.refresh_token) if tokens.refresh_token else None,
    )
    await credentials_store.connect(
        tx,
        credential_id,
        integration,
        NewTokens(sealed.key_id, sealed.access_token, sealed.refresh_token, tokens.expires_at),
        account=tokens.account,
        scopes=tokens.scopes,
        connected_by=connected_by,
    )
    cred = await credentials_store.get(tx, integration)
    assert cred is not None
    return cred


def audit_envelope(
    company_id: UUID, actor: Actor, action: str, target: str, data: dict[str, Any]
) -> Envelope[AuditBatch]:
    """One audit row about a company's integration (connected, disconnected), for the log
    writer; a fresh idempotency key, since each such act happens once."""
    event = AuditEvent(
        idempotency_key=f"{action}:{uuid4()}", actor=actor, action=action, target=target, data=data
    )
    return Envelope[AuditBatch](
        company_id=company_id,
        actor=actor,
        correlation_id=uuid4(),
        payload=AuditBatch(events=[event]),
    )
