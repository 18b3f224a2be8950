"""The test-only routes under ``/_``: never faulted, never authenticated, never real Slack.

``/_channels`` and ``/_messages`` seed workspaces, doing what people would do in Slack's
own client. ``POST /_channels {"team", "name", "member"?, "private"?, "archived"?}``
answers the conversation object: 201 for a new channel (the bot is not a member unless
``member`` is true), 200 for an existing one, whose given flags it updates (so
``{"name": "general", "member": true}`` invites the bot to ``general``). ``POST /_messages
{"team", "channel", "text", "user"?, "thread_ts"?, "metadata"?, "reply_broadcast"?}``
posts as a person (the installer unless ``user`` is given) and answers like
``chat.postMessage``. A workspace named here is created if it is new; ``team`` defaults
to ``T0000DEMO``. ``/_revoke`` uninstalls the app from a workspace; ``/_faults`` switches
injected trouble; ``/_state``, ``/_stats`` and ``/_requests`` let a test see what
happened. Nothing in System2's workers may depend on them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from standins.slack.errors import SlackError, bad_request
from standins.slack.ids import parse_ts, ts_text
from standins.slack.oauth_http import TEAM_ID
from standins.slack.posting import parse_metadata
from standins.slack.state import Slack
from standins.slack.workspace import DEFAULT_TEAM, Channel, Message, Team

CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,79}")
_NO_STORE = {"Cache-Control": "no-store"}


async def _object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise bad_request("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


def _string(body: dict[str, Any], name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or not value:
        raise bad_request(f"{name} must be a non-empty string")
    return value


def _flag(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false")
    return value


def _team(slack: Slack, body: dict[str, Any]) -> Team:
    team_id = _string(body, "team", DEFAULT_TEAM)
    if not TEAM_ID.fullmatch(team_id):
        raise bad_request("team must be a workspace id such as T0000DEMO")
    return slack.directory.ensure(team_id, slack.clock())


def _seed_channel(slack: Slack, body: dict[str, Any]) -> tuple[Channel, bool]:
    """Creates ``name`` (or updates an existing one's flags); True when it is new."""
    name = _string(body, "name").removeprefix("#")
    if not CHANNEL_NAME.fullmatch(name):
        raise bad_request("name must be 1-80 of a-z, 0-9, - and _")
    member, private, archived = (
        _flag(body, "member"),
        _flag(body, "private"),
        _flag(body, "archived"),
    )
    team = _team(slack, body)
    channel = team.find(name, by_name=True)
    created = channel is None
    if channel is None:
        channel = team.add_channel(name, slack.clock(), is_private=bool(private))
    elif private is not None:
        channel.is_private = private
    if member is not None:
        channel.is_member = member
    if archived is not None:
        channel.is_archived = archived
    return channel, created


def _seed_message(slack: Slack, body: dict[str, Any]) -> dict[str, Any]:
    team = _team(slack, body)
    channel = team.find(_string(body, "channel"), by_name=True)
    if channel is None:
        raise bad_request("no such channel in that team")
    parent = None
    if body.get("thread_ts") is not None:
        ts = parse_ts(body["thread_ts"])
        parent = channel.thread_of(ts) if ts is not None else None
        if parent is None:
            raise bad_request("thread_ts names no message of that channel")
    metadata = parse_metadata(body.get("metadata"))
    user = _string(body, "user", team.installer_id)
    message = Message(channel.next_ts(slack.clock()), _string(body, "text"), user, team.id)
    message.metadata, message.broadcast = metadata, bool(_flag(body, "reply_broadcast"))
    channel.post(message, parent)
    view = message.view(metadata=True, parent_user=channel.parent_user(message))
    return {"channel": channel.id, "ts": ts_text(message.ts), "message": view}


def control_routes(slack: Slack) -> list[Route]:
    async def add_fault(request: Request) -> Response:
        body = await _object(request)
        with slack.lock:
            return JSONResponse(slack.faults.add(body).view(), 201)

    async def list_faults(_: Request) -> Response:
        with slack.lock:
            return JSONResponse({"faults": [rule.view() for rule in slack.faults.rules]})

    async def clear_faults(_: Request) -> Response:
        with slack.lock:
            slack.faults.clear()
        return Response(status_code=204)

    async def add_channel(request: Request) -> Response:
        body = await _object(request)
        with slack.lock:
            channel, created = _seed_channel(slack, body)
            return JSONResponse(channel.view(), 201 if created else 200)

    async def add_message(request: Request) -> Response:
        body = await _object(request)
        try:
            with slack.lock:
                return JSONResponse({"ok": True, **_seed_message(slack, body)}, 201)
        except SlackError as error:
            raise bad_request(error.error) from None

    async def revoke(request: Request) -> Response:
        team = _string(await _object(request), "team")
        with slack.lock:
            revoked = slack.oauth.revoke_team(team)
        return JSONResponse({"ok": True, "team": team, "revoked": revoked})

    async def state(_: Request) -> Response:
        return JSONResponse(slack.snapshot(), headers=_NO_STORE)

    async def stats(_: Request) -> Response:
        return JSONResponse(slack.stats(), headers=_NO_STORE)

    async def list_requests(request: Request) -> Response:
        team = request.query_params.get("team")
        with slack.lock:
            found = slack.journal.view(team)
        return JSONResponse({"requests": found}, headers=_NO_STORE)

    async def clear_requests(_: Request) -> Response:
        with slack.lock:
            slack.journal.clear()
        return Response(status_code=204)

    return [
        Route("/_faults", add_fault, methods=["POST"]),
        Route("/_faults", list_faults, methods=["GET"]),
        Route("/_faults", clear_faults, methods=["DELETE"]),
        Route("/_channels", add_channel, methods=["POST"]),
        Route("/_messages", add_message, methods=["POST"]),
        Route("/_revoke", revoke, methods=["POST"]),
        Route("/_state", state, methods=["GET"]),
        Route("/_stats", stats, methods=["GET"]),
        Route("/_requests", list_requests, methods=["GET"]),
        Route("/_requests", clear_requests, methods=["DELETE"]),
    ]
