"""Quests: submit, show, cancel, and watch live."""

from __future__ import annotations

import contextlib
from datetime import UTC
from typing import Annotated, Any
from uuid import UUID

import structlog
from fastapi import APIRouter, Header, Query, Request, status
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import AwareDatetime
from starlette.concurrency import run_in_threadpool

from guard import CostParts, UnpricedModel, Usage
from guard.pricing import packaged_prices
from ingress.auth import member_tx
from ingress.cancel_request import may_cancel, request_cancel, send_cancel
from ingress.contract import sse_response
from ingress.deps import CallerDep, Deps
from ingress.guard_view import company_limits
from ingress.live import ENTRY_ID_PATTERN, LiveStreamResponse, open_stream, sse_events
from ingress.problems import COMMON, Refused, documented
from ingress.schemas import (
    CancelRequest,
    CostSplit,
    QuestAccepted,
    QuestPage,
    QuestStatus,
    QuestSubmit,
    QuestSummaryView,
    QuestView,
    StepView,
    usd_to_micros,
)
from ingress.submit import Gate, QuestSpec, create_quest, enqueue_first_step
from messages import Actor, ActorType
from messages.redis_keys import quest_stream_key
from store import TenantTx, quest_list
from store import quests as quests_store
from store.cursors import CURSOR_MAX
from store.quest_list import QuestFilter
from store.quests import Quest, Step

log = structlog.get_logger(__name__)
router = APIRouter(tags=["quests"], responses=documented(*COMMON))


@router.post(
    "/v1/companies/{company_id}/quests",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=QuestAccepted,
    responses=documented(
        400,
        409,
        413,
        429,
        _429="nothing was created or queued; retry after `Retry-After` seconds. "
        "`budget_exhausted`: the company's daily or monthly budget is spent to its halt line "
        "(`window`, `period` and `resets_at` name the window that resets last, and "
        "`Retry-After` is the seconds until then); `concurrency_limited`: as many quests "
        "running as the company may; `rate_limited`: as many quest starts this minute as it "
        "may",
    ),
)
async def submit_quest(
    company_id: UUID,
    body: QuestSubmit,
    who: CallerDep,
    deps: Deps,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    x_correlation_id: Annotated[UUID | None, Header()] = None,
) -> QuestAccepted:
    spec = QuestSpec(
        goal=body.goal,
        model=body.model or deps.settings.default_model,
        max_usd_micros=usd_to_micros(body.max_usd) if body.max_usd else None,
        idempotency_key=idempotency_key or None,
    )
    actor = Actor(type=ActorType.user, id=who.user_id)
    async with member_tx(deps.db, company_id, who) as (tx, _):
        gate = Gate(deps.admissions, await company_limits(tx, deps.settings), deps.guard)
        quest, publish = await create_quest(
            tx, actor, spec, correlation_id=x_correlation_id, gate=gate
        )
    if publish:
        await enqueue_first_step(deps.db, deps.publisher, quest, actor)
        log.info("quest submitted", quest_id=str(quest.id), company_id=str(company_id))
    response.headers["Location"] = f"/v1/companies/{company_id}/quests/{quest.id}"
    return QuestAccepted(quest_id=quest.id, status=quest.status)


QUEST = "/v1/companies/{company_id}/quests/{quest_id}"


@router.get("/v1/companies/{company_id}/quests", response_model=QuestPage)
async def list_quests(
    company_id: UUID,
    who: CallerDep,
    deps: Deps,
    status: Annotated[list[QuestStatus] | None, Query(max_length=6)] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    cursor: Annotated[str | None, Query(max_length=CURSOR_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> QuestPage:
    """The company's quests, newest first; follow ``next_cursor`` for older ones. Admins see
    every quest of the company, members the ones they submitted."""
    async with member_tx(deps.db, company_id, who) as (tx, member):
        filters = QuestFilter(
            statuses=tuple(status or ()),
            since=since,
            until=until,
            created_by=None if member.role == "admin" else who.actor.ref,
        )
        rows, next_cursor = await quest_list.page(tx, filters, cursor=cursor, limit=limit)
    return QuestPage(
        items=[QuestSummaryView.model_validate(r, from_attributes=True) for r in rows],
        next_cursor=next_cursor,
    )


@router.get(QUEST, response_model=QuestView, responses=documented(404))
async def show_quest(company_id: UUID, quest_id: UUID, who: CallerDep, deps: Deps) -> QuestView:
    async with member_tx(deps.db, company_id, who) as (tx, _):
        return await quest_view(tx, _found(await quests_store.get(tx, quest_id)))


@router.post(
    QUEST + "/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=QuestAccepted,
    responses={
        200: {"model": QuestView, "description": "the quest had already ended"},
        **documented(400, 404),
    },
)
async def cancel_quest(
    company_id: UUID, quest_id: UUID, who: CallerDep, deps: Deps, body: CancelRequest | None = None
) -> Any:
    """Stop the quest now, even mid-call. Admins may cancel any quest of the company, a member
    the quests they submitted."""
    reason = body.reason if body else ""
    actor = Actor(type=ActorType.user, id=who.user_id)
    async with member_tx(deps.db, company_id, who) as (tx, member):
        quest = _found(await quests_store.get(tx, quest_id, for_update=True))
        if quest.finished:
            view = await quest_view(tx, quest)
            return JSONResponse(view.model_dump(mode="json"), status_code=200)
        if not may_cancel(member.role, who.user_id, quest):
            raise Refused(
                status.HTTP_403_FORBIDDEN,
                "not_allowed",
                "only an admin or the quest's submitter may cancel it",
            )
        quest = await request_cancel(tx, quest, by=actor, reason=reason)
    await run_in_threadpool(  # it blocks (Redis)
        send_cancel, deps.redis, deps.publisher, quest, by=actor, reason=reason
    )
    log.info("quest cancel requested", quest_id=str(quest.id))
    return QuestAccepted(quest_id=quest.id, status="cancelling")


@router.get(
    QUEST + "/events",
    response_class=StreamingResponse,
    responses={
        **sse_response("the quest's events (`LiveEventData`), until it ends"),
        **documented(
            404,
            429,
            _429="the caller (reason `too_many_streams_for_user`) or its company "
            "(`too_many_streams_for_company`) has as many live streams open as it may; "
            "retry after `Retry-After` seconds",
        ),
    },
)
async def watch_quest(
    company_id: UUID,
    quest_id: UUID,
    request: Request,
    who: CallerDep,
    deps: Deps,
    last_event_id: Annotated[str | None, Header(max_length=64, pattern=ENTRY_ID_PATTERN)] = None,
) -> StreamingResponse:
    """The quest's events as Server-Sent Events, from the start or after ``Last-Event-ID``,
    ending when the quest ends or after ``S2_SSE_MAX_LIFE_S`` (then reconnect with
    ``Last-Event-ID``: nothing is lost or repeated). 429 with ``Retry-After`` when the
    caller or its company has as many streams open as it may."""

    async def finished() -> bool:
        async with member_tx(deps.db, company_id, who) as (tx, _):
            return _found(await quests_store.get(tx, quest_id)).finished

    await finished()  # membership first, and a 404 for another company's quest
    sub = open_stream(
        request,
        user_id=who.user_id,
        company_id=company_id,
        key=quest_stream_key(quest_id),
        after=last_event_id or "0-0",
    )
    max_life_s = deps.settings.sse_max_life_s  # the response gives the slot back, sent or not
    return LiveStreamResponse(
        sub, sse_events(sub, request, finished, max_life_s), max_life_s=max_life_s
    )


def _found(quest: Quest | None) -> Quest:
    if quest is None:
        raise Refused(status.HTTP_404_NOT_FOUND, "not_found", "no such quest")
    return quest


def cost_split(steps: list[Step]) -> CostSplit:
    """The replies of ``steps`` split as billed, each priced as on the (UTC) day it was made.
    Calls that failed yet were charged (``claude.call_charged`` rows) are in the quest's
    ``cost_usd_micros``, not here: they have no reply to split."""
    prices, parts, usage = packaged_prices(), CostParts(), Usage()
    for s in steps:
        if s.usage is None:
            continue
        used = Usage.from_api(s.usage)
        # a model since removed from the table: its tokens still count
        with contextlib.suppress(UnpricedModel):
            parts = parts + prices.cost_parts(s.model, used, s.started_at.astimezone(UTC).date())
        usage = usage + used
    return CostSplit(
        input_tokens=usage.input_tokens,
        cache_write_tokens=usage.cache_writes,
        cache_read_tokens=usage.cache_read,
        output_tokens=usage.output_tokens,
        input_usd_micros=parts.input,
        cache_write_usd_micros=parts.cache_write,
        cache_read_usd_micros=parts.cache_read,
        output_usd_micros=parts.output,
        cache_read_pct=usage.cache_read_pct,
    )


async def quest_view(tx: TenantTx, quest: Quest) -> QuestView:
    steps = await quests_store.steps(tx, quest.id)
    return QuestView(
        quest_id=quest.id,
        status=quest.status,
        goal=quest.goal,
        model=quest.model,
        steps=[
            StepView(
                step=s.step,
                status=s.status,
                stop_reason=s.stop_reason,
                tools=[b["name"] for b in s.content or [] if b.get("type") == "tool_use"],
                cost_usd_micros=s.cost_usd_micros,
                cost_split=cost_split([s]) if s.usage is not None else None,
                started_at=s.started_at,
                finished_at=s.finished_at,
            )
            for s in steps
        ],
        cost_usd_micros=quest.cost_usd_micros,
        cost_split=cost_split(steps),
        max_usd_micros=quest.max_usd_micros,
        result=quest.result,
        reason=quest.reason,
        created_at=quest.created_at,
        finished_at=quest.finished_at,
    )
