"""ASGI middleware of the ingress (pure ASGI: Starlette's BaseHTTPMiddleware costs a task
and a stream copy per request)."""

from __future__ import annotations

import re
from uuid import uuid4

import structlog
from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingress import problems
from ingress.auth import TokenVerifier
from ingress.errors import IngressError
from runtime import logs

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContext:
    """Binds the request id to every log line of the request (and to the Sentry scope as a
    tag) and echoes it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SAFE_ID.match(given) else uuid4().hex
        structlog.contextvars.clear_contextvars()
        logs.bind(request_id=request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_id)


AUTHENTICATED_PREFIX = "/v1/"  # every route under it takes a bearer token, except:
# a provider's redirect back (GET only): the signed, single-use state is the credential
BROWSER_ROUTE = re.compile(r"/v1/oauth/[a-z][a-z0-9_]{0,40}/callback")
CALLER_STATE = "caller"  # where BearerAuth leaves the verified caller (``request.state``)


class BearerAuth:
    """Verifies the bearer token of every ``/v1`` request before anything reads its body:
    FastAPI reads and parses a body before it runs a route's dependencies, so a check there
    would come after an unauthenticated client has made us read (and parse) what it sent.
    A missing or invalid token is a 401 here (a 503 while the signing keys cannot be
    fetched), with the body unread; a valid one is left in
    ``request.state.caller`` for the route (whose membership check still follows)."""

    def __init__(self, app: ASGIApp, verifier: TokenVerifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        browser = scope.get("method") == "GET" and BROWSER_ROUTE.fullmatch(path) is not None
        if not path.startswith(AUTHENTICATED_PREFIX) or browser:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            caller = await self.verifier.verify(headers.get("authorization"))
        except HTTPException as exc:
            answer = dict(exc.headers or {})
            if _has_body(headers):
                answer["Connection"] = "close"  # don't drain the body we won't read
            exc.headers = answer
            response = problems.from_http_exception(exc)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[CALLER_STATE] = caller
        await self.app(scope, receive, send)


class BodyTooLarge(IngressError):
    """Raised to the app when the request body it reads passes the bound."""


class BodyLimit:
    """Refuses a request body larger than ``max_bytes`` with 413: at once when its
    Content-Length says so (nothing is read), else as it streams in (chunked bodies are
    counted too) — the app's next read raises, and whatever it answers is replaced by the
    413. The answer is JSON: ``{"detail", "reason": "body_too_large", "max_body_bytes"}``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.strip().isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        body = _CountedBody(receive, send, self.max_bytes)
        try:
            await self.app(scope, body.receive, body.send)
        except Exception:
            if not body.refusable:
                raise
        if body.refusable:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problems.answer(
            413,
            "body_too_large",
            f"the request body is larger than {self.max_bytes} bytes",
            headers={"Connection": "close"},
            reason="body_too_large",
            max_body_bytes=self.max_bytes,
        )
        await response(scope, receive, send)


class _CountedBody:
    """``receive`` and ``send`` of one request, counting the body's bytes as they come."""

    def __init__(self, receive: Receive, send: Send, max_bytes: int) -> None:
        self._receive = receive
        self._send = send
        self.max_bytes = max_bytes
        self.received = 0
        self.over = False
        self.started = False

    @property
    def refusable(self) -> bool:
        """Too large, and nothing of an answer sent yet: the 413 can still be the answer."""
        return self.over and not self.started

    async def receive(self) -> Message:
        if self.over:
            raise BodyTooLarge
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.max_bytes:
                self.over = True
                raise BodyTooLarge
        return message

    async def send(self, message: Message) -> None:
        if self.refusable:
            return  # the app's answer to the cut body (FastAPI's 400): the 413 replaces it
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def _has_body(headers: Headers) -> bool:
    return headers.get("content-length", "0").strip() not in ("", "0") or (
        "transfer-encoding" in headers
    )
