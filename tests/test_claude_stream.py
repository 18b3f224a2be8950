"""Reading a Messages API stream into the reply's JSON: the events of the API reference's
own examples give the message the non-streaming API returns."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from workers.claude_stream import ReplyBuilder, StreamError, server_sent_events


def sse(events: list[dict[str, Any]]) -> list[str]:
    """The stream's lines as the API sends them (a ping and a comment among them)."""
    lines = [": a comment", "event: ping", 'data: {"type": "ping"}', ""]
    for e in events:
        lines += [f"event: {e['type']}", f"data: {json.dumps(e)}", ""]
    return lines


def read(lines: list[str]) -> ReplyBuilder:
    async def lines_of() -> AsyncIterator[str]:
        for line in lines:
            yield line

    async def build() -> ReplyBuilder:
        building = ReplyBuilder()
        async for event, data in server_sent_events(lines_of()):
            building.feed(event, data)
        return building

    return asyncio.run(build())


START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-5-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 472, "output_tokens": 2, "cache_read_input_tokens": None},
    },
}


def block(index: int, start: dict[str, Any], *deltas: dict[str, Any]) -> list[dict[str, Any]]:
    """One content block's events: its start, its deltas, its stop."""
    return [
        {"type": "content_block_start", "index": index, "content_block": start},
        *({"type": "content_block_delta", "index": index, "delta": d} for d in deltas),
        {"type": "content_block_stop", "index": index},
    ]


def end(stop_reason: str, **usage: int) -> list[dict[str, Any]]:
    return [
        {"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": usage},
        {"type": "message_stop"},
    ]


def test_a_tool_call_is_assembled_from_its_json_fragments() -> None:
    text = {"type": "text", "text": ""}
    tool = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
    fragments = ["", '{"location": "San Fra', 'ncisco", "unit": null}']
    building = read(
        sse(
            [
                START,
                *block(
                    0, text, *({"type": "text_delta", "text": t} for t in ("Let me ", "check."))
                ),
                *block(
                    1, tool, *({"type": "input_json_delta", "partial_json": f} for f in fragments)
                ),
                *end("tool_use", output_tokens=89),
            ]
        )
    )
    assert building.stopped and building.output_tokens == 89
    assert building.input_usage == {"input_tokens": 472, "output_tokens": 2}
    assert building.reply() == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-5-5",
        "content": [
            {"type": "text", "text": "Let me check."},
            {**tool, "input": {"location": "San Francisco", "unit": None}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 472, "output_tokens": 89},
    }


def test_thinking_its_signature_and_cumulative_usage() -> None:
    thinking = [{"type": "thinking_delta", "thinking": t} for t in ("First, ", "add.")]
    building = read(
        sse(
            [
                START,
                *block(
                    0,
                    {"type": "thinking", "thinking": ""},
                    *thinking,
                    {"type": "signature_delta", "signature": "sig=="},
                ),
                *end("end_turn", output_tokens=12, input_tokens=480, cache_read_input_tokens=400),
            ]
        )
    )
    reply = building.reply()
    assert reply["content"] == [
        {"type": "thinking", "thinking": "First, add.", "signature": "sig=="}
    ]
    assert reply["usage"] == {
        "input_tokens": 480,
        "output_tokens": 12,
        "cache_read_input_tokens": 400,
    }


def test_a_stream_cut_before_message_stop_is_not_stopped() -> None:
    building = read(sse([START])[:-3])  # message_start's data line never came
    assert not building.stopped and building.input_usage is None


def test_an_error_event_and_a_malformed_event_raise() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(StreamError) as raised:
        read(sse([START, error]))
    assert raised.value.body == error
    with pytest.raises(ValueError):
        read(["event: message_start", "data: {not json", ""])
