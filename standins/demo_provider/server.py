"""The demo provider's app: OAuth 2.0, the task API, discovery, and the test-only routes.

``/_faults``, ``/_stats`` and ``/_requests`` exist for tests and the demo's own checks only;
a real provider has nothing like them, and nothing in System2's workers may depend on them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from standins.demo_provider.errors import ProviderError, error_response, invalid_request
from standins.demo_provider.faults import FaultMiddleware
from standins.demo_provider.journal import JournalMiddleware
from standins.demo_provider.oauth import SCOPES
from standins.demo_provider.oauth_http import OAuthEndpoints
from standins.demo_provider.state import Provider
from standins.demo_provider.tasks_http import TaskEndpoints

MAX_BODY_BYTES = 1 << 20
_HTTP_ERRORS = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


async def _on_provider_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProviderError)
    return error_response(exc)


async def _on_http_error(_: Request, exc: Exception) -> Response:
    """Unknown routes and methods answer in the same JSON error shape as everything else."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_ERRORS.get(exc.status_code, "invalid_request")
    return error_response(ProviderError(exc.status_code, code, exc.detail, exc.headers))


async def _on_disconnect(_: Request, exc: Exception) -> Response:
    """The client left mid-body (often after its own timeout): nobody to answer."""
    return Response(status_code=499)


async def _on_crash(_: Request, exc: Exception) -> Response:
    return error_response(ProviderError(500, "server_error", "internal error"))


def _test_routes(provider: Provider) -> list[Route]:
    async def add_fault(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise invalid_request("the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise invalid_request("the body must be a JSON object")
        with provider.lock:
            rule = provider.faults.add(body)
            return JSONResponse(rule.view(), 201)

    async def list_faults(_: Request) -> Response:
        with provider.lock:
            return JSONResponse({"faults": [rule.view() for rule in provider.faults.rules]})

    async def clear_faults(_: Request) -> Response:
        with provider.lock:
            provider.faults.clear()
        return Response(status_code=204)

    async def stats(_: Request) -> Response:
        return JSONResponse(provider.stats(), headers={"Cache-Control": "no-store"})

    async def list_requests(request: Request) -> Response:
        account = request.query_params.get("account")
        with provider.lock:
            found = provider.journal.view(account)
        return JSONResponse({"requests": found}, headers={"Cache-Control": "no-store"})

    async def clear_requests(_: Request) -> Response:
        with provider.lock:
            provider.journal.clear()
        return Response(status_code=204)

    return [
        Route("/_faults", add_fault, methods=["POST"]),
        Route("/_faults", list_faults, methods=["GET"]),
        Route("/_faults", clear_faults, methods=["DELETE"]),
        Route("/_stats", stats, methods=["GET"]),
        Route("/_requests", list_requests, methods=["GET"]),
        Route("/_requests", clear_requests, methods=["DELETE"]),
    ]


async def _metadata(request: Request) -> Response:
    """RFC 8414 authorization server metadata, so a client can discover the endpoints."""
    base = str(request.base_url).rstrip("/")
    return JSONResponse(
        {
            "issuer": base,
            "authorization_endpoint": f"{base}/oauth/authorize",
            "token_endpoint": f"{base}/oauth/token",
            "revocation_endpoint": f"{base}/oauth/revoke",
            "scopes_supported": sorted(SCOPES),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "code_challenge_methods_supported": ["S256", "plain"],
        }
    )


async def _root(_: Request) -> Response:
    """A cheap liveness answer (``system2.procs.wait_http`` polls ``/``)."""
    return JSONResponse({"service": "demo-provider", "ok": True})


def create_app(
    *,
    client_id: str = "system2-demo",
    client_secret: str = "demo-secret",  # noqa: S107 - the demo client's published secret
    access_ttl_s: float = 60.0,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """A fresh provider with one registered client; its state is ``app.state.provider``."""
    provider = Provider(
        client_id=client_id, client_secret=client_secret, access_ttl_s=access_ttl_s, clock=clock
    )
    app = Starlette(
        routes=[
            Route("/", _root, methods=["GET"]),
            Route("/.well-known/oauth-authorization-server", _metadata, methods=["GET"]),
            *OAuthEndpoints(provider).routes(),
            *TaskEndpoints(provider).routes(),
            *_test_routes(provider),
        ],
        middleware=[
            Middleware(JournalMiddleware, record=provider.record_request),
            Middleware(FaultMiddleware, take=provider.take_fault, clock=provider.clock),
        ],
        exception_handlers={
            ProviderError: _on_provider_error,
            HTTPException: _on_http_error,
            ClientDisconnect: _on_disconnect,
            500: _on_crash,
        },
        max_body_size=MAX_BODY_BYTES,
    )
    app.state.provider = provider
    return app


def serve(
    host: str,
    port: int,
    *,
    client_id: str = "system2-demo",
    client_secret: str = "demo-secret",  # noqa: S107 - the demo client's published secret
    access_ttl_s: float = 60.0,
) -> None:
    """Runs the demo provider until interrupted (blocking)."""
    app = create_app(client_id=client_id, client_secret=client_secret, access_ttl_s=access_ttl_s)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
