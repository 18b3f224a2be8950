"""A company's own things: its integrations, its guard, its audit trail (mostly admins)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query, status
from pydantic import AwareDatetime, BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ingress import oauth_flow
from ingress.auth import Caller, member_tx
from ingress.deps import CallerDep, Deps, IngressDeps, oauth_states
from ingress.errors import VaultUnavailable
from ingress.guard_view import GuardView, guard_view
from ingress.integrations import (
    IntegrationTokens,
    IntegrationView,
    audit_envelope,
    connect,
    view,
)
from ingress.problems import COMMON, Refused, documented
from ingress.schemas import NO_NUL, ActivityPage, ActivityView
from messages import Actor, ActorType
from store import activity as activity_store
from store import companies as companies_store
from store import credentials as credentials_store
from store.activity import ActivityFilter
from store.companies import Role

router = APIRouter(responses=documented(*COMMON))


class CompanyMembership(BaseModel):
    company_id: UUID
    name: str
    role: Role


@router.get("/v1/companies", response_model=list[CompanyMembership], tags=["companies"])
async def list_my_companies(who: CallerDep, deps: Deps) -> list[CompanyMembership]:
    """The companies the caller belongs to, with its role in each."""
    found = await companies_store.member_companies(deps.db, who.user_id)
    return [CompanyMembership(company_id=m.company_id, name=m.name, role=m.role) for m in found]


INTEGRATION_PATH = "/v1/companies/{company_id}/integrations/{integration}"
IntegrationName = Annotated[str, Path(max_length=41, pattern=r"^[a-z][a-z0-9_]{0,40}$")]


@router.put(
    INTEGRATION_PATH,
    response_model=IntegrationView,
    tags=["integrations"],
    responses=documented(400, 404, 413),
)
async def connect_integration(
    company_id: UUID,
    integration: IntegrationName,
    body: IntegrationTokens,
    who: CallerDep,
    deps: Deps,
) -> IntegrationView:
    """Store the tokens of a completed OAuth flow, encrypted; none of them is echoed back."""
    if deps.vault is None:
        raise VaultUnavailable()
    async with member_tx(deps.db, company_id, who, admin=True) as (tx, _):
        cred = await connect(tx, deps.vault, integration, body, connected_by=f"user:{who.user_id}")
    await _audit(
        deps,
        company_id,
        who,
        "integration.connected",
        f"integration:{integration}",
        {"scopes": cred.scopes},
    )
    return view(cred, deps.settings)


class AuthorizeView(BaseModel):
    authorize_url: str = Field(
        description="open it in the admin's browser: the provider's consent page"
    )
    expires_at: datetime = Field(description="the link is good once, until then")
    redirect_uri: str = Field(description="where the provider sends the browser back (ours)")


@router.post(
    INTEGRATION_PATH + "/authorize",
    response_model=AuthorizeView,
    tags=["integrations"],
    responses=documented(404),
)
async def authorize_integration(
    company_id: UUID, integration: IntegrationName, who: CallerDep, deps: Deps
) -> AuthorizeView:
    """Begin connecting the integration (company admins): the provider's authorize URL, with
    a state bound to this company and this admin, single use, valid ten minutes. The
    provider sends the browser back to ``GET /v1/oauth/{integration}/callback``."""
    async with member_tx(deps.db, company_id, who, admin=True):
        pass
    if deps.vault is None:
        raise VaultUnavailable()
    actor = Actor(type=ActorType.user, id=who.user_id)
    found = await run_in_threadpool(
        oauth_flow.begin, deps.settings, oauth_states(deps), company_id, integration, actor
    )
    return AuthorizeView(
        authorize_url=found.url,
        expires_at=datetime.fromtimestamp(found.expires, UTC),
        redirect_uri=oauth_flow.redirect_uri(deps.settings, integration),
    )


@router.get(
    "/v1/companies/{company_id}/integrations",
    response_model=list[IntegrationView],
    tags=["integrations"],
)
async def list_integrations(company_id: UUID, who: CallerDep, deps: Deps) -> list[IntegrationView]:
    async with member_tx(deps.db, company_id, who) as (tx, _):
        return [view(c, deps.settings) for c in await credentials_store.all_for_company(tx)]


@router.delete(
    INTEGRATION_PATH,
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["integrations"],
    responses=documented(404),
)
async def disconnect_integration(
    company_id: UUID, integration: IntegrationName, who: CallerDep, deps: Deps
) -> None:
    async with member_tx(deps.db, company_id, who, admin=True) as (tx, _):
        if not await credentials_store.disconnect(tx, integration):
            raise Refused(status.HTTP_404_NOT_FOUND, "not_found", f"{integration} is not connected")
    await _audit(
        deps, company_id, who, "integration.disconnected", f"integration:{integration}", {}
    )


@router.get(INTEGRATION_PATH + "/uses", tags=["integrations"], responses=documented(404))
async def credential_uses(
    company_id: UUID, integration: IntegrationName, who: CallerDep, deps: Deps
) -> list[dict[str, Any]]:
    """Who decrypted the credential, when and why (admins): never the secret itself."""
    async with member_tx(deps.db, company_id, who, admin=True) as (tx, _):
        return [u.__dict__ for u in await credentials_store.uses(tx, integration)]


async def _audit(
    deps: IngressDeps, company_id: UUID, who: Caller, action: str, target: str, data: dict[str, Any]
) -> None:
    actor = Actor(type=ActorType.user, id=who.user_id)
    envelope = audit_envelope(company_id, actor, action, target, data)
    await run_in_threadpool(deps.publisher.publish, envelope)  # it blocks (Redis)


@router.get("/v1/companies/{company_id}/guard", response_model=GuardView, tags=["guard"])
async def show_guard(company_id: UUID, who: CallerDep, deps: Deps) -> GuardView:
    """Spend, caps and tier per running quest and per budget window (company admins)."""
    async with member_tx(deps.db, company_id, who, admin=True) as (tx, _):
        return await guard_view(tx, deps.settings, deps.guard, deps.admissions)


@router.get("/v1/companies/{company_id}/activity", response_model=ActivityPage, tags=["audit"])
async def list_activity(
    company_id: UUID,
    who: CallerDep,
    deps: Deps,
    quest_id: UUID | None = None,
    actor: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    action: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ActivityPage:
    filters = ActivityFilter(
        quest_id=quest_id, actor_id=actor, action=action, since=since, until=until
    )
    async with member_tx(deps.db, company_id, who, admin=True) as (tx, _):
        rows, next_cursor = await activity_store.page(tx, filters, cursor=cursor, limit=limit)
    return ActivityPage(
        items=[ActivityView.model_validate(r, from_attributes=True) for r in rows],
        next_cursor=next_cursor,
    )
