"""What a step's request looks like: its prompt-cache breakpoints (``workers.prompt_cache``),
its transcript fitted to the context window (``workers.context_window``), and both together
as a step prepares them (``workers.prompt``). Pure: no service is needed."""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from guard import PriceTable, Usage
from store.quests import Step
from workers import context_window, prompt_cache
from workers.claude import ClaudeRequest, json_size
from workers.context_window import ELIDED, TooLong
from workers.prompt import PromptPolicy, Prompts

TOOLS = [
    {
        "name": f"tool_{i}",
        "description": "Does a thing for the company. " * 20,
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
    for i in range(8)
]
SYSTEM = "You are Ted. " * 40


def conversation(steps: int, result_chars: int = 4_000) -> list[dict[str, Any]]:
    """A goal and ``steps`` turns, each a rationale, one tool call and its result."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Tidy the backlog."}]
    for n in range(1, steps + 1):
        use = {"type": "tool_use", "id": f"toolu_{n}", "name": f"tool_{n % 8}", "input": {}}
        messages.append(
            {"role": "assistant", "content": [{"type": "text", "text": f"Step {n}."}, use]}
        )
        result = {"type": "tool_result", "tool_use_id": f"toolu_{n}", "content": "x" * result_chars}
        messages.append({"role": "user", "content": [result]})
    return messages


def breakpoints(system: list[dict[str, Any]], messages: list[dict[str, Any]]) -> list[str]:
    """Where the breakpoints are, in prefix order: "system" or "m<index>.<block>"."""
    found = ["system" for b in system if "cache_control" in b]
    for i, m in enumerate(messages):
        blocks = m["content"] if isinstance(m["content"], list) else []
        found += [f"m{i}.{j}" for j, b in enumerate(blocks) if "cache_control" in b]
    return found


def ttls(system: list[dict[str, Any]], messages: list[dict[str, Any]]) -> set[str]:
    blocks = [
        *system,
        *(b for m in messages if isinstance(m["content"], list) for b in m["content"]),
    ]
    return {b["cache_control"]["ttl"] for b in blocks if "cache_control" in b}


def test_a_step_marks_the_system_prompt_the_previous_requests_end_and_its_last_block() -> None:
    messages = conversation(3)
    stored = copy.deepcopy(messages)
    system, marked = prompt_cache.mark(SYSTEM, messages, TOOLS, ttl="5m", min_tokens=1024)
    # the system (after the tools), the end of step 2's request (its tool results), the last block
    assert breakpoints(system, marked) == ["system", "m4.0", "m6.0"]
    assert ttls(system, marked) == {"5m"}
    assert messages == stored, "the stored transcript is never changed"
    assert [m["content"] for m in marked][:4] == [m["content"] for m in stored][:4]


def test_the_first_step_marks_its_goal_as_a_text_block() -> None:
    system, marked = prompt_cache.mark(
        SYSTEM, [{"role": "user", "content": "Tidy the backlog."}], TOOLS, ttl="1h", min_tokens=1024
    )
    assert marked[0]["content"] == [
        {
            "type": "text",
            "text": "Tidy the backlog.",
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        }
    ]
    assert breakpoints(system, marked) == ["system", "m0.0"]


def test_a_prefix_below_the_models_minimum_is_not_marked() -> None:
    short = [{"role": "user", "content": "Hi."}]
    system, marked = prompt_cache.mark("You are Ted.", short, [], ttl="5m", min_tokens=1024)
    assert breakpoints(system, marked) == []
    # the same request on a model with a lower minimum is marked
    system, marked = prompt_cache.mark("You are Ted.", short, [], ttl="5m", min_tokens=3)
    assert breakpoints(system, marked) == ["system", "m0.0"]
    # tools and system alone under 4,096 tokens, the transcript over it: only the transcript
    system, marked = prompt_cache.mark(SYSTEM, conversation(6), TOOLS, ttl="5m", min_tokens=4096)
    assert breakpoints(system, marked) == ["m10.0", "m12.0"]


def test_a_reply_continued_after_pause_turn_is_marked_where_it_ends() -> None:
    messages = [
        *conversation(1),
        {"role": "assistant", "content": [{"type": "text", "text": "Working on it…"}]},
    ]
    system, marked = prompt_cache.mark(SYSTEM, messages, TOOLS, ttl="5m", min_tokens=1024)
    assert breakpoints(system, marked) == ["system", "m2.0", "m3.0"]


def test_the_ttl_follows_how_far_apart_the_quests_steps_come() -> None:
    assert prompt_cache.ttl_for(None) == "5m"
    assert prompt_cache.ttl_for(timedelta(seconds=2)) == "5m"
    assert prompt_cache.ttl_for(timedelta(minutes=3, seconds=59)) == "5m"
    assert prompt_cache.ttl_for(timedelta(minutes=4)) == "1h"
    assert prompt_cache.ttl_for(timedelta(hours=2)) == "1h"


def size_tokens(messages: list[dict[str, Any]]) -> int:
    return len(json.dumps(messages, separators=(",", ":")).encode()) // 4


def pairs_valid(messages: list[dict[str, Any]]) -> bool:
    """Every tool_use is answered by a tool_result in the next message, and nothing else."""
    for a, u in zip(messages[1::2], messages[2::2], strict=False):
        uses = {b["id"] for b in a["content"] if b["type"] == "tool_use"}
        results = {b["tool_use_id"] for b in u["content"] if b["type"] == "tool_result"}
        if uses != results:
            return False
    return True


def test_a_transcript_within_the_budget_is_sent_whole() -> None:
    messages = conversation(5)
    fitted = context_window.fit(
        messages, total_tokens=size_tokens(messages), budget=100_000, tokens_per_byte=0.25
    )
    assert not isinstance(fitted, TooLong)
    assert fitted.messages is messages and fitted.elided == 0


def test_older_tool_results_are_elided_keeping_every_pair_and_saying_what_went() -> None:
    messages = conversation(60, result_chars=16_000)  # ~240,000 tokens at 4 bytes a token
    stored = copy.deepcopy(messages)
    budget = context_window.budget(200_000, 1024)
    fitted = context_window.fit(
        messages, total_tokens=size_tokens(messages), budget=budget, tokens_per_byte=0.25
    )
    assert not isinstance(fitted, TooLong)
    assert messages == stored
    assert size_tokens(fitted.messages) <= budget
    assert pairs_valid(fitted.messages)
    results = [b for m in fitted.messages[2::2] for b in m["content"]]
    elided = [b for b in results if b["content"].startswith("[elided")]
    assert len(elided) == fitted.elided > 0
    # the oldest go first; the latest steps' results are never elided
    assert results[: len(elided)] == elided
    assert all(not b["content"].startswith("[elided") for b in results[-2:])
    assert elided[0]["content"] == ELIDED.format(tool="tool_1", chars=16_000)


def test_the_elision_point_moves_rarely_as_a_quest_grows() -> None:
    """Each move changes the prompt from the first elided result on (a cache miss for all
    of it): over 120 steps of 4,000 tokens each, it moves a handful of times, never back,
    though the API's count of tokens a byte drifts from step to step."""
    budget = context_window.budget(200_000, 1024)
    cuts = []
    for steps in range(1, 121):
        messages = conversation(steps, result_chars=16_000)
        # the API's count drifts step by step: each step's result shifts the transcript's
        # average a little (a swing larger than a step's growth could move the point back)
        per_byte = 0.25 * (1 + 0.005 * math.sin(steps))
        total = int(json_size(messages) * per_byte)
        fitted = context_window.fit(
            messages, total_tokens=total, budget=budget, tokens_per_byte=per_byte
        )
        assert not isinstance(fitted, TooLong)
        assert json_size(fitted.messages) * per_byte <= budget
        cuts.append(fitted.elided)
    moves = sum(1 for a, b in itertools.pairwise(cuts) if a != b)
    assert cuts == sorted(cuts)
    assert 1 <= moves <= 12, cuts


def test_a_transcript_whose_latest_results_alone_do_not_fit_is_too_long() -> None:
    messages = conversation(3, result_chars=400_000)
    fitted = context_window.fit(
        messages, total_tokens=size_tokens(messages), budget=150_000, tokens_per_byte=0.25
    )
    assert isinstance(fitted, TooLong)
    assert "no longer fits the model's context window" in fitted.reason


def steps_of(messages: list[dict[str, Any]], finished: datetime) -> list[Step]:
    """The stored steps behind ``conversation``'s messages."""
    steps = []
    for n, (a, u) in enumerate(zip(messages[1::2], messages[2::2], strict=False), start=1):
        steps.append(
            Step(n, "done", "claude-sonnet-5-5", "tool_use", a["content"], u["content"], {}, 0, [],
                 finished, finished)
        )  # fmt: skip
    return steps


def prepare(policy: PromptPolicy, steps: list[Step], *, now: datetime, counts: bool = False):  # type: ignore[no-untyped-def]
    async def count(request: ClaudeRequest) -> int | None:
        return request.input_bound() // 4 if counts else None

    prompts = Prompts(PriceTable.load(), policy, count)
    whole = prompts.whole(
        "claude-sonnet-5-5", "Acme", uuid.uuid4(), "Tidy the backlog.", steps, TOOLS
    )
    return whole, asyncio.run(prompts.prepare(whole, steps, now))


def test_a_step_marks_its_request_with_the_ttl_its_quests_pace_calls_for() -> None:
    now = datetime.now(UTC)
    steps = steps_of(conversation(3), now - timedelta(seconds=3))
    _, prepared = prepare(PromptPolicy(max_tokens=1024), steps, now=now)
    assert ttls(prepared.request.system, prepared.request.messages) == {"5m"}
    assert prepared.request.cache_writes == "5m"
    r = prepared.request  # its size is carried over from the unmarked request, exactly
    assert r.input_bound() == json_size(
        {"system": r.system, "messages": r.messages, "tools": r.tools}
    )
    slow = steps_of(conversation(3), now - timedelta(minutes=20))  # the slow tier, say
    _, prepared = prepare(PromptPolicy(max_tokens=1024), slow, now=now)
    assert ttls(prepared.request.system, prepared.request.messages) == {"1h"}


def test_caching_off_sends_no_breakpoint_and_elision_off_sends_the_whole_transcript() -> None:
    now = datetime.now(UTC)
    steps = steps_of(conversation(60, result_chars=16_000), now)
    whole, prepared = prepare(
        PromptPolicy(max_tokens=1024, cache=False, elide=False), steps, now=now
    )
    assert prepared.request.system == whole.system and prepared.request.cache_writes is None
    assert prepared.request.messages == whole.messages
    _, elided = prepare(PromptPolicy(max_tokens=1024), steps, now=now, counts=True)
    assert elided.elided > 0
    assert elided.counted is not None and elided.counted <= context_window.budget(200_000, 1024)


def test_the_reservation_of_a_call_that_may_write_the_cache_bounds_any_split() -> None:
    prices = PriceTable.load()
    for model in ("claude-sonnet-5-5", "claude-opus-5-5", "claude-haiku-5-5"):
        hour = prices.worst_case(model, 150_000, 1024, cache_writes="1h")
        five = prices.worst_case(model, 150_000, 1024, cache_writes="5m")
        for split in (
            Usage(output_tokens=1024, cache_write_1h=150_000),
            Usage(output_tokens=1024, cache_read=100_000, cache_write_1h=50_000),
        ):
            assert prices.cost(model, split) <= hour
        for split in (
            Usage(output_tokens=1024, cache_write_5m=150_000),
            Usage(output_tokens=1024, input_tokens=150_000),
            Usage(output_tokens=1024, cache_read=100_000, cache_write_5m=50_000),
        ):
            assert prices.cost(model, split) <= five
        assert prices.worst_case(model, 150_000, 1024) < five < hour


@pytest.mark.parametrize("model", ["claude-sonnet-5-5", "claude-haiku-5-5"])
def test_the_cost_split_adds_up_to_the_billed_cost(model: str) -> None:
    prices = PriceTable.load()
    usage = Usage(
        input_tokens=1_234,
        output_tokens=567,
        cache_write_5m=8_901,
        cache_write_1h=23,
        cache_read=45_678,
    )
    parts = prices.cost_parts(model, usage)
    total = parts.input + parts.cache_write + parts.cache_read + parts.output
    assert prices.cost(model, usage) <= total <= prices.cost(model, usage) + 3
    assert parts.cache_read < parts.cache_write  # 45,678 read cost less than 8,924 written


def test_elision_counts_again_when_the_results_it_elided_held_fewer_tokens_a_byte() -> None:
    """The elided results are estimated at the request's average tokens a byte; older results
    of plain prose (5 bytes a token) and newer ones of dense JSON (2.5) make that estimate
    save too much: the step counts the elided request and elides a stride more until the
    API's count fits."""
    messages = conversation(60, result_chars=16_000)
    for n, m in enumerate(messages[2::2], start=1):
        m["content"][0]["content"] = ("p" if n <= 30 else "d") * 16_000
    now = datetime.now(UTC)
    steps = steps_of(messages, now)
    counts: list[int] = []

    async def count(request: ClaudeRequest) -> int:
        tokens = json_size(request.tools) // 4 + json_size(request.system) // 4
        for m in request.messages:
            for b in m["content"] if isinstance(m["content"], list) else [m["content"]]:
                text = json.dumps(b)
                tokens += len(text) * 2 // 5 if '"ddd' in text else len(text) // 5
        counts.append(tokens)
        return tokens

    prompts = Prompts(PriceTable.load(), PromptPolicy(max_tokens=1024), count)
    whole = prompts.whole("claude-sonnet-5-5", "Acme", uuid.uuid4(), "Tidy.", steps, TOOLS)
    prepared = asyncio.run(prompts.prepare(whole, steps, now))
    assert not isinstance(prepared, TooLong)
    budget = context_window.budget(200_000, 1024)
    assert prepared.counted is not None and prepared.counted <= budget
    assert len(counts) >= 3, counts  # the whole, a first elision that was short, a further one
    assert counts[1] > budget >= counts[-1]
    assert pairs_valid(prepared.request.messages)


def test_a_transcript_too_long_by_an_estimate_only_waits_rather_than_fails() -> None:
    from workers.errors import TryLater

    now = datetime.now(UTC)
    steps = steps_of(conversation(3, result_chars=800_000), now)
    prompts = Prompts(PriceTable.load(), PromptPolicy(max_tokens=1024), None)  # cannot count
    whole = prompts.whole("claude-sonnet-5-5", "Acme", uuid.uuid4(), "Tidy.", steps, TOOLS)
    with pytest.raises(TryLater, match="by an estimate"):
        asyncio.run(prompts.prepare(whole, steps, now))

    async def count(request: ClaudeRequest) -> int:
        return request.input_bound() // 4

    counted = Prompts(PriceTable.load(), PromptPolicy(max_tokens=1024), count)
    assert isinstance(asyncio.run(counted.prepare(whole, steps, now)), TooLong)
