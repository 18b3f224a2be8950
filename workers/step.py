"""The parts of a quest step that need no I/O: what to do with a step message, what a step
produced, and the conversation so far."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from guard import Usage
from messages import Actor, ActorType, AuditEvent, Envelope, QuestEvent, QuestStep
from store import TenantTx
from store.quests import Quest, Step
from workers.claude import ClaudeReply
from workers.events import event_data

TED = Actor(type=ActorType.ted, id="ted")
STEP_TIME_LIMIT = timedelta(minutes=10)  # the consumer stops a step that runs longer
# A claim older than this belongs to a step that died without releasing it: longer than any
# step may run, so a live step's claim is never taken from it.
STALE_CLAIM_AFTER = STEP_TIME_LIMIT + timedelta(minutes=5)


class Decision(StrEnum):
    run = "run"
    resend = "resend"
    drop = "drop"


def decide(
    quest: Quest,
    step: int,
    holder: str,
    *,
    now: datetime,
    stale_after: timedelta,
    exclusive: bool = False,
) -> tuple[Decision, str]:
    """What to do with a message for ``step`` given the quest's state.

    ``holder`` is the Dramatiq message id: the broker keeps it across redelivery and retries,
    and every newly published message has a new one, so a duplicate is told apart from a
    redelivery of the message that claimed the step. ``exclusive``: the caller holds the
    quest's lease, so no other message is running it now and any other claim was abandoned.
    """
    if step <= quest.steps_done:
        if step == quest.steps_done and (quest.finished or quest.step_claimed == step):
            return Decision.resend, "step already done; re-sending what it sent"
        return Decision.drop, "step already done"
    if quest.finished:
        return Decision.drop, f"quest already {quest.status}"
    if step > quest.steps_done + 1:
        return Decision.drop, f"step {step} is ahead of the quest (done: {quest.steps_done})"
    if (
        quest.step_claimed == step
        and quest.step_holder != holder
        and not exclusive
        and claim_fresh(quest, now, stale_after)
    ):
        return Decision.drop, "another message is running this step"
    return Decision.run, "claimed"


def claim_fresh(quest: Quest, now: datetime, stale_after: timedelta) -> bool:
    """Whether the quest's step claim is recent enough that its holder may still be running
    it (a claim older than a step can take was abandoned)."""
    return now - (quest.step_claimed_at or now) < stale_after


@dataclass(frozen=True)
class Outcome:
    """How a quest ended; a step that ends none returns None instead."""

    status: str
    result: str | None = None
    reason: str | None = None
    by: Actor = TED  # who ended it: Ted, or the person who cancelled it
    cancel_requested_at: datetime | None = None  # a cancel's request time (cancel latency)


@dataclass(frozen=True)
class Spend:
    """What a quest's Claude replies cost, with their prompts split as billed: uncached input,
    cache writes and cache reads (the cache's share of the prompt)."""

    cost_usd_micros: int = 0
    usage: Usage = field(default_factory=Usage)

    def plus(self, usage: dict[str, Any] | None, cost: int) -> Spend:
        return Spend(self.cost_usd_micros + cost, self.usage + Usage.from_api(usage or {}))

    def data(self) -> dict[str, int]:
        u = self.usage
        return {
            "claude_cost_usd_micros": self.cost_usd_micros,
            "input_tokens": u.input_tokens,
            "cache_write_tokens": u.cache_writes,
            "cache_read_tokens": u.cache_read,
            "output_tokens": u.output_tokens,
            "cache_read_pct": u.cache_read_pct,
        }


def spend_of(steps: list[Step], current: tuple[dict[str, Any], int] | None = None) -> Spend:
    """The Claude replies of ``steps`` (and ``current``, a reply not among them)."""
    spend = Spend()
    for s in steps:
        if s.content is not None:
            spend = spend.plus(s.usage, s.cost_usd_micros)
    return spend if current is None else spend.plus(*current)


@dataclass
class StepRecord:
    """What one step produces: the audit events to store and send, the live events to show,
    the tool results, and the reply (with its cost and charge) not yet in Postgres."""

    env: Envelope[QuestStep]
    quest: Quest
    audit: list[AuditEvent] = field(default_factory=list)
    live: list[Envelope[QuestEvent]] = field(default_factory=list)
    tool_results: list[dict[str, Any]] = field(default_factory=list)
    unsaved_reply: tuple[ClaudeReply, int, str | None] | None = None
    # a call cut by a cancel: its charge, settled in the transaction that ends the quest
    unsettled_charge: Callable[[TenantTx], Awaitable[Quest | None]] | None = None
    next_delay_ms: int = 0
    called: tuple[dict[str, Any], int] | None = None  # this step's reply: its usage and cost
    spend: Spend | None = None  # the quest's replies so far, once the step is done

    @property
    def step(self) -> int:
        return self.env.payload.step

    def audit_event(
        self, suffix: str, action: str, target: str, *, actor: Actor = TED, **kw: Any
    ) -> None:
        self.audit.append(
            AuditEvent(
                idempotency_key=f"{self.quest.id}:{self.step}:{suffix}",
                actor=actor,
                action=action,
                target=target,
                originating_message_id=self.quest.origin_message_id,
                quest_id=self.quest.id,
                **kw,
            )
        )

    def show(self, kind: str, **data: Any) -> None:
        payload = QuestEvent(
            quest_id=self.quest.id, kind=kind, step=self.step, data=event_data(**data)
        )
        self.live.append(
            Envelope[QuestEvent](
                company_id=self.env.company_id,
                actor=TED,
                correlation_id=self.env.correlation_id,
                payload=payload,
            )
        )


def transcript(goal: str, steps: list[Step]) -> list[dict[str, Any]]:
    """The conversation so far. A reply after ``pause_turn`` continues the previous one."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": goal}]
    for s in steps:
        if s.content is None:
            continue
        if messages[-1]["role"] == "assistant":
            messages[-1]["content"] = [*messages[-1]["content"], *s.content]
        else:
            messages.append({"role": "assistant", "content": list(s.content)})
        if s.tool_results:
            messages.append({"role": "user", "content": list(s.tool_results)})
    return messages


def tool_result(tool_use_id: str, content: str, is_error: bool) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id, "content": content}
    if is_error:
        block["is_error"] = True
    return block


def actor_of(who: str | None) -> Actor:
    """ "user:alice" -> Actor(user, alice); anything unknown is the system."""
    kind, _, ident = (who or "").partition(":")
    if kind in ActorType.__members__ and ident:
        return Actor(type=ActorType(kind), id=ident)
    return Actor(type=ActorType.system, id=who or "unknown")


def finished_key(quest_id: UUID, steps_done: int) -> str:
    """The idempotency key of a quest's ending audit row: the key the step that ends it
    gives its ``finished`` event (see ``StepRecord.audit_event``), so an ending sent again
    from the quest's row is the same row."""
    return f"{quest_id}:{steps_done}:finished"


def ended_from_row(quest: Quest) -> Outcome:
    """How an ended quest ended, as its row tells it."""
    if quest.status == "cancelled":
        return cancelled(quest)
    return Outcome(quest.status, result=quest.result, reason=quest.reason)


def cancelled(quest: Quest) -> Outcome:
    """The outcome of a quest someone cancelled, from its row."""
    reason = quest.cancel_reason or "no reason given"
    return Outcome(
        "cancelled",
        reason=f"cancelled by {quest.cancelled_by}: {reason}",
        by=actor_of(quest.cancelled_by),
        cancel_requested_at=quest.cancel_requested_at,
    )
