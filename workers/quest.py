"""A quest advances one step per message.

Each step: set the tenant from the envelope, load and claim the quest's next step, make one
Claude call (unless a redelivered step already has its reply), run the tools it asked for,
persist the step, then enqueue the next step or finish. No worker thread is held between
steps. The step's audit events are stored with it, so a redelivery that finds the step
already done re-sends exactly the same messages instead of redoing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import structlog

from guard.errors import UnpricedModel
from guard.pricing import PriceTable, Usage
from messages import (
    Actor,
    ActorType,
    AuditBatch,
    AuditEvent,
    BadMessage,
    Envelope,
    QuestEvent,
    QuestStep,
)
from messages.transport import Publisher
from store import Database, TenantTx
from store import companies as companies_store
from store import quests as quests_store
from store.quests import Quest, Step
from workers.claude import Claude, ClaudeReply
from workers.errors import QuestFailed, QuestHalted
from workers.events import QuestEvents, event_data, summarize
from workers.tools import Toolbox, ToolCall

log = structlog.get_logger(__name__)

TED = Actor(type=ActorType.ted, id="ted")
SYSTEM_PROMPT = (
    "You are Ted, an AI agent working on behalf of the company {company}. Use only this "
    "company's information and the tools offered. Before each tool call, say in one sentence "
    "why you are making it. When the goal is met, answer with the result."
)
CONTINUE = frozenset({"tool_use", "pause_turn"})
SUCCEED = frozenset({"end_turn", "stop_sequence"})
FAIL_REASONS = {
    "max_tokens": "Claude's reply hit max_tokens before finishing",
    "refusal": "Claude declined to continue this quest",
    "model_context_window_exceeded": "the quest's transcript exceeded the model's context window",
}


class Decision(StrEnum):
    run = "run"
    resend = "resend"
    drop = "drop"


def decide(
    quest: Quest, step: int, holder: str, *, now: datetime, stale_after: timedelta
) -> tuple[Decision, str]:
    """What to do with a message for ``step`` given the quest's state.

    ``holder`` is the Dramatiq message id: the broker keeps it across redelivery and retries,
    and every newly published message has a new one, so a duplicate is told apart from a
    redelivery of the message that claimed the step.
    """
    if step <= quest.steps_done:
        if step == quest.steps_done and (quest.finished or quest.step_claimed == step):
            return Decision.resend, "step already done; re-sending what it sent"
        return Decision.drop, "step already done"
    if quest.finished:
        return Decision.drop, f"quest already {quest.status}"
    if step > quest.steps_done + 1:
        return Decision.drop, f"step {step} is ahead of the quest (done: {quest.steps_done})"
    if quest.step_claimed == step and quest.step_holder != holder:
        claimed_at = quest.step_claimed_at or now
        if now - claimed_at < stale_after:
            return Decision.drop, "another message is running this step"
    return Decision.run, "claimed"


@dataclass
class StepRecord:
    """What one step produces: the audit events to store and send, the live events to show."""

    env: Envelope[QuestStep]
    quest: Quest
    audit: list[AuditEvent] = field(default_factory=list)
    live: list[Envelope[QuestEvent]] = field(default_factory=list)
    tool_results: list[dict[str, Any]] = field(default_factory=list)
    unsaved_reply: tuple[ClaudeReply, int] | None = None  # a reply not yet in Postgres, its cost

    @property
    def step(self) -> int:
        return self.env.payload.step

    def audit_event(self, suffix: str, action: str, target: str, **kw: Any) -> None:
        self.audit.append(
            AuditEvent(
                idempotency_key=f"{self.quest.id}:{self.step}:{suffix}",
                actor=TED,
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


@dataclass(frozen=True)
class Outcome:
    status: str
    result: str | None = None
    reason: str | None = None


class QuestRunner:
    def __init__(
        self,
        *,
        db: Database,
        publisher: Publisher,
        claude: Claude,
        toolbox: Toolbox,
        prices: PriceTable,
        events: QuestEvents,
        max_tokens: int,
        max_steps: int,
        stale_claim_after: timedelta = timedelta(minutes=15),
    ) -> None:
        self.db = db
        self.publisher = publisher
        self.claude = claude
        self.toolbox = toolbox
        self.prices = prices
        self.events = events
        self.max_tokens = max_tokens
        self.max_steps = max_steps
        self.stale_claim_after = stale_claim_after

    def run(self, env: Envelope[QuestStep], holder: str) -> None:
        n = env.payload.step
        with self.db.tenant(env.company_id) as tx:
            quest = quests_store.get(tx, env.payload.quest_id, for_update=True)
            if quest is None:
                raise BadMessage("no such quest for this company")
            decision, why = decide(
                quest, n, holder, now=datetime.now(UTC), stale_after=self.stale_claim_after
            )
            if decision is not Decision.drop:
                history = quests_store.steps(tx, quest.id)
            if decision is Decision.run:
                quests_store.claim_step(tx, quest.id, n, holder)
                company = companies_store.get(tx)
        structlog.contextvars.bind_contextvars(quest_id=str(quest.id), step=n)
        if decision is Decision.drop:
            log.info("step skipped", reason=why)
            return
        if decision is Decision.resend:
            self._resend(env, quest, history[-1])
            return
        record = StepRecord(env, quest)
        if n == 1:
            record.show("quest.state", status="running")
            record.audit_event(
                "started",
                "quest.started",
                f"quest:{quest.id}",
                data={"goal_chars": len(quest.goal)},
            )
        record.show("step.started")
        self.events.emit(record.live)
        record.live.clear()
        try:
            outcome = self._advance(record, history, company.name if company else "")
        except QuestFailed as exc:
            outcome = Outcome("failed", reason=str(exc))
        except QuestHalted as exc:
            outcome = Outcome("halted", reason=str(exc))
        self._finish(record, outcome)

    def _advance(self, record: StepRecord, history: list[Step], company: str) -> Outcome | None:
        n = record.step
        current = history[-1] if history and history[-1].step == n else None
        if current is not None and current.content is not None:
            reply = ClaudeReply(
                "", current.model, current.content, current.stop_reason, current.usage or {}
            )
        else:
            reply = self._ask_claude(record, [s for s in history if s.step < n], company)
        stop = reply.stop_reason
        if stop == "tool_use":
            with self.db.tenant(record.quest.company_id) as tx:
                self._save_reply(tx, record)  # before any tool runs: a retry resumes from it
            record.tool_results = self._run_tools(record, reply)
        if stop in SUCCEED:
            return Outcome("succeeded", result=reply.text)
        if stop in CONTINUE:
            if n >= self.max_steps:
                return Outcome("failed", reason=f"step limit reached ({self.max_steps} steps)")
            return None
        reason = FAIL_REASONS.get(stop or "", f"unexpected stop reason {stop!r}")
        return Outcome("failed", reason=reason)

    def _ask_claude(self, record: StepRecord, done: list[Step], company: str) -> ClaudeReply:
        quest = record.quest
        try:
            self.prices.price(quest.model)
        except UnpricedModel as exc:
            raise QuestFailed(str(exc)) from None
        reply = self.claude.create(
            model=quest.model,
            max_tokens=self.max_tokens,
            system=SYSTEM_PROMPT.format(company=company),
            messages=transcript(quest.goal, done),
            tools=self.toolbox.schemas(),
        )
        cost = self.prices.cost(quest.model, Usage.from_api(reply.usage))
        record.unsaved_reply = (reply, cost)
        record.show(
            "claude.replied",
            stop_reason=reply.stop_reason,
            text=summarize(reply.text) or None,
            tools=[t["name"] for t in reply.tool_uses] or None,
            cost_usd_micros=cost,
            input_tokens=reply.usage.get("input_tokens"),
            output_tokens=reply.usage.get("output_tokens"),
        )
        return reply

    def _save_reply(self, tx: TenantTx, record: StepRecord) -> None:
        if record.unsaved_reply is None:
            return
        reply, cost = record.unsaved_reply
        quests_store.save_reply(
            tx,
            record.quest.id,
            record.step,
            model=record.quest.model,
            content=reply.content,
            stop_reason=reply.stop_reason,
            usage=reply.usage,
            cost_usd_micros=cost,
        )
        record.unsaved_reply = None

    def _run_tools(self, record: StepRecord, reply: ClaudeReply) -> list[dict[str, Any]]:
        quest = record.quest
        results = []
        for block in reply.tool_uses:
            tool = self.toolbox.get(block["name"])
            record.show("tool.called", tool=block["name"], tool_use_id=block["id"])
            self.events.emit(record.live)
            record.live.clear()
            if tool is None:
                results.append(_tool_result(block["id"], f"unknown tool {block['name']}", True))
                record.show("tool.finished", tool=block["name"], ok=False)
                continue
            call = ToolCall(
                quest.company_id, quest.id, record.step, block["id"], block.get("input") or {}
            )
            outcome = tool.run(call)
            results.append(_tool_result(block["id"], outcome.content, outcome.is_error))
            record.show(
                "tool.finished", tool=tool.name, ok=not outcome.is_error, target=outcome.target
            )
            if tool.mutates and outcome.action and not outcome.is_error:
                record.audit_event(
                    block["id"],
                    outcome.action,
                    outcome.target or tool.name,
                    rationale=reply.text or None,
                    data={"tool": tool.name, **outcome.data},
                )
        return results

    def _finish(self, record: StepRecord, outcome: Outcome | None) -> None:
        quest, n = record.quest, record.step
        if outcome is not None:
            record.audit_event(
                "finished",
                f"quest.{outcome.status}",
                f"quest:{quest.id}",
                rationale=outcome.reason,
                data=event_data(result_chars=len(outcome.result) if outcome.result else None),
            )
            record.show(
                "quest.state",
                status=outcome.status,
                reason=outcome.reason,
                result=summarize(outcome.result) if outcome.result else None,
            )
        record.show("step.finished")
        events = [e.model_dump(mode="json") for e in record.audit]
        with self.db.tenant(quest.company_id) as tx:
            self._save_reply(tx, record)
            quests_store.finish_step(
                tx, quest.id, n, model=quest.model, tool_results=record.tool_results, events=events
            )
            if outcome is not None:
                quests_store.finish(
                    tx, quest.id, outcome.status, result=outcome.result, reason=outcome.reason
                )
        self._send(record.env, quest, record.audit, next_step=outcome is None)
        self.events.emit(record.live)
        log.info("step done", outcome=outcome.status if outcome else "continue")

    def _resend(self, env: Envelope[QuestStep], quest: Quest, last: Step) -> None:
        audit = [AuditEvent.model_validate(e) for e in last.events]
        self._send(
            env, quest, audit, next_step=not quest.finished and quest.step_claimed == last.step
        )
        log.info("step re-sent", step=last.step)

    def _send(
        self, env: Envelope[QuestStep], quest: Quest, audit: list[AuditEvent], *, next_step: bool
    ) -> None:
        if audit:
            self.publisher.publish(env.follow_up(AuditBatch(events=audit), actor=TED))
        if next_step:
            self.publisher.publish(
                env.follow_up(QuestStep(quest_id=quest.id, step=env.payload.step + 1), actor=TED)
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


def _tool_result(tool_use_id: str, content: str, is_error: bool) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id, "content": content}
    if is_error:
        block["is_error"] = True
    return block
