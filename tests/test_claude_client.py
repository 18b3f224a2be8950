"""The Claude client against a Messages API stand-in (the offline Claude, in this process),
through the real anthropic SDK: how far each failing call got (``Sent``), which is what it
may have cost, and what the step should do about it."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import uvicorn

from runtime.loop_thread import LoopThread
from standins.offline_claude import Failure, Script, Text, Turn, create_app
from system2.procs import free_port
from workers.call_scope import CallScope, Interrupted
from workers.claude import (
    Claude,
    ClaudeRejected,
    ClaudeReply,
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


def create(call_loop: LoopThread, url: str, goal: str, *, timeout_s: float = 10) -> ClaudeReply:
    """One call on the tests' loop, through a client of its own."""

    async def call() -> ClaudeReply:
        claude = Claude(timeout_s=timeout_s, base_url=url, api_key="k")
        try:
            return await claude.create(request(goal), Progress())
        finally:
            await claude.close()

    return call_loop.run(call())


def cut(call_loop: LoopThread, url: str, goal: str, *, after_s: float) -> tuple[Progress, float]:
    """A call its quest's cancel cuts ``after_s`` into it (at once: before it leaves); how far
    it got, and how long the cut took to end it."""

    async def call() -> tuple[Progress, float]:
        claude = Claude(timeout_s=60, base_url=url, api_key="k")
        scope, progress = CallScope(uuid.uuid4()), Progress()
        if after_s:
            asyncio.get_running_loop().call_later(after_s, scope.cancel)
        else:
            scope.cancel()
        started = time.monotonic()
        try:
            with pytest.raises(Interrupted):
                await scope.cut(claude.create(request(goal), progress))
            return progress, time.monotonic() - started
        finally:
            await claude.close()

    return call_loop.run(call())


def test_a_reply_is_read_whole(call_loop: LoopThread, claude_url: str) -> None:
    reply = create(call_loop, claude_url, "[script:answer] hello")
    assert reply.stop_reason == "end_turn" and "hello" in reply.text


def test_nothing_sent_when_no_connection_could_be_made(call_loop: LoopThread) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ClaudeUnavailable) as failed:
        create(call_loop, closed, "[script:answer] hello")
    assert failed.value.sent is Sent.nothing


def test_sent_and_unanswered_when_the_first_byte_never_comes(
    call_loop: LoopThread, claude_url: str
) -> None:
    with pytest.raises(ClaudeUnavailable) as failed:
        create(call_loop, claude_url, "[script:slow_start] hi", timeout_s=0.5)
    assert failed.value.sent is Sent.unanswered


def test_an_error_answered_before_the_stream_costs_nothing_and_is_ours_to_fix(
    call_loop: LoopThread, claude_url: str
) -> None:
    with pytest.raises(ClaudeRejected) as refused:
        create(call_loop, claude_url, "[script:bad_request] hi")
    assert refused.value.sent is Sent.answered
    assert (refused.value.status, refused.value.error_type) == (400, "invalid_request_error")


@pytest.mark.parametrize("script", ["overloaded_mid_stream", "rate_limited_mid_stream"])
def test_a_transient_error_event_mid_stream_is_retried_and_charged_what_was_reported(
    call_loop: LoopThread, claude_url: str, script: str
) -> None:
    """The API's `error` event arrives on a 200 stream: its type, not its status, says it
    passes — a rate limit mid-reply is not our fault."""
    with pytest.raises(ClaudeUnavailable) as failed:
        create(call_loop, claude_url, f"[script:{script}] hi")
    assert failed.value.sent is Sent.partly
    assert failed.value.progress.input_usage is not None


def test_a_stream_cut_before_message_stop_is_no_reply(
    call_loop: LoopThread, claude_url: str
) -> None:
    with pytest.raises(ClaudeUnavailable) as failed:
        create(call_loop, claude_url, "[script:cut_mid_stream] hi")
    assert failed.value.sent is Sent.partly
    assert "message_stop" in str(failed.value)


def test_a_cancel_before_the_call_leaves_sends_nothing(
    call_loop: LoopThread, claude_url: str
) -> None:
    progress, _ = cut(call_loop, claude_url, "[script:answer] hi", after_s=0)
    assert progress.sent is Sent.nothing


def test_a_cancel_while_the_api_holds_its_first_byte_cuts_the_call_at_once(
    call_loop: LoopThread, claude_url: str
) -> None:
    progress, took_s = cut(call_loop, claude_url, "[script:slow_start] hi", after_s=0.5)
    assert took_s < 5
    assert progress.sent is Sent.unanswered


def test_an_unforeseen_failure_is_a_failure_of_the_call_not_of_the_step() -> None:
    failure = _classify(json.JSONDecodeError("bad SSE data", "x", 0), Progress(request_sent=True))
    assert isinstance(failure, ClaudeUnavailable) and failure.sent is Sent.unanswered


def test_a_call_that_ends_in_an_error_when_cut_is_still_a_cut(call_loop: LoopThread) -> None:
    """redis-py raises a connection error when a command is cut mid-read: a tool call cut
    by its quest's cancel must end the step as cancelled, not be retried as an outage."""

    async def cut_mid_command() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise ConnectionError("Connection closed by server.") from None

    async def call() -> None:
        scope = CallScope(uuid.uuid4())
        asyncio.get_running_loop().call_later(0.1, scope.cancel)
        with pytest.raises(Interrupted):
            await scope.cut(cut_mid_command())
        with pytest.raises(ConnectionError):  # not cancelled: an error is the call's own
            await CallScope(uuid.uuid4()).cut(_fails())

    call_loop.run(call())


async def _fails() -> None:
    raise ConnectionError("refused")
