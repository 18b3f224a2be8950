"""The HTTP ingress: thin. It verifies the caller, stamps the tenant from the verified
membership (never from the body), and publishes through ``messages``. It never imports the
workers' code, so it carries no Claude client and no integration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from uuid import UUID

import redis
import structlog
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from guard import Admissions, Guard, GuardUnavailable
from ingress.auth import Caller, TokenVerifier, member_tx
from ingress.guard_view import GuardView, company_limits, guard_view
from ingress.middleware import RequestContext
from ingress.schemas import (
    ActivityPage,
    ActivityView,
    QuestAccepted,
    QuestSubmit,
    QuestView,
    StepView,
    usd_to_micros,
)
from ingress.submit import (
    Gate,
    QuestSpec,
    SubmissionRefused,
    Throttled,
    create_quest,
    enqueue_first_step,
)
from messages import Actor, ActorType, PublishFailed
from messages.transport import Publisher
from store import Conflict, Database, StoreUnavailable
from store import activity as activity_store
from store import quests as quests_store
from store.activity import ActivityFilter, BadCursor
from system2.settings import Settings

log = structlog.get_logger(__name__)
RETRY_AFTER_S = 5


@dataclass
class IngressDeps:
    """What the ingress holds for its lifetime, passed in by whoever starts it."""

    settings: Settings
    db: Database
    publisher: Publisher
    redis: redis.Redis
    verifier: TokenVerifier
    admissions: Admissions
    guard: Guard


def get_deps(request: Request) -> IngressDeps:
    deps: IngressDeps = request.app.state.deps
    return deps


def get_caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> Caller:
    return get_deps(request).verifier.verify(authorization)


Deps = Annotated[IngressDeps, Depends(get_deps)]
CallerDep = Annotated[Caller, Depends(get_caller)]
router = APIRouter()


def create_app(deps: IngressDeps) -> FastAPI:
    app = FastAPI(title="System2 ingress", version="1", docs_url="/docs", redoc_url=None)
    app.state.deps = deps
    _install_error_handlers(app)
    app.include_router(router)
    app.add_middleware(RequestContext)
    return app


@router.get("/healthz", tags=["ops"])
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"])
def readyz(deps: Deps) -> JSONResponse:
    problems = {}
    try:
        deps.redis.ping()
    except redis.RedisError as exc:
        problems["redis"] = type(exc).__name__
    try:
        deps.db.ping()
    except StoreUnavailable as exc:
        problems["postgres"] = str(exc)
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.post(
    "/v1/companies/{company_id}/quests",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=QuestAccepted,
    tags=["quests"],
)
def submit_quest(
    company_id: UUID,
    body: QuestSubmit,
    who: CallerDep,
    deps: Deps,
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
    with member_tx(deps.db, company_id, who) as (tx, _):
        gate = Gate(deps.admissions, company_limits(tx, deps.settings))
        quest, publish = create_quest(tx, actor, spec, correlation_id=x_correlation_id, gate=gate)
    if publish:
        enqueue_first_step(deps.db, deps.publisher, quest, actor)
        log.info("quest submitted", quest_id=str(quest.id), company_id=str(company_id))
    return QuestAccepted(quest_id=quest.id, status=quest.status)


@router.get(
    "/v1/companies/{company_id}/quests/{quest_id}", response_model=QuestView, tags=["quests"]
)
def show_quest(company_id: UUID, quest_id: UUID, who: CallerDep, deps: Deps) -> QuestView:
    with member_tx(deps.db, company_id, who) as (tx, _):
        quest = quests_store.get(tx, quest_id)
        if quest is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such quest")
        steps = quests_store.steps(tx, quest_id)
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
                started_at=s.started_at,
                finished_at=s.finished_at,
            )
            for s in steps
        ],
        cost_usd_micros=quest.cost_usd_micros,
        max_usd_micros=quest.max_usd_micros,
        result=quest.result,
        reason=quest.reason,
        created_at=quest.created_at,
        finished_at=quest.finished_at,
    )


@router.get("/v1/companies/{company_id}/guard", response_model=GuardView, tags=["guard"])
def show_guard(company_id: UUID, who: CallerDep, deps: Deps) -> GuardView:
    """Spend, caps and tier per running quest and per budget window (company admins)."""
    with member_tx(deps.db, company_id, who, admin=True) as (tx, _):
        return guard_view(tx, deps.settings, deps.guard, deps.admissions)


@router.get("/v1/companies/{company_id}/activity", response_model=ActivityPage, tags=["audit"])
def list_activity(
    company_id: UUID,
    who: CallerDep,
    deps: Deps,
    quest_id: UUID | None = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=200)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ActivityPage:
    filters = ActivityFilter(
        quest_id=quest_id, actor_id=actor, action=action, since=since, until=until
    )
    with member_tx(deps.db, company_id, who, admin=True) as (tx, _):
        rows, next_cursor = activity_store.page(tx, filters, cursor=cursor, limit=limit)
    return ActivityPage(
        items=[ActivityView.model_validate(r, from_attributes=True) for r in rows],
        next_cursor=next_cursor,
    )


def _install_error_handlers(app: FastAPI) -> None:
    def unavailable(what: str) -> JSONResponse:
        return JSONResponse(
            {"detail": f"{what} is unavailable; nothing was done, retry later"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the bad fields; never echo the values back (they may hold secrets).
        errors = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ())),
                "problem": e.get("msg", "invalid"),
            }
            for e in exc.errors()
        ]
        summary = "; ".join(f"{e['field']}: {e['problem']}" for e in errors[:5])
        return JSONResponse({"detail": summary, "errors": errors}, status_code=422)

    @app.exception_handler(StoreUnavailable)
    async def store_down(_: Request, __: StoreUnavailable) -> JSONResponse:
        return unavailable("the database")

    @app.exception_handler(PublishFailed)
    async def queue_down(_: Request, __: PublishFailed) -> JSONResponse:
        return unavailable("the queue")

    @app.exception_handler(redis.RedisError)
    async def redis_down(_: Request, __: redis.RedisError) -> JSONResponse:
        return unavailable("the queue")

    @app.exception_handler(Throttled)
    async def throttled(_: Request, exc: Throttled) -> JSONResponse:
        return JSONResponse(
            {"detail": f"{exc}; nothing was queued, retry later"},
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(exc.retry_after_s)},
        )

    @app.exception_handler(SubmissionRefused)
    async def refused(_: Request, exc: SubmissionRefused) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(GuardUnavailable)
    async def guard_down(_: Request, __: GuardUnavailable) -> JSONResponse:
        return unavailable("the guard store")

    @app.exception_handler(Conflict)
    async def conflict(_: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_409_CONFLICT)

    @app.exception_handler(BadCursor)
    async def bad_cursor(_: Request, exc: BadCursor) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)


def build(settings: Settings) -> FastAPI:
    """The ingress app wired to real Postgres and Redis, from settings."""
    from messages.transport import build_broker

    db = Database(settings.database_url, min_size=1, max_size=settings.db_pool_max, name="ingress")
    db.open(wait=False)
    redis_client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=5, socket_connect_timeout=2
    )
    deps = IngressDeps(
        settings=settings,
        db=db,
        publisher=Publisher(build_broker(settings.redis_url)),
        redis=redis_client,
        verifier=TokenVerifier(
            settings.jwt_secret.get_secret_value(), audience=settings.jwt_audience
        ),
        admissions=Admissions(redis_client),
        guard=Guard(redis_client),
    )
    return create_app(deps)


def from_env() -> FastAPI:
    """uvicorn's factory: settings from the environment, logging configured."""
    from system2 import logs

    logs.configure()
    return build(Settings())
