"""The Claude client against a Messages API stand-in (the offline Claude, in this process),
through the real anthropic SDK: how far each failing call got (``Sent``), which is what it
may have cost, and what the step should do about it."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import uvicorn

from standins.offline_claude import Failure, Script, Text, Turn, create_app
from system2.procs import free_port
from workers.call_loop import CallLoop
from workers.call_scope import CallScope, calls_in
from workers.claude import (
    Claude,
    ClaudeInterrupted,
    ClaudeRejected,
    ClaudeRequest,
    ClaudeUnavailable,
    Progress,
    Sent,
    _classify,
)

SCRIPTS = {
    "rate_limited_mid_stream": Script(
        turns=(Turn((Text("cut short"),), error_mid_stream="rate_limit_error"),)
    ),
    "bad_request": Script(turns=(Failure(400, "invalid_request_error"),)),
}


@pytest.fixture(scope="module")
def claude_url() -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(SCRIPTS), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


def request(goal: str) -> ClaudeRequest:
    return ClaudeRequest(
        model="claude-sonnet-5-5",
        max_tokens=256,
        system="You are Ted.",
        messages=[{"role": "user", "content": goal}],
        tools=[],
    )


def claude(call_loop: CallLoop, url: str, timeout_s: float = 10) -> Claude:
    return Claude(loop=call_loop, timeout_s=timeout_s, base_url=url, api_key="k")


def test_a_reply_is_read_whole(call_loop: CallLoop, claude_url: str) -> None:
    reply = claude(call_loop, claude_url).create(request("[script:answer] hello"))
    assert reply.stop_reason == "end_turn" and "hello" in reply.text


def test_nothing_sent_when_no_connection_could_be_made(call_loop: CallLoop) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ClaudeUnavailable) as failed:
        claude(call_loop, closed).create(request("[script:answer] hello"))
    assert failed.value.sent is Sent.nothing


def test_sent_and_unanswered_when_the_first_byte_never_comes(
    call_loop: CallLoop, claude_url: str
) -> None:
    with pytest.raises(ClaudeUnavailable) as failed:
        claude(call_loop, claude_url, timeout_s=0.5).create(request("[script:slow_start] hi"))
    assert failed.value.sent is Sent.unanswered


def test_an_error_answered_before_the_stream_costs_nothing_and_is_ours_to_fix(
    call_loop: CallLoop, claude_url: str
) -> None:
    with pytest.raises(ClaudeRejected) as refused:
        claude(call_loop, claude_url).create(request("[script:bad_request] hi"))
    assert refused.value.sent is Sent.answered
    assert (refused.value.status, refused.value.error_type) == (400, "invalid_request_error")


@pytest.mark.parametrize("script", ["overloaded_mid_stream", "rate_limited_mid_stream"])
def test_a_transient_error_event_mid_stream_is_retried_and_charged_what_was_reported(
    call_loop: CallLoop, claude_url: str, script: str
) -> None:
    """The API's `error` event arrives on a 200 stream: its type, not its status, says it
    passes — a rate limit mid-reply is not our fault."""
    with pytest.raises(ClaudeUnavailable) as failed:
        claude(call_loop, claude_url).create(request(f"[script:{script}] hi"))
    assert failed.value.sent is Sent.partly
    assert failed.value.progress.input_usage is not None


def test_a_stream_cut_before_message_stop_is_no_reply(call_loop: CallLoop, claude_url: str) -> None:
    with pytest.raises(ClaudeUnavailable) as failed:
        claude(call_loop, claude_url).create(request("[script:cut_mid_stream] hi"))
    assert failed.value.sent is Sent.partly
    assert "message_stop" in str(failed.value)


def test_a_cancel_before_the_call_leaves_sends_nothing(
    call_loop: CallLoop, claude_url: str
) -> None:
    scope = CallScope(uuid.uuid4())
    scope.cancel()
    with calls_in(scope), pytest.raises(ClaudeInterrupted) as cut:
        claude(call_loop, claude_url).create(request("[script:answer] hi"))
    assert cut.value.progress.sent is Sent.nothing


def test_a_cancel_while_the_api_holds_its_first_byte_cuts_the_call_at_once(
    call_loop: CallLoop, claude_url: str
) -> None:
    scope = CallScope(uuid.uuid4())
    threading.Timer(0.5, scope.cancel).start()
    started = time.monotonic()
    with calls_in(scope), pytest.raises(ClaudeInterrupted) as cut:
        claude(call_loop, claude_url, timeout_s=60).create(request("[script:slow_start] hi"))
    assert time.monotonic() - started < 5
    assert cut.value.progress.sent is Sent.unanswered


def test_an_unforeseen_failure_is_a_failure_of_the_call_not_of_the_step() -> None:
    failure = _classify(json.JSONDecodeError("bad SSE data", "x", 0), Progress(request_sent=True))
    assert isinstance(failure, ClaudeUnavailable) and failure.sent is Sent.unanswered
