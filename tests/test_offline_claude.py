"""The offline Claude, served by uvicorn on loopback and driven by the real anthropic SDK."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

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
from starlette.applications import Starlette

from standins.offline_claude import Failure, Script, Text, ToolUse, Turn, create_app
from standins.offline_claude.prompt_cache import (
    MESSAGE_TOKENS,
    PromptCache,
    minimum_cacheable_tokens,
    read_prompt,
)

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


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, for the real SDK to call."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
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


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serving(create_app(TEST_SCRIPTS)) as url:
        yield url


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


@pytest.mark.parametrize("goal", ["Say hello", "[script:notes] Stream a note"])
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


# --- prompt caching ------------------------------------------------------------------------

FIVE_MINUTES: dict[str, Any] = {"type": "ephemeral"}
ONE_HOUR: dict[str, Any] = {"type": "ephemeral", "ttl": "1h"}


def tokens(block: Mapping[str, Any]) -> int:
    """The documented count of one block: ceil(bytes / 4) of its compact, key-sorted JSON
    without ``cache_control`` (and a message's first block adds ``MESSAGE_TOKENS``)."""
    core = {key: value for key, value in block.items() if key != "cache_control"}
    size = len(json.dumps(core, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode())
    return -(-size // 4)


def text(body: str, cache_control: dict[str, Any] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": body}
    return block if cache_control is None else {**block, "cache_control": cache_control}


def words(what: str, count: int) -> str:
    """About 2 tokens a word (the word and its number)."""
    return " ".join(f"{what}{i}" for i in range(count))


def cached_tools(cache_control: dict[str, Any] | None = FIVE_MINUTES) -> list[dict[str, Any]]:
    tool: dict[str, Any] = {**TOOLS[0], "description": "Write a note. " + words("rule", 700)}
    return [tool if cache_control is None else {**tool, "cache_control": cache_control}]


SYSTEM = words("policy", 800)
DOCUMENT = words("page", 900)


@dataclass
class Claude:
    """An SDK client with a key of its own: each test's cache entries are its own."""

    sdk: anthropic.Anthropic

    def send(self, model: str = MODEL, **params: Any) -> Message:
        return self.sdk.messages.create(model=model, max_tokens=256, **params)

    def count(self, model: str = MODEL, **params: Any) -> int:
        return self.sdk.messages.count_tokens(model=model, **params).input_tokens


@contextmanager
def claude_at(url: str, key: str) -> Iterator[Claude]:
    with anthropic.Anthropic(base_url=url, api_key=key, max_retries=0) as sdk:
        yield Claude(sdk)


@pytest.fixture
def claude(base_url: str, request: pytest.FixtureRequest) -> Iterator[Claude]:
    with claude_at(base_url, f"key-{request.node.name}") as own:
        yield own


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def timed_url(clock: Clock) -> Iterator[str]:
    with serving(create_app(TEST_SCRIPTS, clock=clock)) as url:
        yield url


def first_turn(question: str = "[script:notes] What does the document say?") -> dict[str, Any]:
    """Breakpoints on the tools, the system prompt and the document of the first message."""
    return {
        "tools": cached_tools(),
        "system": [text(SYSTEM, FIVE_MINUTES)],
        "messages": [{"role": "user", "content": [text(DOCUMENT, FIVE_MINUTES), text(question)]}],
    }


def creation(message: Message) -> tuple[int, int]:
    """(5m, 1h) cache writes."""
    assert message.usage.cache_creation is not None
    made = message.usage.cache_creation
    return made.ephemeral_5m_input_tokens, made.ephemeral_1h_input_tokens


def total(message: Message) -> int:
    usage = message.usage
    return (
        usage.input_tokens
        + (usage.cache_creation_input_tokens or 0)
        + (usage.cache_read_input_tokens or 0)
    )


def test_first_request_writes_up_to_its_last_breakpoint(claude: Claude) -> None:
    params = first_turn()
    message = claude.send(**params)

    question = params["messages"][0]["content"][1]
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.input_tokens == tokens(question)
    assert message.usage.cache_creation_input_tokens == claude.count(**params) - tokens(question)
    assert creation(message) == (message.usage.cache_creation_input_tokens, 0)
    assert total(message) == claude.count(**params)


def test_next_turn_reads_the_previous_prefix_and_writes_only_the_new_part(
    claude: Claude,
) -> None:
    params = first_turn()
    first = claude.send(**params)
    [_, tool_use] = first.content
    assert isinstance(tool_use, ToolUseBlock)
    result = {"type": "tool_result", "tool_use_id": tool_use.id, "content": "noted"}
    params["messages"] += [
        first.to_param(),
        {"role": "user", "content": [{**result, "cache_control": FIVE_MINUTES}]},
    ]
    second = claude.send(**params)

    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.input_tokens == 0
    grown = claude.count(**params) - first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == grown
    assert grown > tokens(result)  # the first question and the assistant's turn, too

    again = claude.send(**params)
    assert again.usage.cache_read_input_tokens == claude.count(**params)
    assert again.usage.cache_creation_input_tokens == again.usage.input_tokens == 0


def test_top_level_cache_control_marks_the_last_block(claude: Claude) -> None:
    params = {"system": SYSTEM, "messages": ask("[script:answer] " + DOCUMENT)}
    first = claude.send(**params, cache_control=ONE_HOUR)
    second = claude.send(**params, cache_control=ONE_HOUR)

    counted = claude.count(**params, cache_control=ONE_HOUR)
    assert counted == claude.count(**params)
    assert creation(first) == (0, counted) and first.usage.input_tokens == 0
    assert second.usage.cache_read_input_tokens == counted


def test_a_breakpoint_inside_a_tool_result_caches_through_it(claude: Claude) -> None:
    params = first_turn()
    params["tools"] = cached_tools(None)
    first = claude.send(**params)
    tool_use = first.content[-1]
    assert isinstance(tool_use, ToolUseBlock)
    inner = [text("noted"), text("at 9am", FIVE_MINUTES)]
    result = {"type": "tool_result", "tool_use_id": tool_use.id, "content": inner}
    params["messages"] += [first.to_param(), {"role": "user", "content": [result]}]
    claude.send(**params)
    again = claude.send(**params)

    assert again.usage.cache_read_input_tokens == claude.count(**params)
    assert again.usage.input_tokens == 0


def test_a_changed_system_prompt_misses(claude: Claude) -> None:
    params = first_turn()
    claude.send(**params)
    params["system"] = [text(SYSTEM + " Be brief.", FIVE_MINUTES)]
    changed = claude.send(**params)

    tools_only = tokens(params["tools"][0])
    assert tools_only >= 1024  # the tools' prefix alone was cached, and is read
    assert changed.usage.cache_read_input_tokens == tools_only
    assert changed.usage.cache_creation_input_tokens == total(changed) - tools_only - tokens(
        params["messages"][0]["content"][1]
    )


def test_another_api_key_never_reads_a_prefix(
    claude: Claude, base_url: str, request: pytest.FixtureRequest
) -> None:
    params = first_turn()
    written = claude.send(**params).usage.cache_creation_input_tokens
    with claude_at(base_url, f"other-{request.node.name}") as other:
        theirs = other.send(**params)
    again = claude.send(**params)

    assert theirs.usage.cache_read_input_tokens == 0
    assert theirs.usage.cache_creation_input_tokens == written
    assert again.usage.cache_read_input_tokens == written


def test_another_model_never_reads_a_prefix(claude: Claude) -> None:
    params = first_turn()
    written = claude.send(**params).usage.cache_creation_input_tokens
    other = claude.send("claude-sonnet-4-5", **params)

    assert other.usage.cache_read_input_tokens == 0
    assert other.usage.cache_creation_input_tokens == written
    assert claude.send(**params).usage.cache_read_input_tokens == written


def test_the_same_key_in_x_api_key_reads_the_prefix(base_url: str) -> None:
    params = {"model": MODEL, "max_tokens": 50, **first_turn()}
    headers = {"x-api-key": "key-raw-header", "anthropic-version": "2023-06-01"}
    with httpx.Client(base_url=base_url) as http:
        written = http.post("/v1/messages", json=params, headers=headers).json()["usage"]
    with claude_at(base_url, "key-raw-header") as bearer:
        read = bearer.send(**first_turn()).usage

    assert written["cache_creation_input_tokens"] > 0
    assert read.cache_read_input_tokens == written["cache_creation_input_tokens"]


def test_a_prefix_under_the_models_minimum_is_not_written(claude: Claude) -> None:
    short = {"system": [text(words("rule", 400), FIVE_MINUTES)], "messages": ask("hi")}
    assert claude.count(**short) < 1024
    sonnet_short = claude.send(**short)

    middle = {"system": [text(words("rule", 1000), FIVE_MINUTES)], "messages": ask("hi")}
    assert 1024 < claude.count(**middle) < 4096
    opus = claude.send("claude-opus-4-7", **middle)
    sonnet = claude.send(**middle)

    assert sonnet_short.usage.cache_creation_input_tokens == 0
    assert sonnet_short.usage.input_tokens == claude.count(**short)
    assert opus.usage.cache_creation_input_tokens == 0
    assert sonnet.usage.cache_creation_input_tokens > 0
    assert sonnet.usage.cache_read_input_tokens == 0  # the opus request wrote nothing


@pytest.mark.parametrize(
    ("model", "minimum"),
    [
        ("claude-opus-4-5", 4096),
        ("claude-opus-4-7-20260301", 4096),
        ("claude-opus-5-5", 4096),
        ("claude-haiku-4-5-20251001", 4096),
        ("claude-haiku-5-5", 4096),
        ("claude-3-haiku-20240307", 2048),
        ("claude-3-5-haiku-latest", 2048),
        ("claude-sonnet-4-5", 1024),
        ("claude-sonnet-5-5", 1024),
        ("claude-opus-4-1", 1024),
        ("claude-opus-4-20250514", 1024),
        ("a-model-of-our-own", 1024),
    ],
)
def test_minimum_cacheable_tokens_by_model(model: str, minimum: int) -> None:
    assert minimum_cacheable_tokens(model) == minimum


def test_one_hour_then_five_minute_writes_are_split(claude: Claude) -> None:
    params = first_turn()
    params["tools"] = cached_tools(None)
    params["system"] = [text(SYSTEM, ONE_HOUR)]
    message = claude.send(**params)

    system_end = tokens(params["tools"][0]) + tokens(params["system"][0])
    document = MESSAGE_TOKENS + tokens(params["messages"][0]["content"][0])
    assert creation(message) == (document, system_end)
    assert message.usage.cache_creation_input_tokens == system_end + document


def test_stream_reports_the_cache_in_message_start_and_message_delta(claude: Claude) -> None:
    params = first_turn("Stream it.")
    written = claude.send(**params).usage.cache_creation_input_tokens
    with claude.sdk.messages.stream(model=MODEL, max_tokens=256, **params) as stream:
        events = list(stream)
        final = stream.get_final_message()

    start, delta = events[0], next(e for e in events if e.type == "message_delta")
    assert start.type == "message_start" and delta.type == "message_delta"
    assert start.message.usage.cache_read_input_tokens == written
    assert delta.usage.cache_read_input_tokens == written
    assert final.usage.cache_read_input_tokens == written
    assert final.usage.cache_creation_input_tokens == 0


def test_a_cache_hit_lives_five_minutes_from_its_last_use(
    timed_url: str, clock: Clock, request: pytest.FixtureRequest
) -> None:
    params = first_turn()
    with claude_at(timed_url, f"key-{request.node.name}") as claude:
        written = claude.send(**params).usage.cache_creation_input_tokens
        clock.now += 299
        assert claude.send(**params).usage.cache_read_input_tokens == written  # refreshed
        clock.now += 299
        assert claude.send(**params).usage.cache_read_input_tokens == written
        clock.now += 300
        expired = claude.send(**params)

    assert expired.usage.cache_read_input_tokens == 0
    assert expired.usage.cache_creation_input_tokens == written


def test_a_one_hour_entry_outlives_a_five_minute_one(
    timed_url: str, clock: Clock, request: pytest.FixtureRequest
) -> None:
    params = first_turn()
    params["tools"] = cached_tools(ONE_HOUR)
    with claude_at(timed_url, f"key-{request.node.name}") as claude:
        first = claude.send(**params)
        clock.now += 1800
        later = claude.send(**params)
        clock.now += 3601
        gone = claude.send(**params)

    hour = tokens(params["tools"][0])
    assert creation(first)[1] == hour
    assert later.usage.cache_read_input_tokens == hour  # the 5m entries expired, not the 1h
    assert creation(later) == (total(later) - hour - tokens(params["messages"][0]["content"][1]), 0)
    assert gone.usage.cache_read_input_tokens == 0


def test_the_cache_drops_expired_entries_and_then_its_oldest_past_its_cap() -> None:
    clock = Clock()
    cache = PromptCache(clock, max_entries=2)
    prompts = [
        read_prompt({"system": [text(f"{i} {SYSTEM}", FIVE_MINUTES)], "messages": ask("hi")})
        for i in range(4)
    ]

    def reads(index: int) -> int:
        return cache.use(prompts[index], model=MODEL, api_key="k").cache_read_input_tokens

    assert [reads(0), reads(1), reads(2)] == [0, 0, 0]
    assert len(cache) == 2
    assert reads(2) > 0 and reads(1) > 0
    assert reads(0) == 0  # the oldest went first, and writing it again drops prompt 2
    assert reads(2) == 0
    clock.now += 301
    assert reads(3) == 0
    assert len(cache) == 1  # the expired entries went when it wrote


def test_a_breakpoint_looks_back_twenty_blocks(
    base_url: str, request: pytest.FixtureRequest
) -> None:
    """A prefix cached at block 5 of the message is found from a breakpoint on block 24 (its
    lookback: itself and the 19 before), not from one on block 25."""
    pieces = [text(f"part {i}") for i in range(30)]
    content = [text("[script:answer] " + SYSTEM), *pieces]

    def marked(at: int) -> dict[str, Any]:
        blocks = [dict(b) for b in content]
        blocks[at]["cache_control"] = FIVE_MINUTES
        return {"messages": [{"role": "user", "content": blocks}]}

    reads = []
    for later in (24, 25):
        with claude_at(base_url, f"key-{request.node.name}-{later}") as claude:
            written = claude.send(**marked(5)).usage.cache_creation_input_tokens
            reads.append((written, claude.send(**marked(later)).usage.cache_read_input_tokens))

    assert reads[0][1] == reads[0][0] > 0
    assert reads[1][1] == 0


def test_count_tokens_is_the_whole_of_what_a_request_reports(claude: Claude) -> None:
    params = first_turn()
    first, second = claude.send(**params), claude.send(**params)
    plain = {**params, "tools": cached_tools(None), "system": SYSTEM}
    plain["messages"] = [
        {
            "role": "user",
            "content": [text(DOCUMENT), text(params["messages"][0]["content"][1]["text"])],
        }
    ]

    counted = claude.count(**params)
    assert counted == total(first) == total(second)
    assert second.usage.cache_read_input_tokens > 0
    assert claude.count(**plain) == counted  # cache_control is not counted
    expected = tokens(params["tools"][0]) + tokens(text(SYSTEM)) + MESSAGE_TOKENS
    assert counted == expected + sum(tokens(b) for b in params["messages"][0]["content"])


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            lambda p: p["messages"][0]["content"].extend([text("a", FIVE_MINUTES)] * 2),
            "A maximum of 4 blocks with cache_control may be provided. Found 5.",
        ),
        (
            lambda p: p["messages"][0]["content"][0].update(cache_control=ONE_HOUR),
            r"messages\.0\.content\.0\.cache_control: a cache_control with ttl '1h' cannot come "
            r"after one with ttl '5m' \(tools\.0\.cache_control\)",
        ),
        (
            lambda p: p["system"][0].update(cache_control={"type": "persistent"}),
            r"system\.0\.cache_control\.type: Input should be 'ephemeral'",
        ),
        (
            lambda p: p["system"][0].update(cache_control={"type": "ephemeral", "ttl": "10m"}),
            r"system\.0\.cache_control\.ttl: Input should be '5m' or '1h'",
        ),
        (
            lambda p: p["tools"][0].update(cache_control={"type": "ephemeral", "size": 1}),
            r"tools\.0\.cache_control\.size: Extra inputs are not permitted",
        ),
        (
            lambda p: p["messages"][0]["content"][0].update(cache_control="ephemeral"),
            r"messages\.0\.content\.0\.cache_control: Input should be a valid dictionary",
        ),
        (
            lambda p: p["messages"][0]["content"].append(text("", FIVE_MINUTES)),
            r"messages\.0\.content\.2\.text: cache_control cannot be set for empty text blocks",
        ),
    ],
    ids=[
        "five_breakpoints",
        "1h_after_5m",
        "bad_type",
        "bad_ttl",
        "extra_key",
        "not_an_object",
        "empty_text",
    ],
)
def test_cache_control_the_api_refuses_is_400(claude: Claude, change: Any, error: str) -> None:
    params = first_turn()  # three breakpoints, each 5m
    change(params)

    with pytest.raises(anthropic.BadRequestError, match=error) as raised:
        claude.send(**params)
    assert raised.value.type == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError, match=error):
        claude.count(**params)


def test_a_prompt_longer_than_the_context_window_is_400(claude: Claude) -> None:
    params = {"messages": ask("x" * 810_000)}
    counted = claude.count(**params)

    assert counted > 200_000
    with pytest.raises(
        anthropic.BadRequestError, match=f"prompt is too long: {counted} tokens > 200000 maximum"
    ) as raised:
        claude.send(**params)
    assert raised.value.type == "invalid_request_error"
