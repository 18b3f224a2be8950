"""A Messages API stream read into the reply's JSON, as the API reference describes it.

The SDK's own stream helper builds a typed model for every event and re-parses a tool's
whole input on each of its deltas; a step needs only the reply's JSON (the transcript stores
it as it is) and how far the call got, so the events are read here as JSON into plain dicts:
about a tenth of the CPU. The request, its headers, authentication and the HTTP errors
before the stream stay the SDK's (``workers.claude``).

Events (https://docs.anthropic.com/en/api/messages-streaming): ``message_start`` carries the
message with the prompt's usage; ``content_block_start``/``_delta``/``_stop`` build each
block (text, a tool's input as JSON fragments, thinking and its signature, citations);
``message_delta`` carries the stop reason and cumulative usage; ``message_stop`` ends it;
``ping`` is nothing; ``error`` is the API's error, sent after the stream began.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from workers.errors import WorkerError


class StreamError(WorkerError):
    """The API's ``error`` event: its body (``{"type": "error", "error": {...}}``)."""

    def __init__(self, body: Any) -> None:
        super().__init__(str(body))
        self.body = body


async def server_sent_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """(event, data) of each server-sent event in ``lines`` (the HTML standard's rules:
    ``data`` lines joined by newlines, comments skipped, a blank line dispatches)."""
    event = ""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield event or "message", "\n".join(data)


@dataclass
class ReplyBuilder:
    """The message as its events build it, with how far the stream got."""

    message: dict[str, Any] = field(default_factory=dict)
    input_usage: dict[str, Any] | None = None  # the prompt's, from message_start
    output_tokens: int | None = None  # cumulative, from message_delta
    stopped: bool = False
    _tool_json: dict[int, list[str]] = field(default_factory=dict)

    def feed(self, event: str, data: str) -> None:
        """Take one event; an ``error`` event raises ``StreamError``, and anything else that
        does not fit the reference (bad JSON, a block out of order) raises ``ValueError``."""
        if event == "ping":
            return
        body = json.loads(data)
        if event == "error":
            raise StreamError(body)
        kind = body.get("type")
        if kind == "message_start":
            self.message = _present(body["message"])
            self.message.setdefault("content", [])
            self.input_usage = _present(self.message.get("usage") or {})
            self.message["usage"] = dict(self.input_usage)
        elif kind == "content_block_start":
            self.message["content"].append(_present(body["content_block"]))
        elif kind == "content_block_delta":
            self._delta(body["index"], body["delta"])
        elif kind == "content_block_stop":
            self._block_stop(body["index"])
        elif kind == "message_delta":
            self._message_delta(body)
        elif kind == "message_stop":
            self.stopped = True

    def _delta(self, index: int, delta: dict[str, Any]) -> None:
        block = self.message["content"][index]
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = block.get("text", "") + delta["text"]
        elif kind == "input_json_delta":
            self._tool_json.setdefault(index, []).append(delta["partial_json"])
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta["thinking"]
        elif kind == "signature_delta":
            block["signature"] = delta["signature"]
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(delta["citation"])

    def _block_stop(self, index: int) -> None:
        """A tool's input arrives as JSON fragments: parsed once, when its block ends."""
        parts = self._tool_json.pop(index, None)
        if parts is not None:
            text = "".join(parts)
            self.message["content"][index]["input"] = json.loads(text) if text else {}

    def _message_delta(self, body: dict[str, Any]) -> None:
        """Usage on a message_delta is cumulative: what it gives replaces the start's."""
        for name, value in (body.get("delta") or {}).items():
            self.message[name] = value
        usage = _present(body.get("usage") or {})
        self.message["usage"] = {**(self.message.get("usage") or {}), **usage}
        if "output_tokens" in usage:
            self.output_tokens = int(usage["output_tokens"])

    def reply(self) -> dict[str, Any]:
        """The message as the non-streaming API would have returned it (no null fields)."""
        return _present(self.message)


def _present(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` without its null fields (as the SDK's ``exclude_none`` dump leaves it)."""
    return {k: v for k, v in values.items() if v is not None}
