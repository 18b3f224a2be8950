"""``chat.postMessage`` and ``chat.getPermalink``, with message metadata.

``metadata`` is ``{"event_type": str, "event_payload": object}``: an object in a JSON
body, a JSON string in a form body. Text that cannot be parsed as a JSON object is
``invalid_metadata_format``; a parsed object without that shape is
``invalid_metadata_schema``. A ``thread_ts`` naming a reply threads under that reply's
parent, as Slack does. ``unfurl_*``, ``mrkdwn``, ``parse``, ``link_names`` and icons are
accepted and ignored.
"""

from __future__ import annotations

import json
from typing import Any

from standins.slack.errors import SlackError
from standins.slack.ids import parse_ts, ts_text
from standins.slack.methods import Call
from standins.slack.paging import flag
from standins.slack.workspace import Channel, Message

MAX_TEXT = 40_000


def parse_metadata(value: Any) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise SlackError("invalid_metadata_format") from None
    if not isinstance(value, dict):
        raise SlackError("invalid_metadata_format")
    event_type, payload = value.get("event_type"), value.get("event_payload")
    if not isinstance(event_type, str) or not event_type or not isinstance(payload, dict):
        raise SlackError("invalid_metadata_schema")
    return {"event_type": event_type, "event_payload": payload}


def _blocks(value: Any) -> list[Any] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise SlackError("invalid_blocks_format") from None
    if not isinstance(value, list):
        raise SlackError("invalid_blocks_format")
    return value


def _target(call: Call) -> Channel:
    """Where to post: by id or name; the bot must be in it unless it has chat:write.public."""
    call.require("chat:write")
    channel = call.team.find(call.text("channel"), by_name=True)
    if channel is None or (channel.is_private and not channel.is_member):
        raise SlackError("channel_not_found")
    if channel.is_archived:
        raise SlackError("is_archived")
    if not channel.is_member and not call.has("chat:write.public"):
        raise SlackError("not_in_channel")
    return channel


def _parent(channel: Channel, value: str | None) -> Message | None:
    if value is None or value == "":
        return None
    ts = parse_ts(value)
    if ts is None:
        raise SlackError("thread_not_found")
    return channel.thread_of(ts)


def chat_post_message(call: Call) -> dict[str, Any]:
    channel = _target(call)
    text = call.text("text") or ""
    blocks = _blocks(call.args.get("blocks"))
    if not text.strip() and blocks is None and not call.args.get("attachments"):
        raise SlackError("no_text")
    if len(text) > MAX_TEXT:
        raise SlackError("msg_too_long")
    metadata = parse_metadata(call.args.get("metadata"))
    parent = _parent(channel, call.text("thread_ts"))
    message = Message(
        channel.next_ts(call.now),
        text,
        call.team.bot_user_id,
        call.team.id,
        bot_id=call.team.bot_id,
        app_id=call.app_id,
        broadcast=parent is not None and flag(call.args.get("reply_broadcast")),
        metadata=metadata,
        blocks=blocks,
    )
    channel.post(message, parent)
    view = message.view(metadata=True, parent_user=channel.parent_user(message))
    return {"channel": channel.id, "ts": ts_text(message.ts), "message": view}


def permalink(channel: Channel, domain: str, message: Message) -> str:
    link = (
        f"https://{domain}.slack.com/archives/{channel.id}/p{ts_text(message.ts).replace('.', '')}"
    )
    if message.parent is not None:
        link += f"?thread_ts={ts_text(message.parent)}&cid={channel.id}"
    return link


def chat_get_permalink(call: Call) -> dict[str, Any]:
    channel = call.team.find(call.text("channel"))
    if channel is None or (channel.is_private and not channel.is_member):
        raise SlackError("channel_not_found")
    ts = parse_ts(call.args.get("message_ts"))
    message = channel.messages.get(ts) if ts is not None else None
    if message is None:
        raise SlackError("message_not_found")
    return {"channel": channel.id, "permalink": permalink(channel, call.team.domain, message)}
