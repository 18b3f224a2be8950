"""The HTTP ingress: thin. It verifies the caller, stamps the tenant from the verified
membership (never from the body), and publishes through ``messages``. It never imports the
workers' code, so it carries no Claude client and no integration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import redis
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from redis.asyncio import BlockingConnectionPool
from redis.asyncio import Redis as AsyncRedis
from starlette.concurrency import run_in_threadpool

from guard import Admissions, Guard
from ingress import (
    contract,
    http_metrics,
    routes_company,
    routes_console,
    routes_feed,
    routes_oauth,
    routes_quests,
    routes_webhooks,
)
from ingress.asgi_middleware import BearerAuth, BodyLimit, RequestContext
from ingress.auth import TokenVerifier
from ingress.cors import Cors
from ingress.deps import Deps, IngressDeps
from ingress.error_handlers import install_error_handlers
from ingress.http_metrics import RequestMetrics
from ingress.live import REDIS_CONNECTIONS as LIVE_REDIS_CONNECTIONS
from ingress.live import LiveEvents
from messages.transport import Publisher, build_broker
from runtime import queue_metrics, sentry
from runtime.settings import Settings
from runtime.wiring import async_redis, maybe_vault
from store import Database, StoreUnavailable

DESCRIPTION = (
    "Submit, list, watch and cancel Ted's quests; read a company's audit trail, guard and "
    "integrations. Every `/v1` route takes a Supabase access token as a bearer token; every "
    "error is an RFC 9457 problem (`application/problem+json`) whose `code` says why."
)
ops = APIRouter(tags=["ops"])


def create_app(deps: IngressDeps) -> FastAPI:
    settings = deps.settings
    live = (
        LiveEvents(
            deps.aredis,
            max_per_user=settings.sse_max_per_user,
            max_per_company=settings.sse_max_per_company,
        )
        if deps.aredis is not None
        else None
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The pool belongs to the loop that opens it: the server's, which runs the routes.
        # Not waited for: the ingress comes up with Postgres down (readyz says so).
        await deps.db.open(wait=False)
        try:
            if live is not None:
                await live.start()  # the one reader of every live stream of this process
            try:
                yield
            finally:
                if live is not None:
                    await live.stop()
        finally:
            await deps.db.close()
            await deps.guard.redis.aclose()  # the guard's and the admissions' client

    app = FastAPI(
        title="System2 ingress",
        version="1",
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
        generate_unique_id_function=contract.operation_id,
    )
    contract.install(app)
    app.state.deps = deps
    app.state.live = live
    install_error_handlers(app)
    for router in (
        ops,
        routes_quests.router,
        routes_feed.router,
        routes_company.router,
        routes_oauth.router,
        routes_webhooks.router,
    ):
        app.include_router(router)
    app.include_router(routes_console.router)  # a static page: no token, no data
    # Innermost first. The token is checked before anything reads the body, and a body is
    # refused as soon as it passes the bound.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(BearerAuth, verifier=deps.verifier)
    app.add_middleware(Cors, origins=settings.cors_origins)  # preflights carry no token
    app.add_middleware(RequestContext)
    app.add_middleware(RequestMetrics)  # outermost: it sees every status, 500s included
    return app


@ops.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    problems: dict[str, str] | None = Field(None, description="what is down, and how")


@ops.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Redis or Postgres does not answer"}},
)
async def readyz(deps: Deps) -> JSONResponse:
    problems = {}
    try:
        await run_in_threadpool(deps.redis.ping)  # it blocks
    except redis.RedisError as exc:
        problems["redis"] = type(exc).__name__
    try:
        await deps.db.ping()
    except StoreUnavailable as exc:
        problems["postgres"] = str(exc)
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})


@ops.get("/metrics", include_in_schema=False)
def metrics(deps: Deps) -> Response:
    """Prometheus metrics (route templates, statuses, queue depths: no tenant data)."""
    shared = deps.settings.prometheus_multiproc_dir
    return Response(http_metrics.exposition(shared), media_type=CONTENT_TYPE_LATEST)


def build(settings: Settings) -> FastAPI:
    """The ingress app wired to real Postgres and Redis, from settings; errors reported to
    Sentry when ``SENTRY_DSN`` is set."""
    sentry.init(settings, component="ingress")
    # Opened and closed by the app's lifespan, on the server's loop.
    db = Database(settings.database_url, min_size=1, max_size=settings.db_pool_max, name="ingress")
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
    # The guard is read within a request's transaction: as many connections as the Postgres pool.
    guard_redis = async_redis(settings, connections=settings.db_pool_max)
    queue_metrics.install(client, http_metrics.QUEUES)
    deps = IngressDeps(
        settings=settings,
        db=db,
        publisher=Publisher(build_broker(settings.redis_url, client=client)),
        redis=client,
        verifier=TokenVerifier.from_settings(settings),
        admissions=Admissions(guard_redis),
        guard=Guard(guard_redis),
        vault=maybe_vault(settings, client),
        aredis=AsyncRedis.from_pool(
            BlockingConnectionPool.from_url(
                settings.redis_url,
                max_connections=LIVE_REDIS_CONNECTIONS,  # one reader serves every stream
                timeout=5,
                socket_connect_timeout=2,
                socket_timeout=30,  # far above the reader's blocking read
            )
        ),
    )
    return create_app(deps)


def from_env() -> FastAPI:
    """uvicorn's factory: settings from the environment, logging configured."""
    from runtime import logs

    settings = Settings()
    logs.configure(settings)
    return build(settings)
