"""Quests: submit, show, cancel, watch."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

import redis
import typer
from redis.asyncio import Redis as AsyncRedis

from messages import Actor, ActorType
from system2.cli_support import (
    CompanyOption,
    actor,
    app_db,
    company_tx,
    emit,
    granted_quest_company,
    operator_db,
    quest_company,
    say,
    settings,
    support_read,
)
from system2.errors import System2Error

app = typer.Typer(help="Quests: submit, list, show, cancel, watch.", no_args_is_help=True)


@app.command("submit")
def quest_submit(
    company: Annotated[UUID, typer.Option(help="company id")],
    goal: Annotated[str, typer.Option(help="what Ted should do")],
    model: Annotated[str | None, typer.Option()] = None,
    max_usd: Annotated[str | None, typer.Option(help="cap in USD, e.g. 2.50")] = None,
    operator: Annotated[
        str | None, typer.Option(help="who submits, for the audit trail (default: S2_OPERATOR)")
    ] = None,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Submit a quest as an operator; prints the quest id."""
    from guard import Admissions, Guard
    from ingress.errors import SubmissionRefused, Throttled
    from ingress.guard_view import company_limits
    from ingress.schemas import usd_to_micros
    from ingress.submit import Gate, QuestSpec, create_quest, enqueue_first_step
    from messages.transport import publisher
    from store.quests import Quest

    s = settings()
    operator = actor(s, operator)
    try:
        cap = usd_to_micros(max_usd) if max_usd else None
    except ValueError as exc:
        raise System2Error(f"--max-usd {exc}") from None
    spec = QuestSpec(goal, model or s.default_model, cap, idempotency_key)
    submitter = Actor(type=ActorType.operator, id=operator)

    async def submit() -> Quest:
        async with app_db(s) as db:
            async with company_tx(db, company) as tx, AsyncRedis.from_url(s.redis_url) as client:
                gate = Gate(Admissions(client), await company_limits(tx, s), Guard(client))
                try:
                    quest, publish = await create_quest(tx, submitter, spec, gate=gate)
                except (Throttled, SubmissionRefused) as exc:
                    raise System2Error(str(exc)) from None
            if publish:
                with publisher(s.redis_url) as queue:
                    await enqueue_first_step(db, queue, quest, submitter)
        return quest

    emit(asyncio.run(submit()).id)


@app.command("list")
def quest_list(
    company: Annotated[UUID, typer.Option(help="company id")],
    status: Annotated[
        list[str] | None, typer.Option(help="only quests in this status (repeatable)")
    ] = None,
    since: Annotated[datetime | None, typer.Option(help="created at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, typer.Option(help="created before (ISO 8601)")] = None,
    by: Annotated[str | None, typer.Option(help="only this submitter's (e.g. user:alice)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    cursor: Annotated[str | None, typer.Option(help="the next_cursor of the previous page")] = None,
) -> None:
    """The company's quests, newest first, as JSON (filter, then page with --cursor); needs a
    support grant."""
    from ingress.schemas import QuestSummaryView
    from store import quest_list as quest_list_store
    from store.quest_list import STATUSES, QuestFilter, QuestSummary

    unknown = sorted(set(status or ()) - set(STATUSES))
    if unknown:
        raise System2Error(f"--status {unknown[0]!r} is not one of {', '.join(STATUSES)}")
    filters = QuestFilter(tuple(status or ()), _aware(since), _aware(until), by)
    s = settings()

    async def page() -> tuple[list[QuestSummary], str | None]:
        async with (
            operator_db(s) as db,
            support_read(db, company, "quest list") as tx,
        ):
            return await quest_list_store.page(tx, filters, cursor=cursor, limit=limit)

    rows, next_cursor = asyncio.run(page())
    items = [QuestSummaryView.model_validate(r, from_attributes=True) for r in rows]
    emit({"items": [i.model_dump(mode="json") for i in items], "next_cursor": next_cursor})


def _aware(at: datetime | None) -> datetime | None:
    """A time given without a zone is UTC."""
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


@app.command("show")
def quest_show(quest_id: UUID, company: CompanyOption = None) -> None:
    """Show a quest's state, steps, cost and result as JSON; needs a support grant."""
    from ingress.routes_quests import quest_view
    from store import quests as quests_store

    s = settings()

    async def show() -> None:
        async with operator_db(s) as db:
            owner = await granted_quest_company(db, quest_id, company)
            async with support_read(db, owner, "quest show", quest_id) as tx:
                quest = await quests_store.get(tx, quest_id)
                if quest is None:
                    raise System2Error(f"no quest {quest_id} in company {owner}")
                emit((await quest_view(tx, quest)).model_dump(mode="json"))

    asyncio.run(show())


@app.command("cancel")
def quest_cancel(
    quest_id: UUID,
    reason: Annotated[str, typer.Option(help="why, for the audit trail")] = "",
    operator: Annotated[
        str | None, typer.Option(help="who cancels, for the audit trail (default: S2_OPERATOR)")
    ] = None,
    company: CompanyOption = None,
) -> None:
    """Cancel a quest, even mid-call; its final state is printed when it had already ended."""
    from ingress.cancel_request import request_cancel, send_cancel
    from messages.transport import publisher
    from store import quests as quests_store

    s = settings()
    operator = actor(s, operator)
    by = Actor(type=ActorType.operator, id=operator)

    async def cancel() -> bool:
        """True if the cancel was sent; False if the quest had already ended."""
        async with app_db(s) as db:
            async with db.tenant(await quest_company(db, quest_id, company)) as tx:
                quest = await quests_store.get(tx, quest_id, for_update=True)
                if quest is None:
                    raise System2Error(f"no quest {quest_id}")
                if not quest.finished:
                    quest = await request_cancel(tx, quest, by=by, reason=reason)
            if quest.finished:
                say(f"quest {quest_id} had already ended: {quest.status}")
                return False
            with publisher(s.redis_url) as queue:
                send_cancel(redis.Redis.from_url(s.redis_url), queue, quest, by=by, reason=reason)
        return True

    if asyncio.run(cancel()):
        say(f"cancelling quest {quest_id}")


@app.command("watch")
def quest_watch(quest_id: UUID, company: CompanyOption = None) -> None:
    """Follow a quest live: each step, action, the cost so far, the guard's tier and the state;
    returns when the quest ends (or the support grant it needs does)."""
    from system2.watch import watch

    s = settings()

    async def follow() -> int:
        async with operator_db(s) as db:
            owner = await granted_quest_company(db, quest_id, company)
            async with support_read(db, owner, "quest watch", quest_id):
                pass  # recorded (and refused without a grant) before the first event shows
            return await watch(s, db, owner, quest_id)

    raise typer.Exit(asyncio.run(follow()))
