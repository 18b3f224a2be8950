"""What a step message does given the quest's state (the pure part of the step runner)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from store.quests import Quest, Step
from workers.step import Decision, decide, transcript

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
STALE = timedelta(minutes=15)


def quest(**kw: object) -> Quest:
    base = Quest(
        id=uuid.uuid4(),
        company_id=uuid.uuid4(),
        status="running",
        goal="g",
        model="m",
        max_usd_micros=None,
        created_by="user:u",
        correlation_id=uuid.uuid4(),
        origin_message_id=uuid.uuid4(),
        first_step_enqueued_at=NOW,
        steps_done=0,
        step_claimed=0,
        step_holder=None,
        step_claimed_at=None,
        cost_usd_micros=0,
        result=None,
        reason=None,
        created_at=NOW,
        started_at=None,
        finished_at=None,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "step", "holder", "expected"),
    [
        ({"status": "queued"}, 1, "a", Decision.run),
        ({"steps_done": 2, "step_claimed": 2}, 3, "a", Decision.run),
        # the same message again (redelivery) may re-claim its step
        ({"step_claimed": 1, "step_holder": "a", "step_claimed_at": NOW}, 1, "a", Decision.run),
        # a duplicate while another message runs the step
        ({"step_claimed": 1, "step_holder": "b", "step_claimed_at": NOW}, 1, "a", Decision.drop),
        # ... unless that claim is stale (its worker is long gone)
        (
            {"step_claimed": 1, "step_holder": "b", "step_claimed_at": NOW - 2 * STALE},
            1,
            "a",
            Decision.run,
        ),
        # done step, next not claimed yet: re-send what the step sent
        ({"steps_done": 1, "step_claimed": 1}, 1, "a", Decision.resend),
        # done step, next already claimed: nothing to do
        ({"steps_done": 1, "step_claimed": 2, "step_holder": "x"}, 1, "a", Decision.drop),
        ({"steps_done": 3, "step_claimed": 3}, 1, "a", Decision.drop),
        # the final step of a finished quest re-sends its audit events
        ({"status": "succeeded", "steps_done": 2, "step_claimed": 2}, 2, "a", Decision.resend),
        ({"status": "cancelled", "steps_done": 1, "step_claimed": 1}, 2, "a", Decision.drop),
        ({"steps_done": 1, "step_claimed": 1}, 5, "a", Decision.drop),
    ],
)
def test_decide(state: dict[str, object], step: int, holder: str, expected: Decision) -> None:
    decision, why = decide(quest(**state), step, holder, now=NOW, stale_after=STALE)
    assert decision is expected, why


def step(
    n: int,
    content: list[dict[str, object]] | None,
    tool_results: list[dict[str, object]] | None = None,
) -> Step:
    return Step(
        step=n,
        status="done",
        model="m",
        stop_reason=None,
        content=content,  # type: ignore[arg-type]
        tool_results=tool_results or [],
        usage=None,
        cost_usd_micros=0,
        events=[],  # type: ignore[arg-type]
        started_at=NOW,
        finished_at=NOW,
    )


def test_transcript_alternates_and_continues_after_a_pause() -> None:
    use = {"type": "tool_use", "id": "t1", "name": "add_note", "input": {"text": "x"}}
    result = {"type": "tool_result", "tool_use_id": "t1", "content": "ok"}
    messages = transcript(
        "goal",
        [
            step(1, [{"type": "text", "text": "why"}, use], [result]),
            step(2, [{"type": "text", "text": "working"}]),  # pause_turn
            step(3, [{"type": "text", "text": " done"}]),
            step(4, None),  # a step that ended before any reply
        ],
    )
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[2]["content"] == [result]
    assert [b["text"] for b in messages[3]["content"]] == ["working", " done"]
