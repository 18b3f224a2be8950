"""The offline Claude, served by uvicorn on loopback and driven by the real anthropic SDK."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator

import anthropic
import httpx
import pytest
import uvicorn
from anthropic.types import (
    Message,
    MessageParam,
    TextBlock,
    TextBlockParam,
    ToolResultBlockParam,
    ToolUseBlock,
    UserMessageParam,
)

from standins.offline_claude import Failure, Script, Text, ToolUse, Turn, create_app

MODEL = "claude-sonnet-5-5"
TOOLS: list[anthropic.types.ToolParam] = [
    {
        "name": "add_note",
        "description": "Write a note.",
        "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
    }
]
TEST_SCRIPTS = {
    "hold": Script(turns=(Turn((Text("held reply"),), hold_s=0.5),)),
    "late_start": Script(turns=(Turn((Text("late reply"),), start_after_s=0.6),)),
    "long": Script(turns=(Turn((Text("word " * 200),)),)),
    "stops": Script(turns=(Turn((Text("alpha STOP beta"),)),)),
    "teapot": Script(turns=(Failure(500, "api_error", "Scripted boom"),)),
    "both": Script(
        turns=(
            Turn(
                (Text("Two notes."), ToolUse("add_note", {"text": "a"}), ToolUse("add_note", {})),
                "tool_use",
            ),
        )
    ),
}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(TEST_SCRIPTS),
        log_config=None,  # leave logging alone so caplog sees uvicorn's error records
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture
def client(base_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=base_url, api_key="test-key", max_retries=0) as sdk:
        yield sdk


def ask(text: str) -> list[MessageParam]:
    return [{"role": "user", "content": text}]


def create(
    client: anthropic.Anthropic,
    messages: list[MessageParam],
    *,
    max_tokens: int = 1024,
    stop_sequences: list[str] | None = None,
    extra_headers: dict[str, str | anthropic.Omit] | None = None,
    extra_body: dict[str, object] | None = None,
) -> Message:
    return client.messages.create(
        model=MODEL,
        max_tokens=max_tokens,
        messages=messages,
        tools=TOOLS,
        stop_sequences=anthropic.omit if stop_sequences is None else stop_sequences,
        extra_headers=extra_headers,
        extra_body=extra_body,
    )


def text_of(message: Message, index: int = 0) -> str:
    block = message.content[index]
    assert isinstance(block, TextBlock)
    return block.text


def tool_result(tool_use: ToolUseBlock) -> UserMessageParam:
    result: ToolResultBlockParam = {
        "type": "tool_result",
        "tool_use_id": tool_use.id,
        "content": "ok",
    }
    return {"role": "user", "content": [result]}


def no_server_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# --- replies ---------------------------------------------------------------------------


def test_text_reply_is_a_message_with_honest_usage(client: anthropic.Anthropic) -> None:
    message = create(client, ask("Plan a picnic for Saturday"))

    assert isinstance(message, Message)
    assert message.id.startswith("msg_")
    assert message.model == MODEL
    assert message.stop_reason == "end_turn"
    assert message.stop_details is None
    [block] = message.content
    assert isinstance(block, TextBlock)
    assert "Plan a picnic for Saturday" in block.text
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens >= 1
    assert message.usage.cache_creation_input_tokens == 0
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.service_tier == "standard"
    assert message._request_id is not None
    assert message._request_id.startswith("req_")


def test_replies_and_ids_are_deterministic(client: anthropic.Anthropic) -> None:
    first = create(client, ask("[script:notes] Same goal"))
    again = create(client, ask("[script:notes] Same goal"))
    other = create(client, ask("[script:notes] Other goal"))

    assert first.model_dump() == again.model_dump()
    assert first.id != other.id
    assert [b.id for b in first.content if isinstance(b, ToolUseBlock)] != [
        b.id for b in other.content if isinstance(b, ToolUseBlock)
    ]


def test_tool_use_conversation_runs_to_the_end(client: anthropic.Anthropic) -> None:
    messages = ask("[script:notes] Water the plants")
    first = create(client, messages)

    assert first.stop_reason == "tool_use"
    rationale, tool_use = first.content
    assert isinstance(rationale, TextBlock)
    assert isinstance(tool_use, ToolUseBlock)
    assert re.fullmatch(r"toolu_[0-9A-Za-z]{24}", tool_use.id)
    assert tool_use.name == "add_note"
    assert tool_use.input == {"text": "Goal: Water the plants"}

    messages += [first.to_param(), tool_result(tool_use)]
    second = create(client, messages)
    assert second.stop_reason == "end_turn"
    assert "Water the plants" in text_of(second)

    messages += [second.to_param(), {"role": "user", "content": "Anything else?"}]
    past_the_end = create(client, messages)
    assert past_the_end.stop_reason == "end_turn"
    assert text_of(past_the_end) == "Done."


def test_several_tool_uses_get_distinct_ids(client: anthropic.Anthropic) -> None:
    message = create(client, ask("[script:both] go"))

    ids = [b.id for b in message.content if isinstance(b, ToolUseBlock)]
    assert len(set(ids)) == 2
    assert [b.input for b in message.content if isinstance(b, ToolUseBlock)] == [{"text": "a"}, {}]


def test_unanswered_tool_use_is_rejected(client: anthropic.Anthropic) -> None:
    messages = ask("[script:notes] Feed the cat")
    first = create(client, messages)
    messages += [first.to_param(), {"role": "user", "content": "I ignored your tool call"}]

    with pytest.raises(anthropic.BadRequestError, match="without `tool_result`"):
        create(client, messages)


def test_cache_usage_is_scripted(client: anthropic.Anthropic) -> None:
    goal = "[script:cached] " + "a long shared prefix " * 1000
    message = create(client, ask(goal))
    uncached = client.messages.count_tokens(model=MODEL, messages=ask(goal), tools=TOOLS)

    usage = message.usage
    assert usage.cache_creation is not None
    assert usage.cache_creation.ephemeral_5m_input_tokens == 1200
    assert usage.cache_creation.ephemeral_1h_input_tokens == 300
    assert usage.cache_creation_input_tokens == 1500
    assert usage.cache_read_input_tokens == 2400
    assert usage.input_tokens == uncached.input_tokens - 1500 - 2400


@pytest.mark.parametrize(
    ("script", "stop_reason"),
    [
        ("pause", "pause_turn"),
        ("refusal", "refusal"),
        ("max_tokens", "max_tokens"),
        ("context", "model_context_window_exceeded"),
        ("loop", "tool_use"),
    ],
)
def test_scripted_stop_reasons(client: anthropic.Anthropic, script: str, stop_reason: str) -> None:
    message = create(client, ask(f"[script:{script}] go"))

    assert message.stop_reason == stop_reason
    if script == "refusal":
        assert message.stop_details is not None
        assert message.stop_details.type == "refusal"


def test_pause_turn_continues_from_the_returned_message(client: anthropic.Anthropic) -> None:
    messages = ask("[script:pause] Count the stars")
    paused = create(client, messages)
    resumed = create(client, [*messages, paused.to_param()])

    assert (paused.stop_reason, resumed.stop_reason) == ("pause_turn", "end_turn")


def test_loop_never_stops_using_tools(client: anthropic.Anthropic) -> None:
    messages = ask("[script:loop] forever")
    for step in range(1, 6):
        message = create(client, messages)
        assert message.stop_reason == "tool_use"
        tool_use = message.content[-1]
        assert isinstance(tool_use, ToolUseBlock)
        assert tool_use.input == {"text": f"Note {step}"}
        messages += [message.to_param(), tool_result(tool_use)]


def test_output_beyond_max_tokens_is_truncated(client: anthropic.Anthropic) -> None:
    message = create(client, ask("[script:long] go"), max_tokens=5)

    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens <= 5
    assert len(text_of(message).encode()) <= 20


def test_stop_sequences_end_the_reply(client: anthropic.Anthropic) -> None:
    message = create(client, ask("[script:stops] go"), stop_sequences=["STOP"])

    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "STOP"
    assert text_of(message) == "alpha "


# --- streaming -------------------------------------------------------------------------


@pytest.mark.parametrize("goal", ["Say hello", "[script:notes] Stream a note", "[script:cached] x"])
def test_stream_gives_the_same_final_message(client: anthropic.Anthropic, goal: str) -> None:
    expected = create(client, ask(goal))
    with client.messages.stream(
        model=MODEL, max_tokens=1024, messages=ask(goal), tools=TOOLS
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()

    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert final.model_dump() == expected.model_dump()


def test_stream_sends_the_real_event_sequence(client: anthropic.Anthropic) -> None:
    with client.messages.with_streaming_response.create(
        model=MODEL, max_tokens=1024, messages=ask("[script:notes] go"), tools=TOOLS, stream=True
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [sse.event for sse in anthropic.Stream.raw_events(response.http_response)]

    assert events[:2] == ["message_start", "ping"]
    assert events[-2:] == ["message_delta", "message_stop"]
    assert events.count("content_block_start") == events.count("content_block_stop") == 2


def test_stream_truncates_at_max_tokens(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=3, messages=ask("[script:long] go")) as s:
        final = s.get_final_message()

    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens <= 3


def test_stream_holds_after_message_start(client: anthropic.Anthropic) -> None:
    started = time.monotonic()
    with client.messages.stream(model=MODEL, max_tokens=100, messages=ask("[script:hold] go")) as s:
        first = next(iter(s))
        first_at = time.monotonic() - started
        text = s.get_final_text()
    done_at = time.monotonic() - started

    assert first.type == "message_start"
    assert first_at < 0.4
    assert done_at >= 0.5
    assert text == "held reply"


def test_start_after_holds_every_byte_of_the_response_the_status_line_included(
    base_url: str,
) -> None:
    """As the real API can be: the request sent, nothing back yet, not even a status line."""
    body = {
        "model": MODEL,
        "max_tokens": 100,
        "stream": True,
        "messages": ask("[script:late_start] go"),
    }
    headers = {"x-api-key": "test-key", "anthropic-version": "2023-06-01"}
    with httpx.Client(base_url=base_url) as http:
        with pytest.raises(httpx.ReadTimeout):  # no status line within 0.3 s
            http.post(
                "/v1/messages", json=body, headers=headers, timeout=httpx.Timeout(5, read=0.3)
            )
        started = time.monotonic()
        with http.stream("POST", "/v1/messages", json=body, headers=headers, timeout=5) as resp:
            status_at = time.monotonic() - started
            events = [line for line in resp.iter_lines() if line.startswith("event: ")]
    assert resp.status_code == 200 and status_at >= 0.5
    assert events[0] == "event: message_start" and events[-1] == "event: message_stop"


def test_closing_a_held_stream_leaves_the_server_healthy(
    client: anthropic.Anthropic, caplog: pytest.LogCaptureFixture
) -> None:
    with client.messages.stream(model=MODEL, max_tokens=100, messages=ask("[script:slow] x")) as s:
        assert next(iter(s)).type == "message_start"
    time.sleep(0.2)

    assert create(client, ask("still there?")).stop_reason == "end_turn"
    assert no_server_errors(caplog) == []


# --- holds and errors --------------------------------------------------------------------


def test_hold_delays_the_reply(client: anthropic.Anthropic) -> None:
    started = time.monotonic()
    message = create(client, ask("[script:hold] go"))

    assert time.monotonic() - started >= 0.5
    assert text_of(message) == "held reply"


def test_a_cancelled_slow_request_leaves_the_server_healthy(
    client: anthropic.Anthropic, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(anthropic.APITimeoutError):
        client.with_options(timeout=0.3).messages.create(
            model=MODEL, max_tokens=100, messages=ask("[script:slow] x")
        )
    time.sleep(0.2)

    assert create(client, ask("still there?")).stop_reason == "end_turn"
    assert no_server_errors(caplog) == []


@pytest.mark.parametrize(
    ("script", "error", "status"),
    [
        ("server_error", anthropic.InternalServerError, 500),
        ("teapot", anthropic.InternalServerError, 500),
        ("overloaded", anthropic.OverloadedError, 529),
        ("rate_limited", anthropic.RateLimitError, 429),
    ],
)
def test_error_turns_raise_the_sdk_exception(
    client: anthropic.Anthropic, script: str, error: type[anthropic.APIStatusError], status: int
) -> None:
    with pytest.raises(error) as raised:
        create(client, ask(f"[script:{script}] go"))

    assert raised.value.status_code == status
    assert raised.value.request_id is not None
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["type"] == "error"
    if script == "rate_limited":
        assert raised.value.response.headers["retry-after"] == "1"


def test_error_turns_fail_streams_before_they_start(client: anthropic.Anthropic) -> None:
    with (
        pytest.raises(anthropic.OverloadedError),
        client.messages.stream(model=MODEL, max_tokens=10, messages=ask("[script:overloaded] x")),
    ):
        pass


def test_flaky_fails_once_per_request_then_answers(
    client: anthropic.Anthropic, base_url: str
) -> None:
    with pytest.raises(anthropic.OverloadedError):
        create(client, ask("[script:flaky] first"))
    assert create(client, ask("[script:flaky] first")).stop_reason == "end_turn"

    with anthropic.Anthropic(base_url=base_url, api_key="k", max_retries=2) as retrying:
        message = retrying.with_options(timeout=10).messages.create(
            model=MODEL, max_tokens=100, messages=ask("[script:flaky] second")
        )
    assert "second" in text_of(message)


# --- validation --------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [anthropic.omit, "Bearer", "Basic dGVzdA=="])
def test_missing_or_empty_key_is_401(
    client: anthropic.Anthropic, authorization: str | anthropic.Omit
) -> None:
    with pytest.raises(anthropic.AuthenticationError) as raised:
        create(client, ask("hi"), extra_headers={"Authorization": authorization})

    assert raised.value.type == "authentication_error"


@pytest.mark.parametrize("param", ["temperature", "top_p", "top_k"])
def test_sampling_parameters_are_rejected(client: anthropic.Anthropic, param: str) -> None:
    with pytest.raises(anthropic.BadRequestError, match=param) as raised:
        create(client, ask("hi"), extra_body={param: 1})

    assert raised.value.type == "invalid_request_error"


def test_unknown_script_is_400(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="no_such_script"):
        create(client, ask("[script:no_such_script] hi"))


@pytest.mark.parametrize(
    ("messages", "max_tokens"),
    [
        ([], 100),
        ([{"role": "assistant", "content": "hi"}], 100),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], 100),
        ([{"role": "system", "content": "a"}], 100),
        (ask("hi"), 0),
    ],
)
def test_malformed_requests_are_400(
    client: anthropic.Anthropic, messages: list[MessageParam], max_tokens: int
) -> None:
    with pytest.raises(anthropic.BadRequestError):
        create(client, messages, max_tokens=max_tokens)


def test_marker_in_a_text_block_selects_the_script(client: anthropic.Anthropic) -> None:
    content: list[TextBlockParam] = [
        {"type": "text", "text": "Context."},
        {"type": "text", "text": "[script:loop] go"},
    ]
    message = create(client, [{"role": "user", "content": content}])

    assert message.stop_reason == "tool_use"


def test_count_tokens_matches_reported_input(client: anthropic.Anthropic) -> None:
    messages = ask("Count me in")
    counted = client.messages.count_tokens(model=MODEL, messages=messages, tools=TOOLS)
    longer = client.messages.count_tokens(model=MODEL, messages=ask("Count me in " * 50))

    assert counted.input_tokens == create(client, messages).usage.input_tokens
    assert longer.input_tokens > counted.input_tokens > 0


def test_unknown_route_is_an_api_shaped_404(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as raised:
        client.post("/v1/nowhere", cast_to=object, body={})

    assert raised.value.type == "not_found_error"


def test_script_names_must_fit_the_marker() -> None:
    with pytest.raises(ValueError, match="marker"):
        create_app({"bad name": Script()})
