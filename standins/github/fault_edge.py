"""Applies the fault rules (``faults.py``) to live requests: a pure ASGI middleware.

The request body is read in full before any delay, so a held request survives its client
hanging up and is then performed all the same. An ``after`` rule runs the app with its reply
captured and thrown away, then answers the fault. Injected replies carry what GitHub's would:
the error body, ``x-github-request-id``, and the user's rate-limit headers when the token is
known (spent ones for a primary limit, ``retry-after`` for a secondary one).
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Callable
from http import HTTPStatus

from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from standins.github.errors import DOCS, RATE_DOCS, ApiError, error_response
from standins.github.faults import FaultRule
from standins.github.ratelimit import ANONYMOUS_LIMIT, Quota
from standins.github.users import user_id

SECONDARY = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
    "again. If you reach out to GitHub Support for help, please include the request ID {}."
)
GATEWAY_TIMEOUT = (
    "We couldn't respond to your request in time. Sorry about that. Please try resubmitting "
    "your request and contact us if the problem persists."
)
_MESSAGES = {
    401: "Bad credentials",
    403: "Resource not accessible by integration",
    404: "Not Found",
    422: "Validation Failed",
    500: "Server Error",
    502: "Server Error",
    503: "Service Unavailable",
    504: GATEWAY_TIMEOUT,
}

Take = Callable[[str, str, Scope], tuple[FaultRule | None, str | None]]
Peek = Callable[[str | None, str], Quota | None]


async def _buffered(receive: Receive) -> Receive:
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay


def request_id(scope: Scope) -> str:
    """The id GitHub names in its messages; one per request, kept in the scope."""
    found: str = scope.setdefault("github.request_id", _new_request_id())
    return found


def _new_request_id() -> str:
    parts = [secrets.token_hex(n).upper() for n in (2, 2, 4, 4, 4)]
    return ":".join(parts)


def _error(
    rule: FaultRule, quota: Quota | None, login: str | None, rid: str, now: float
) -> ApiError:
    """The refusal a rule stands for, with the headers GitHub would send along."""
    status = rule.status or 500
    headers = {"x-github-request-id": rid, **(quota.headers() if quota else {})}
    if rule.kind == "primary_rate_limit":
        reset = math.ceil(now + rule.reset_s)
        headers |= (quota or Quota(ANONYMOUS_LIMIT, 0, reset, "core")).spent(reset).headers()
        who = f"user ID {user_id(login)}" if login else "this address"
        doc = RATE_DOCS + "#about-the-primary-rate-limit"
        return ApiError(status, f"API rate limit exceeded for {who}.", doc=doc, headers=headers)
    if rule.kind == "secondary_rate_limit":
        headers["retry-after"] = str(60 if rule.retry_after_s is None else rule.retry_after_s)
        doc = RATE_DOCS + "#about-secondary-rate-limits"
        return ApiError(status, SECONDARY.format(rid), doc=doc, headers=headers)
    if rule.retry_after_s is not None:
        headers["retry-after"] = str(rule.retry_after_s)
    return ApiError(status, _MESSAGES.get(status, "Server Error"), doc=DOCS, headers=headers)


def injected(
    rule: FaultRule, quota: Quota | None, login: str | None, rid: str, now: float
) -> Response:
    """The reply of a rule that answers: GitHub's JSON error, or a proxy's HTML page."""
    error = _error(rule, quota, login, rid, now)
    if not rule.html:
        return error_response(error)
    title = f"{error.status} {HTTPStatus(error.status).phrase}"
    page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
    return HTMLResponse(page, error.status, error.headers)


class _Capture:
    """Collects a reply instead of sending it, to send later or never."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def send(self, message: Message) -> None:
        self.messages.append(message)

    async def replay(self, send: Send) -> None:
        for message in self.messages:
            await send(message)


class FaultMiddleware:
    def __init__(self, app: ASGIApp, *, take: Take, peek: Peek, clock: Callable[[], float]) -> None:
        self.app = app
        self.take = take
        self.peek = peek
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith("/_"):
            await self.app(scope, receive, send)
            return
        rule, login = self.take(scope["method"], path, scope)
        if rule is None:
            await self.app(scope, receive, send)
            return
        receive = await _buffered(receive)
        if rule.after:
            capture = _Capture()
            await self.app(scope, receive, capture.send)
            await asyncio.sleep(rule.delay_s)
            if not rule.answers:
                await capture.replay(send)
                return
        else:
            await asyncio.sleep(rule.delay_s)
            if not rule.answers:
                await self.app(scope, receive, send)
                return
        reply = injected(rule, self.peek(login, path), login, request_id(scope), self.clock())
        await reply(scope, receive, send)
