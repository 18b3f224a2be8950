"""A company's webhook endpoints and their deliveries (company admins only). The ingress
only registers them: deliveries are sent by the workers (``workers.webhooks``)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, status
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from ingress.auth import Caller, member_tx
from ingress.deps import CallerDep, Deps, IngressDeps
from ingress.errors import VaultUnavailable
from ingress.integrations import audit_envelope
from ingress.problems import Refused, documented
from ingress.webhooks import (
    DeliveryPage,
    WebhookCreated,
    WebhookSpec,
    WebhookView,
    cursor_of,
    delivery_view,
    register,
    view,
)
from messages import Actor, ActorType
from runtime.webhook_urls import EndpointRefused
from store import webhooks as webhooks_store

router = APIRouter(tags=["webhooks"], responses=documented(401, 403, 422, 503))

WEBHOOKS_PATH = "/v1/companies/{company_id}/webhooks"
ENDPOINT_PATH = WEBHOOKS_PATH + "/{endpoint_id}"
_REFUSED_URL = (
    "the request is not valid (`validation_failed` with `errors`: a refused URL names "
    "`body.url` with its reason: `url_scheme`, `url_credentials`, `url_too_long`, "
    "`url_invalid`, `address_not_global`)"
)


@router.post(
    WEBHOOKS_PATH,
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    operation_id="create_webhook",
    responses=documented(413, 422, _422=_REFUSED_URL),
)
async def create_webhook(
    company_id: UUID, body: WebhookSpec, who: CallerDep, deps: Deps
) -> WebhookCreated:
    """Register an endpoint for the given event types. The answer holds its signing secret,
    shown this once."""
    if deps.vault is None:
        raise VaultUnavailable()
    async with member_tx(deps.db, company_id, who, admin=True) as (tx, _):
        try:
            created = await register(
                tx,
                deps.vault,
                body,
                created_by=f"user:{who.user_id}",
                deployed=deps.settings.deployed(),
            )
        except EndpointRefused as exc:
            problem = {"loc": ("body", "url"), "msg": f"{exc.reason}: {exc}", "type": "value_error"}
            raise RequestValidationError([problem]) from None
    data = {"event_types": created.event_types}
    await _audit(deps, company_id, who, "webhook.created", created.id, data)
    return created


@router.get(
    WEBHOOKS_PATH,
    response_model=list[WebhookView],
    operation_id="list_webhooks",
)
async def list_webhooks(company_id: UUID, who: CallerDep, deps: Deps) -> list[WebhookView]:
    """The company's endpoints (never their secrets), enabled or disabled."""
    async with member_tx(deps.db, company_id, who, admin=True) as (tx, _):
        return [view(e) for e in await webhooks_store.endpoints(tx)]


@router.delete(
    ENDPOINT_PATH,
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="delete_webhook",
    responses=documented(404),
)
async def delete_webhook(company_id: UUID, endpoint_id: UUID, who: CallerDep, deps: Deps) -> None:
    """Remove the endpoint and its deliveries: nothing more is sent to it."""
    async with member_tx(deps.db, company_id, who, admin=True) as (tx, _):
        if not await webhooks_store.remove_endpoint(tx, endpoint_id):
            raise Refused(status.HTTP_404_NOT_FOUND, "not_found", "no such webhook endpoint")
    await _audit(deps, company_id, who, "webhook.removed", endpoint_id, {})


@router.get(
    ENDPOINT_PATH + "/deliveries",
    response_model=DeliveryPage,
    operation_id="list_webhook_deliveries",
    responses=documented(404),
)
async def list_webhook_deliveries(
    company_id: UUID,
    endpoint_id: UUID,
    who: CallerDep,
    deps: Deps,
    cursor: Annotated[str | None, Query(max_length=20, pattern=r"^[0-9]{1,19}$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeliveryPage:
    """The endpoint's deliveries, newest first, each with its attempts and outcome."""
    async with member_tx(deps.db, company_id, who, admin=True) as (tx, _):
        if await webhooks_store.endpoint(tx, endpoint_id) is None:
            raise Refused(status.HTTP_404_NOT_FOUND, "not_found", "no such webhook endpoint")
        page = await webhooks_store.deliveries(
            tx, endpoint_id, before=int(cursor) if cursor else None, limit=limit
        )
    return DeliveryPage(items=[delivery_view(d) for d in page], next_cursor=cursor_of(page, limit))


async def _audit(
    deps: IngressDeps,
    company_id: UUID,
    who: Caller,
    action: str,
    endpoint_id: UUID,
    data: dict[str, Any],
) -> None:
    actor = Actor(type=ActorType.user, id=who.user_id)
    envelope = audit_envelope(company_id, actor, action, f"webhook:{endpoint_id}", data)
    await run_in_threadpool(deps.publisher.publish, envelope)  # it blocks (Redis)
