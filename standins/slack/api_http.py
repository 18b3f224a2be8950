"""``/api/<method>``: Slack's Web API over HTTP, as "Web API basics" describes it.

Arguments come from the query string and from the body, either urlencoded or JSON; a
JSON body never carries the token (Slack requires a bearer token with JSON), so a token
there is ignored and the call is ``not_authed``. Otherwise the token is the
``Authorization: Bearer`` header or a ``token`` argument. GET and POST are both accepted.
Every answer is HTTP 200 with ``ok`` except an unknown method (404), and a successful or
refused authenticated call reports the token's scopes in ``x-oauth-scopes``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from standins.slack.edge import TEAM_KEY
from standins.slack.errors import SlackError, slack_json
from standins.slack.methods import Call, Handler, auth_test
from standins.slack.oauth_http import OAuthEndpoints
from standins.slack.posting import chat_get_permalink, chat_post_message
from standins.slack.reading import conversations_history, conversations_list, conversations_replies
from standins.slack.state import Slack

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
METHODS: dict[str, Handler] = {
    "auth.test": auth_test,
    "conversations.list": conversations_list,
    "conversations.history": conversations_history,
    "conversations.replies": conversations_replies,
    "chat.postMessage": chat_post_message,
    "chat.getPermalink": chat_get_permalink,
}


def _form(body: bytes) -> dict[str, Any]:
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise SlackError("invalid_form_data") from None


def _json(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        raise SlackError("invalid_json") from None
    if not isinstance(parsed, dict):
        raise SlackError("json_not_object")
    parsed.pop("token", None)
    return parsed


async def read_args(request: Request) -> dict[str, Any]:
    """The call's arguments: the query string, then the body on top of it."""
    args: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    if not body.strip():
        return args
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if not media:
        raise SlackError("missing_post_type")
    if media == FORM:
        return args | _form(body)
    if media == JSON:
        return args | _json(body)
    raise SlackError("invalid_post_type")


def bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


class WebApi:
    def __init__(self, slack: Slack) -> None:
        self.slack = slack
        self.oauth = OAuthEndpoints(slack)

    def routes(self) -> list[Route]:
        return [
            Route("/api/{method}", self.call, methods=["GET", "POST"]),
            *self.oauth.routes(),
        ]

    async def call(self, request: Request) -> Response:
        name: str = request.path_params["method"]
        if name == "oauth.v2.access":
            return self.oauth.access(request, await read_args(request))
        handler = METHODS.get(name)
        if handler is None:
            return slack_json({"ok": False, "error": "unknown_method", "req_method": name}, 404)
        args = await read_args(request)
        token = bearer(request) or args.get("token")
        slack = self.slack
        with slack.lock:
            grant = slack.oauth.check(token if isinstance(token, str) else None)
            request.scope[TEAM_KEY] = grant.team
            call = Call(grant, slack.directory.get(grant.team), args, slack.clock(), slack.app_id)
            scopes = {"x-oauth-scopes": grant.scope_text}
            try:
                body = handler(call)
            except SlackError as error:
                error.headers.update(scopes)
                raise
        return slack_json({"ok": True, **body}, headers=scopes)
