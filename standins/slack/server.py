"""The Slack stand-in's app: slack.com's install page and Web API on one loopback server.

Point a client's Slack base URL (``https://slack.com``) at it: ``/oauth/v2/authorize`` is
the browser step and ``/api/<method>`` the Web API, as on slack.com. The routes under
``/_`` exist for tests and the demo only.
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

from standins.slack.api_http import WebApi
from standins.slack.controls import control_routes
from standins.slack.edge import MAX_BODY_BYTES, Edge
from standins.slack.errors import SlackError, error_response, slack_json
from standins.slack.state import Slack

CLIENT_ID = "system2-slack"
CLIENT_SECRET = "slack-secret"  # noqa: S105 - the demo app's published secret
ACCESS_TTL_S = 43_200.0  # Slack's rotating tokens live 12 hours


async def _on_slack_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, SlackError)
    return error_response(exc)


async def _on_http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request")
    return slack_json({"ok": False, "error": code}, exc.status_code, exc.headers)


async def _on_disconnect(_: Request, exc: Exception) -> Response:
    """The client left mid-body: nobody to answer."""
    return Response(status_code=499)


async def _on_crash(_: Request, exc: Exception) -> Response:
    return slack_json({"ok": False, "error": "internal_error"}, 500)


async def _root(_: Request) -> Response:
    """A cheap liveness answer (``system2.procs.wait_http`` polls ``/``)."""
    return JSONResponse({"ok": True, "service": "slack-standin"})


def create_app(
    *,
    client_id: str = CLIENT_ID,
    client_secret: str = CLIENT_SECRET,
    access_ttl_s: float = ACCESS_TTL_S,
    rotation: bool = True,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """A fresh stand-in with one registered app; its state is ``app.state.slack``."""
    slack = Slack(
        client_id=client_id,
        client_secret=client_secret,
        access_ttl_s=access_ttl_s,
        rotation=rotation,
        clock=clock,
    )
    app = Starlette(
        routes=[
            Route("/", _root, methods=["GET"]),
            *WebApi(slack).routes(),
            *control_routes(slack),
        ],
        middleware=[Middleware(Edge, admit=slack.admit, record=slack.record)],
        exception_handlers={
            SlackError: _on_slack_error,
            HTTPException: _on_http_error,
            ClientDisconnect: _on_disconnect,
            500: _on_crash,
        },
        max_body_size=MAX_BODY_BYTES,
    )
    app.state.slack = slack
    return app


def serve(
    host: str,
    port: int,
    *,
    client_id: str = CLIENT_ID,
    client_secret: str = CLIENT_SECRET,
    access_ttl_s: float = ACCESS_TTL_S,
    rotation: bool = True,
    clock: Callable[[], float] = time.time,
) -> None:
    """Runs the stand-in until interrupted (blocking)."""
    app = create_app(
        client_id=client_id,
        client_secret=client_secret,
        access_ttl_s=access_ttl_s,
        rotation=rotation,
        clock=clock,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
