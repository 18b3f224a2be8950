"""The company-wide live feed: every quest's events as they happen, for the console and the
upstream API (which would otherwise hold one stream per quest)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from ingress.auth import Caller, member_tx
from ingress.contract import sse_response
from ingress.deps import CallerDep, Deps
from ingress.live import ENTRY_ID_PATTERN, LiveStreamResponse, open_stream, sse_events
from ingress.problems import COMMON, documented
from messages.redis_keys import company_stream_key
from store import Database
from store import quests as quests_store
from store.companies import Role

router = APIRouter(tags=["quests"], responses=documented(*COMMON))
SEEN_MAX = 10_000  # quests whose visibility a member's stream remembers


class OwnQuests:
    """Which of the company's quest events a member may see: those of the quests it
    submitted. Each quest is looked up once per stream (the answer never changes)."""

    def __init__(self, db: Database, company_id: UUID, caller: Caller) -> None:
        self._db = db
        self._company_id = company_id
        self._caller = caller
        self._seen: dict[str, bool] = {}

    async def __call__(self, payload: dict[str, Any]) -> bool:
        quest_id = str(payload.get("quest_id"))
        if quest_id not in self._seen:
            async with member_tx(self._db, self._company_id, self._caller) as (tx, _):
                quest = await quests_store.get(tx, UUID(quest_id))
            if len(self._seen) >= SEEN_MAX:
                self._seen.clear()
            self._seen[quest_id] = quest is not None and quest.created_by == self._caller.actor.ref
        return self._seen[quest_id]


@router.get(
    "/v1/companies/{company_id}/events",
    response_class=StreamingResponse,
    responses={
        **sse_response("every quest event of the company the caller may see (`LiveEventData`)"),
        **documented(429, _429="as many live streams open as the caller or company may"),
    },
)
async def watch_company(
    company_id: UUID,
    request: Request,
    who: CallerDep,
    deps: Deps,
    last_event_id: Annotated[str | None, Header(max_length=64, pattern=ENTRY_ID_PATTERN)] = None,
) -> StreamingResponse:
    """Every quest event of the company as Server-Sent Events (admins; a member sees its own
    quests'), from now or after ``Last-Event-ID``, until ``S2_SSE_MAX_LIFE_S`` (then
    reconnect with ``Last-Event-ID``: nothing is lost or repeated). The membership is checked
    again while it runs: a revoked member's or a demoted admin's stream ends."""
    async with member_tx(deps.db, company_id, who) as (_, member):
        role: Role = member.role

    async def changed() -> bool:
        async with member_tx(deps.db, company_id, who) as (_, now):
            return now.role != role

    key = company_stream_key(company_id)
    sub = open_stream(
        request,
        user_id=who.user_id,
        company_id=company_id,
        key=key,
        after=last_event_id or await _newest(deps, key),
    )
    max_life_s = deps.settings.sse_max_life_s
    events = sse_events(
        sub,
        request,
        changed,
        max_life_s,
        visible=None if role == "admin" else OwnQuests(deps.db, company_id, who),
        ends_with_quest=False,
    )
    return LiveStreamResponse(sub, events, max_life_s=max_life_s)


async def _newest(deps: Deps, key: str) -> str:
    """The id of the stream's newest entry (a new stream starts after it), or ``0-0``.
    Redis down: a 503 (``RedisError``), not a replay of the whole stream."""
    if deps.aredis is None:
        return "0-0"  # and open_stream answers 503: live events are not configured
    newest = await deps.aredis.xrevrange(key, count=1)
    if not newest:
        return "0-0"
    entry_id = newest[0][0]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
