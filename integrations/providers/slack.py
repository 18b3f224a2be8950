"""Slack: a Slack app's bot token in one workspace, through the Web API.

The Web API answers HTTP 200 with ``{"ok": false, "error": "..."}`` for most refusals, so
the verdict reads the body: ``invalid_auth``, ``token_revoked``, ``token_expired`` and their
kin mean the token is refused (refresh once, then the connection needs reconnecting);
``ratelimited`` (with HTTP 429 and ``Retry-After``) is this workspace's limit. With token
rotation on, access tokens live 12 hours and each refresh (an ``xoxe-`` token) is used once.
Slack takes no idempotency key, so a message we post carries our call's key digest in its
``metadata``, and a retry of a post that may have been performed reads the channel (or the
thread) for it first.

``slack_sdk`` is not used: its async client runs on aiohttp, not on the worker's shared
httpx client and pool, and a tool here is one Web API call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import httpx

from integrations.routes import Route
from integrations.spec import (
    Answer,
    Effect,
    Lookup,
    OAuthSpec,
    Provider,
    ToolOutcome,
    ToolSpec,
    Verdict,
    http_verdict,
    json_object,
)

EVENT_TYPE = "system2_action"
TEXT_MAX = 4_000  # Slack truncates past 40,000; a message Ted writes is short
CLOCK_MARGIN = timedelta(minutes=10)
_REFUSED_TOKEN = frozenset(
    {"not_authed", "invalid_auth", "token_revoked", "token_expired", "account_inactive"}
)
_SLACK_DOWN = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})

_CHANNEL = {
    "type": "string",
    "description": "A public channel's id, e.g. C0123456789 (slack_list_channels gives them).",
    "pattern": "^C[A-Z0-9]{8,20}$",
    "maxLength": 21,
}
_TS = {
    "type": "string",
    "description": "The parent message's ts, e.g. 1712345678.000100.",
    "pattern": r"^\d{9,12}\.\d{6}$",
    "maxLength": 19,
}
_TEXT = {"type": "string", "minLength": 1, "maxLength": TEXT_MAX}


def _verdict(resp: httpx.Response) -> Verdict:
    verdict = http_verdict(resp)
    if verdict is not Verdict.ANSWER or resp.status_code != 200:
        return verdict
    error = json_object(resp).get("error")
    if error in _REFUSED_TOKEN:
        return Verdict.UNAUTHORIZED
    if error == "ratelimited":
        return Verdict.RATE_LIMITED
    if error in _SLACK_DOWN:
        return Verdict.FAILING
    return Verdict.ANSWER


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _mark(body: dict[str, Any], key: str) -> dict[str, Any]:
    return body | {"metadata": {"event_type": EVENT_TYPE, "event_payload": {"key": _digest(key)}}}


def _find_marked(page: Any, key: str) -> Mapping[str, Any] | None:
    digest = _digest(key)
    for message in page.get("messages", []) if isinstance(page, dict) else []:
        meta = message.get("metadata") or {}
        if (
            meta.get("event_type") == EVENT_TYPE
            and (meta.get("event_payload") or {}).get("key") == digest
        ):
            return dict(message)
    return None


def _listing(page: Any) -> bool:
    return isinstance(page, dict) and page.get("ok") is True and "messages" in page


def _cursor(page: Any) -> str | None:
    meta = page.get("response_metadata") if isinstance(page, dict) else None
    cursor = meta.get("next_cursor") if isinstance(meta, dict) else None
    return cursor if isinstance(cursor, str) and cursor else None


def _oldest(started: datetime) -> str:
    return f"{(started - CLOCK_MARGIN).timestamp():.6f}"


def _refused(answer: Answer) -> ToolOutcome | None:
    body = json_object(answer.response)
    if answer.status_code == 200 and body.get("ok") is True:
        return None
    error = body.get("error") or f"HTTP {answer.status_code}"
    needed = f" (needs the {body['needed']} scope)" if body.get("needed") else ""
    return ToolOutcome(f"Slack refused: {error}{needed}", is_error=True)


def _render_channels(answer: Answer, _: Mapping[str, Any]) -> ToolOutcome:
    if problem := _refused(answer):
        return problem
    body = answer.json()
    lines = [
        f"#{c.get('name')} {c.get('id')}{'' if c.get('is_member') else ' (Ted is not a member)'}"
        for c in body.get("channels", [])
    ]
    cursor = (body.get("response_metadata") or {}).get("next_cursor")
    more = f"\nmore channels: call again with cursor={cursor}" if cursor else ""
    return ToolOutcome(("\n".join(lines) or "no channels") + more)


def _render_messages(answer: Answer, _: Mapping[str, Any]) -> ToolOutcome:
    if problem := _refused(answer):
        return problem
    lines = []
    for m in reversed(answer.json().get("messages", [])):  # oldest first, as one reads
        who = m.get("user") or m.get("bot_id") or "someone"
        replies = f" [{m['reply_count']} replies]" if m.get("reply_count") else ""
        lines.append(f"{m.get('ts')} {who}: {m.get('text', '')}{replies}")
    return ToolOutcome("\n".join(lines) or "no messages")


def _posted(message: Mapping[str, Any], inp: Mapping[str, Any]) -> ToolOutcome:
    ts = message.get("ts")
    where = (
        f"thread {inp['thread_ts']} of {inp['channel']}" if "thread_ts" in inp else inp["channel"]
    )
    return ToolOutcome(
        f"posted message {ts} in {where}",
        action="slack.message.replied" if "thread_ts" in inp else "slack.message.posted",
        target=f"slack:{inp['channel']}:{ts}",
        data={"channel": inp["channel"], "ts": ts, "chars": len(inp["text"])},
    )


def _render_posted(answer: Answer, inp: Mapping[str, Any]) -> ToolOutcome:
    if problem := _refused(answer):
        return problem
    body = answer.json()
    return _posted(body.get("message") or {"ts": body.get("ts")}, inp)


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


TOOLS = (
    ToolSpec(
        "slack_list_channels",
        "List the workspace's public channels, with their ids.",
        _object({"cursor": {"type": "string", "maxLength": 500}}, []),
        Route(
            "GET",
            "/conversations.list",
            query=("cursor",),
            fixed_query={"types": "public_channel", "exclude_archived": "true", "limit": "200"},
        ),
        _render_channels,
    ),
    ToolSpec(
        "slack_read_messages",
        "Read the most recent messages of a Slack channel.",
        _object(
            {"channel": _CHANNEL, "limit": {"type": "integer", "minimum": 1, "maximum": 100}},
            ["channel"],
        ),
        Route("GET", "/conversations.history", query=("channel", "limit")),
        _render_messages,
    ),
    ToolSpec(
        "slack_post_message",
        "Post a message in a Slack channel.",
        _object({"channel": _CHANNEL, "text": _TEXT}, ["channel", "text"]),
        Route("POST", "/chat.postMessage", body=("channel", "text")),
        _render_posted,
        mutates=True,
        action="slack.message.posted",
        effect=Effect(
            mark=_mark,
            lookup=Lookup(
                "/conversations.history",
                lambda inp, started: {
                    "channel": inp["channel"],
                    "oldest": _oldest(started),
                    "limit": "200",
                    "include_all_metadata": "true",
                },
                _find_marked,
                answered=_listing,
                pages=10,
                cursor=_cursor,
            ),
            made=_posted,
        ),
    ),
    ToolSpec(
        "slack_reply_in_thread",
        "Reply in the thread of a message in a Slack channel.",
        _object(
            {"channel": _CHANNEL, "thread_ts": _TS, "text": _TEXT}, ["channel", "thread_ts", "text"]
        ),
        Route("POST", "/chat.postMessage", body=("channel", "thread_ts", "text")),
        _render_posted,
        mutates=True,
        action="slack.message.replied",
        effect=Effect(
            mark=_mark,
            lookup=Lookup(
                "/conversations.replies",
                lambda inp, started: {
                    "channel": inp["channel"],
                    "ts": inp["thread_ts"],
                    "oldest": _oldest(started),
                    "limit": "200",
                    "include_all_metadata": "true",
                },
                _find_marked,
                answered=_listing,
                pages=10,
                cursor=_cursor,
            ),
            made=_posted,
        ),
    ),
)


def _team(reply: Mapping[str, Any]) -> str | None:
    team = reply.get("team")
    if not isinstance(team, dict):
        return None
    return str(team.get("name") or team.get("id") or "") or None


PROVIDER = Provider(
    name="slack",
    title="Slack",
    api_url="https://slack.com/api",
    oauth_url="https://slack.com",
    client_id="system2-slack",
    client_secret="slack-secret",  # noqa: S106 - the stand-in's, public in this repository
    oauth=OAuthSpec(
        authorize_path="/oauth/v2/authorize",
        token_path="/api/oauth.v2.access",  # noqa: S106 - a URL path
        scopes=("channels:read", "channels:history", "chat:write"),
        scope_separator=",",
        pkce=False,  # oauth.v2.access authenticates our app by its client secret
        client_auth="basic",
        refused_refresh=("invalid_refresh_token", "invalid_grant"),
        account=_team,
    ),
    headers={"User-Agent": "system2-ted"},
    verdict=_verdict,
    tools=TOOLS,
)
