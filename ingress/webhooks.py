"""Registering a company's webhook endpoints: the URL checked, a signing secret made, shown
once and stored sealed by the vault. Shared by the HTTP routes and the CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from ingress.schemas import Text
from runtime.webhook_urls import URL_MAX, EndpointRefused, check_url
from store import TenantTx
from store import webhooks as webhooks_store
from store.webhooks import Delivery, Endpoint, NewEndpoint
from vault import Secret, Vault, key_id_of
from vault.webhook_secrets import new_secret, seal

EventType = Literal[
    "quest.succeeded",
    "quest.failed",
    "quest.cancelled",
    "quest.halted",
    "guard.tier_changed",
    "integration.needs_reconnect",
]


class WebhookSpec(BaseModel):
    """An endpoint to register: where, and for which events."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=URL_MAX,
        description="https (http and loopback only in dev and test); no user or password",
    )
    event_types: list[EventType] = Field(min_length=1, max_length=6)
    description: Annotated[Text, Field(max_length=500)] | None = None

    @field_validator("url")
    @classmethod
    def url_is_an_endpoint(cls, value: str) -> str:
        # The rules every environment keeps; the deployed ones are checked by ``register``.
        try:
            check_url(value, deployed=False)
        except EndpointRefused as exc:
            raise ValueError(f"{exc.reason}: {exc}") from None
        return value

    @field_validator("event_types")
    @classmethod
    def each_once(cls, value: list[str]) -> list[str]:
        return sorted(set(value))


class WebhookView(BaseModel):
    id: UUID
    url: str
    event_types: list[str]
    description: str | None
    enabled: bool
    disabled_at: datetime | None = Field(
        description="set when its deliveries kept failing (S2_WEBHOOK_DISABLE_AFTER)"
    )
    disabled_reason: str | None
    created_by: str
    created_at: datetime


class WebhookCreated(WebhookView):
    secret: str = Field(
        description="the signing secret (whsec_…): shown this once, never again; verify each "
        "delivery's webhook-signature with it"
    )


class DeliveryView(BaseModel):
    id: str = Field(description="the webhook-id header of every attempt of this delivery")
    event_type: str
    quest_id: UUID | None
    status: Literal["pending", "delivered", "failed"] = Field(
        description="pending (to be tried, or tried again at next_attempt_at); delivered (a "
        "2xx came back); failed (given up after every retry, or its endpoint was disabled)"
    )
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status: int | None = Field(description="the HTTP status of the last attempt, if any")
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    data: dict[str, Any]


class DeliveryPage(BaseModel):
    items: list[DeliveryView]
    next_cursor: str | None = Field(description="pass as cursor for the next (older) page")


def view(endpoint: Endpoint) -> WebhookView:
    return WebhookView(
        id=endpoint.id,
        url=endpoint.url,
        event_types=endpoint.event_types,
        description=endpoint.description,
        enabled=endpoint.enabled,
        disabled_at=endpoint.disabled_at,
        disabled_reason=endpoint.disabled_reason,
        created_by=endpoint.created_by,
        created_at=endpoint.created_at,
    )


def delivery_view(d: Delivery) -> DeliveryView:
    return DeliveryView(
        id=str(d.id),
        event_type=d.event_type,
        quest_id=d.quest_id,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
        last_attempt_at=d.last_attempt_at,
        last_status=d.last_status,
        last_error=d.last_error,
        delivered_at=d.delivered_at,
        created_at=d.created_at,
        data=d.data,
    )


async def register(
    tx: TenantTx, vault: Vault, spec: WebhookSpec, *, created_by: str, deployed: bool
) -> WebhookCreated:
    """Store the endpoint in ``tx`` with a new secret, sealed (in a worker thread: the
    vault's counter is in Redis); the answer is the only place the secret appears.
    ``EndpointRefused`` when the URL may not be an endpoint here."""
    check_url(spec.url, deployed=deployed)
    endpoint_id = uuid4()
    secret = new_secret()
    sealed = await run_in_threadpool(
        seal, vault, secret, company_id=tx.company_id, endpoint_id=endpoint_id
    )
    endpoint = await webhooks_store.add_endpoint(
        tx,
        NewEndpoint(
            id=endpoint_id,
            url=spec.url,
            event_types=list(spec.event_types),
            description=spec.description,
            key_id=key_id_of(sealed),
            secret=sealed,
            created_by=created_by,
        ),
    )
    return WebhookCreated(**view(endpoint).model_dump(), secret=_shown(secret))


def _shown(secret: Secret) -> str:
    return secret.reveal()


def cursor_of(page: list[Delivery], limit: int) -> str | None:
    return str(page[-1].activity_id) if len(page) == limit else None
