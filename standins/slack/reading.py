"""``conversations.list``, ``conversations.history`` and ``conversations.replies``.

History is newest first and holds top-level messages (and replies broadcast to the
channel); a thread's replies come from ``conversations.replies``, parent first, then
oldest to newest. Cursors name the next item (``next_ts:`` a message ts, ``team:`` a
channel id), so a page boundary survives messages posted between two page requests.
Message ``metadata`` appears only with ``include_all_metadata``.
"""

from __future__ import annotations

from typing import Any

from standins.slack.errors import SlackError
from standins.slack.ids import parse_ts
from standins.slack.methods import Call
from standins.slack.paging import (
    bound,
    decode_cursor,
    encode_cursor,
    flag,
    in_range,
    limit,
    next_ts_cursor,
    ts_cursor,
)
from standins.slack.workspace import Channel, Message

_LIST_SCOPES = {
    "public_channel": "channels:read",
    "private_channel": "groups:read",
    "mpim": "mpim:read",
    "im": "im:read",
}


def _types(value: Any) -> list[str]:
    if value is None or value == "":
        return ["public_channel"]
    if not isinstance(value, str):
        raise SlackError("invalid_types")
    types = [t.strip() for t in value.split(",") if t.strip()]
    if not types or any(t not in _LIST_SCOPES for t in types):
        raise SlackError("invalid_types")
    return types


def _visible(channel: Channel, types: list[str], exclude_archived: bool) -> bool:
    kind = "private_channel" if channel.is_private else "public_channel"
    if kind not in types or (exclude_archived and channel.is_archived):
        return False
    return channel.is_member or not channel.is_private  # a bot sees only its private ones


def conversations_list(call: Call) -> dict[str, Any]:
    types = _types(call.args.get("types"))
    for kind in types:
        call.require(_LIST_SCOPES[kind])
    count = limit(call.args.get("limit"), default=100, maximum=1000, error="invalid_limit")
    exclude = flag(call.args.get("exclude_archived"))
    channels = [c for c in call.team.channels.values() if _visible(c, types, exclude)]
    start = 0
    position = decode_cursor(call.args.get("cursor"), "team")
    if position is not None:
        ids = [c.id for c in channels]
        if position not in ids:
            raise SlackError("invalid_cursor")
        start = ids.index(position)
    page, rest = channels[start : start + count], channels[start + count :]
    return {
        "channels": [c.view() for c in page],
        "response_metadata": {"next_cursor": encode_cursor("team", rest[0].id) if rest else ""},
    }


def _readable(call: Call) -> Channel:
    """The channel named by id, once the scope and the bot's membership allow reading it."""
    channel = call.team.find(call.text("channel"))
    private = channel is not None and channel.is_private
    call.require("groups:history" if private else "channels:history")
    if channel is None or (channel.is_private and not channel.is_member):
        raise SlackError("channel_not_found")
    if not channel.is_member:
        raise SlackError("not_in_channel")
    return channel


def _window(call: Call) -> tuple[int | None, int | None, bool]:
    oldest = bound(call.args.get("oldest"), "invalid_ts_oldest")
    latest = bound(call.args.get("latest"), "invalid_ts_latest")
    return oldest, latest, flag(call.args.get("inclusive"))


def _page(
    channel: Channel, items: list[Message], count: int, metadata: bool
) -> tuple[list[dict[str, Any]], bool, str]:
    page, rest = items[:count], items[count:]
    views = [m.view(metadata=metadata, parent_user=channel.parent_user(m)) for m in page]
    return views, bool(rest), next_ts_cursor(rest[0].ts) if rest else ""


def conversations_history(call: Call) -> dict[str, Any]:
    channel = _readable(call)
    count = limit(call.args.get("limit"), default=100, maximum=999, error="invalid_arguments")
    oldest, latest, inclusive = _window(call)
    start = ts_cursor(call.args.get("cursor"))
    items = [
        m
        for m in reversed(channel.timeline())
        if in_range(m.ts, oldest, latest, inclusive) and (start is None or m.ts <= start)
    ]
    metadata = flag(call.args.get("include_all_metadata"))
    messages, has_more, cursor = _page(channel, items, count, metadata)
    return {
        "messages": messages,
        "has_more": has_more,
        "pin_count": 0,
        "response_metadata": {"next_cursor": cursor},
    }


def conversations_replies(call: Call) -> dict[str, Any]:
    channel = _readable(call)
    ts = parse_ts(call.args.get("ts"))
    if ts is None:
        raise SlackError("thread_not_found")
    parent = channel.thread_of(ts)
    count = limit(call.args.get("limit"), default=1000, maximum=1000, error="invalid_arguments")
    oldest, latest, inclusive = _window(call)
    start = ts_cursor(call.args.get("cursor"))
    replies = [
        channel.messages[r]
        for r in parent.replies
        if in_range(r, oldest, latest, inclusive) and (start is None or r >= start)
    ]
    items = ([parent] if start is None else []) + replies
    metadata = flag(call.args.get("include_all_metadata"))
    messages, has_more, cursor = _page(channel, items, count, metadata)
    return {
        "messages": messages,
        "has_more": has_more,
        "response_metadata": {"next_cursor": cursor},
    }
