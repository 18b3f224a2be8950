"""The GitHub stand-in's app: github.com's OAuth endpoints and api.github.com's REST API on
one loopback server (API paths at the root, OAuth under ``/login/oauth``), plus the
test-only routes under ``/_``.

Middleware, outermost first: the journal (sees every status the client got), the faults
(act before anything else), the API gate (version, token, rate limit, GitHub's headers),
the body limit (1 MiB, answered in the API's JSON shape).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from standins.github.body_limit import BodyLimitMiddleware
from standins.github.errors import ApiError, error_response, not_found
from standins.github.fault_edge import FaultMiddleware
from standins.github.gate import ApiGate
from standins.github.issues_http import IssueEndpoints
from standins.github.journal import JournalMiddleware
from standins.github.oauth_http import OAuthEndpoints
from standins.github.search_http import SearchEndpoints
from standins.github.state import GitHub
from standins.github.testing_http import TestEndpoints

CLIENT_ID = "system2-github"
CLIENT_SECRET = "github-secret"  # noqa: S105 - the stand-in's published test secret
ACCESS_TTL_S = 28800.0
REFRESH_TTL_S = 15897600.0


async def _on_api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _on_http_error(_: Request, exc: Exception) -> Response:
    """Unknown routes and methods outside the API gate: GitHub's 404, never a 405."""
    assert isinstance(exc, HTTPException)
    if exc.status_code in (404, 405):
        return error_response(not_found())
    return error_response(ApiError(exc.status_code, str(exc.detail)))


async def _on_disconnect(_: Request, exc: Exception) -> Response:
    """The client left mid-body (often after its own timeout): nobody to answer."""
    return Response(status_code=499)


async def _on_crash(_: Request, exc: Exception) -> Response:
    return error_response(ApiError(500, "Server Error"))


async def _root(_: Request) -> Response:
    """Liveness (``system2.procs.wait_http`` polls ``/``)."""
    return JSONResponse({"service": "github-standin", "ok": True})


def create_app(
    *,
    client_id: str = CLIENT_ID,
    client_secret: str = CLIENT_SECRET,
    access_ttl_s: float = ACCESS_TTL_S,
    refresh_ttl_s: float = REFRESH_TTL_S,
    rate_limit: int = 5000,
    search_rate_limit: int = 30,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """A fresh stand-in with one registered GitHub App; its state is ``app.state.github``."""
    github = GitHub(
        client_id=client_id,
        client_secret=client_secret,
        access_ttl_s=access_ttl_s,
        refresh_ttl_s=refresh_ttl_s,
        rate_limit=rate_limit,
        search_rate_limit=search_rate_limit,
        clock=clock,
    )
    api = [*IssueEndpoints(github).routes(), *SearchEndpoints(github).routes()]
    app = Starlette(
        routes=[
            Route("/", _root, methods=["GET"]),
            *OAuthEndpoints(github).routes(),
            *api,
            *TestEndpoints(github).routes(),
        ],
        middleware=[
            Middleware(JournalMiddleware, record=github.record),
            Middleware(FaultMiddleware, take=github.take_fault, peek=github.peek, clock=clock),
            Middleware(ApiGate, github=github, routes=api),
            Middleware(BodyLimitMiddleware),
        ],
        exception_handlers={
            ApiError: _on_api_error,
            HTTPException: _on_http_error,
            ClientDisconnect: _on_disconnect,
            500: _on_crash,
        },
    )
    app.state.github = github
    return app


def serve(
    host: str,
    port: int,
    *,
    client_id: str = CLIENT_ID,
    client_secret: str = CLIENT_SECRET,
    access_ttl_s: float = ACCESS_TTL_S,
    refresh_ttl_s: float = REFRESH_TTL_S,
    rate_limit: int = 5000,
    search_rate_limit: int = 30,
    clock: Callable[[], float] = time.time,
) -> None:
    """Runs the stand-in until interrupted (blocking)."""
    app = create_app(
        client_id=client_id,
        client_secret=client_secret,
        access_ttl_s=access_ttl_s,
        refresh_ttl_s=refresh_ttl_s,
        rate_limit=rate_limit,
        search_rate_limit=search_rate_limit,
        clock=clock,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
