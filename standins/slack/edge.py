"""The edge every Web API call passes: fault injection, then the journal.

Pure ASGI, wrapped around the app. It reads a call's whole body first, so that it can tell
whose token the call carries (a bearer header, or ``token``, ``refresh_token`` or ``code``
in the query or form) for rules narrowed to some ``teams``, and so that a held call
survives its client hanging up. It then holds, answers instead of, or answers after the
app as the matching fault rule says, and records what went out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from standins.slack.errors import html_page, slack_json
from standins.slack.faults import FaultRule

API_PREFIX = "/api/"
TEAM_KEY = "slack.team"
"""Set in the ASGI scope by a handler once it knows the caller's workspace."""
MAX_BODY_BYTES = 1 << 20
_CREDENTIALS = ("token", "refresh_token", "code")

Admit = Callable[[str, list[str]], tuple[str | None, FaultRule | None]]
Record = Callable[[str, str | None, int, bytes, FaultRule | None], None]


class _TooLarge(Exception):
    pass


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body, or ``None`` when the client left before sending it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def credentials(scope: Scope, body: bytes) -> list[str]:
    """Every credential a call carries, most authoritative first (never logged or kept)."""
    found: list[str] = []
    headers = dict(scope.get("headers", []))
    form_type = b"application/x-www-form-urlencoded"
    scheme, _, value = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        found.append(value.strip())
    pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
    if headers.get(b"content-type", b"").startswith(form_type):
        pairs += parse_qsl(body.decode("utf-8", "replace"))
    found += [v for k, v in pairs if k in _CREDENTIALS and v]
    return found


@dataclass(slots=True)
class _Seen:
    """Forwards the answer and keeps its status and (JSON) body for the journal."""

    send: Send | None
    status: int = 0
    body: list[bytes] = field(default_factory=list)

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.body.append(message.get("body", b""))
        if self.send is not None:
            await self.send(message)


def fault_response(rule: FaultRule) -> Response:
    headers = {} if rule.retry_after_s is None else {"Retry-After": str(rule.retry_after_s)}
    status = rule.status or 200
    if rule.html:
        return html_page(status, f"{status} {rule.code}", "injected fault", headers)
    return slack_json({"ok": False, "error": rule.code}, status, headers)


class Edge:
    def __init__(self, app: ASGIApp, *, admit: Admit, record: Record) -> None:
        self.app = app
        self.admit = admit
        self.record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        try:
            body = await _read_body(receive)
        except _TooLarge:
            await slack_json({"ok": False, "error": "request_too_large"}, 413)(scope, receive, send)
            return
        if body is None:
            return  # nobody left to answer
        method = path.removeprefix(API_PREFIX)
        team, rule = self.admit(method, credentials(scope, body))
        seen = _Seen(send)
        await self._answer(scope, _replay(body, receive), seen, rule)
        self.record(method, scope.get(TEAM_KEY) or team, seen.status, b"".join(seen.body), rule)

    async def _answer(
        self, scope: Scope, receive: Receive, seen: _Seen, rule: FaultRule | None
    ) -> None:
        if rule is not None and rule.delay_s > 0:
            await asyncio.sleep(rule.delay_s)
        if rule is None or not rule.answers:
            await self.app(scope, receive, seen)
            return
        if rule.after:
            await self.app(scope, receive, _Seen(None))
        await fault_response(rule)(scope, receive, seen)


def outcome(body: bytes) -> tuple[bool | None, str | None]:
    """``ok`` and ``error`` of a JSON answer; ``(None, None)`` for anything else."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    ok, error = parsed.get("ok"), parsed.get("error")
    return (ok if isinstance(ok, bool) else None), (error if isinstance(error, str) else None)
