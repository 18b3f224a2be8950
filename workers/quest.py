"""A quest advances one step per message.

Each step: set the tenant from the envelope; in one transaction look at the quest and decide
what the message means; outside any transaction keep the charges of calls that never came
back, take the company's running slot and reserve the call's worst case with the guard; then
claim the step with one update that holds only if the quest is still as the look saw it.
Then one Claude call (unless a redelivered step already has its reply), settled at its real
cost; the tools it asked for; the step persisted with the audit events it produced, in one
statement; and the next step enqueued (later, in the slow tier) or the quest finished. A step
is a coroutine on the worker's event loop: while it waits on Claude or a provider it holds no
thread and no pooled connection, only its frame and the call's HTTP stream. Nothing waits
between steps or sleeps in one. A redelivery that finds the step done re-sends exactly what it
sent instead of redoing anything.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import structlog

from guard import Limits, PriceTable, Usage
from messages import AuditBatch, AuditEvent, BadMessage, Envelope, QuestStep
from runtime import logs, sentry
from store import Database, TenantTx, quest_look
from store import charges as charges_store
from store import quests as quests_store
from store.charges import Charge
from store.quests import Quest, Reply, Step
from workers import worker_metrics
from workers.call_scope import CallScope, CancelWatch, Interrupted
from workers.claude import (
    Claude,
    ClaudeRejected,
    ClaudeReply,
    ClaudeRequest,
    ClaudeSpendLimit,
    ClaudeUnavailable,
    Progress,
    Sent,
)
from workers.context_window import TooLong
from workers.ending import Ending, QuestEnding
from workers.errors import QuestCancelled, QuestFailed, QuestHalted, TryLater
from workers.events import QuestEvents, summarize
from workers.lease import StepLeases
from workers.prompt import Prepared, Prompts
from workers.publisher import QueuePublisher
from workers.step import (
    STALE_CLAIM_AFTER,
    TED,
    Decision,
    Outcome,
    StepRecord,
    cancelled,
    decide,
    spend_of,
    tool_result,
)
from workers.step_budget import (
    SCOPE_WORDS,
    Admitted,
    Counted,
    CountFirst,
    Delay,
    Ledger,
    Settlement,
    StepBudget,
)
from workers.tools import Toolbox, ToolCall, Tools, bounded
from workers.waits import WaitClock

log = structlog.get_logger(__name__)

CONTINUE = frozenset({"tool_use", "pause_turn"})
SUCCEED = frozenset({"end_turn", "stop_sequence"})
FAIL_REASONS = {
    "max_tokens": "Claude's reply hit max_tokens before finishing",
    "refusal": "Claude declined to continue this quest",
    "model_context_window_exceeded": "the quest's transcript exceeded the model's context window",
}


@dataclass(frozen=True)
class Ready:
    """The step is claimed. ``tools``: what this company's quest may use; ``admitted``: its
    reserved call (None when the reply is already stored); ``ended``: the quest ends before
    any call."""

    record: StepRecord
    limits: Limits
    history: list[Step]
    tools: Tools
    admitted: Admitted | None = None
    ended: Outcome | None = None


@dataclass(frozen=True)
class Skip:
    reason: str


@dataclass(frozen=True)
class Resend:
    quest: Quest
    last: Step


@dataclass(frozen=True)
class Look:
    """What a step found, read without a lock. ``request``: the Claude call to admit (None
    when there is none: a cancel was asked, or the reply is stored)."""

    quest: Quest
    history: list[Step]
    limits: Limits
    charges: list[Charge]
    tools: Tools
    request: ClaudeRequest | None


@dataclass(frozen=True)
class Moved:
    """The quest changed between the look and the claim (a cancel came, say): look again."""


Plan = Ready | Skip | Resend | Delay
Admission = Admitted | Delay | Outcome | None  # an Outcome: the quest ends instead
Outbox = list[Callable[[], Awaitable[None]]]
# How a step ends its quest: not at all, with this outcome, or as the quest's row reads when
# the step is done (a cancel: who asked and why).
Ended = Outcome | Callable[[Quest], Outcome] | None
CLAIM_TRIES = 3


class QuestRunner:
    def __init__(
        self,
        *,
        db: Database,
        publisher: QueuePublisher,
        claude: Claude,
        toolbox: Toolbox,
        prices: PriceTable,
        budget: StepBudget,
        events: QuestEvents,
        prompts: Prompts,
        max_steps: int,
        cancels: CancelWatch | None = None,
        leases: StepLeases | None = None,
        stale_claim_after: timedelta = STALE_CLAIM_AFTER,
        claude_outage_max: timedelta = timedelta(seconds=300),
        claude_waits: WaitClock | None = None,
        control_db: Database | None = None,
    ) -> None:
        """``claude_waits``: when each step's Claude outage began; without it a step's wait
        is bounded from its latest failure only. ``control_db``: where a step cut by a cancel
        ends its quest: a cancel is control work, never queued behind other steps for a
        connection of ``db``."""
        self.db = db
        self.control_db = control_db or db
        self.publisher = publisher
        self.claude = claude
        self.toolbox = toolbox
        self.prices = prices
        self.budget = budget
        self.events = events
        self.prompts = prompts
        self.max_steps = max_steps
        self.cancels = cancels
        self.leases = leases
        self.stale_claim_after = stale_claim_after
        self.claude_outage_max = claude_outage_max
        self.claude_waits = claude_waits
        self.ending = QuestEnding(publisher, events, budget)

    async def run(self, env: Envelope[QuestStep], holder: str) -> None:
        """Run the step under the quest's lease; what it sends goes out once the lease is
        released, so the next step is never turned away by this one's lease."""
        outbox: Outbox = []
        lease = self.leases.hold(env.payload.quest_id) if self.leases else contextlib.nullcontext()
        async with lease:
            await self._run(env, holder, outbox)
        for send in outbox:
            await send()

    async def _run(self, env: Envelope[QuestStep], holder: str, outbox: Outbox) -> None:
        logs.bind(quest_id=str(env.payload.quest_id), step=env.payload.step)
        plan = await self._plan(env, holder)
        if isinstance(plan, Skip):
            worker_metrics.STEPS.labels("skipped").inc()
            log.info("step skipped", reason=plan.reason)
        elif isinstance(plan, Resend):
            audit = [AuditEvent.model_validate(e) for e in plan.last.events]
            again = not plan.quest.finished and plan.quest.step_claimed == plan.last.step
            resend = plan.quest
            outbox.append(lambda: self._send(env, resend, audit, next_step=again))
            worker_metrics.STEPS.labels("resent").inc()
            log.info("step re-sent")
        elif isinstance(plan, Delay):
            delay = plan.ms
            outbox.append(
                lambda: self.publisher.publish(
                    env.follow_up(env.payload, actor=TED), delay_ms=delay
                )
            )
            worker_metrics.STEPS.labels("delayed").inc()
            log.info("step delayed", delay_ms=plan.ms, reason=plan.reason)
        else:
            await self._execute(plan, outbox)

    # -- the claim: look, admit, claim --------------------------------------------------------

    async def _plan(self, env: Envelope[QuestStep], holder: str) -> Plan:
        """Look at the quest (one transaction, no lock), admit its call with the guard (Redis,
        and the API's token count if needed: no transaction open), then claim the step with
        one conditional update, if the quest has not moved meanwhile. No lock waits on Redis or
        on the network, so a cancel's UPDATE never waits on a step's admission."""
        for _ in range(CLAIM_TRIES):
            plan = await self._try_plan(env, holder)
            if not isinstance(plan, Moved):
                return plan
        raise TryLater("the quest kept changing while its step was claimed", retry_after_ms=1_000)

    async def _try_plan(self, env: Envelope[QuestStep], holder: str) -> Plan | Moved:
        company, n = env.company_id, env.payload.step
        look = await self.db.in_tenant(company, lambda tx: self._look(tx, env, holder))
        if isinstance(look, Skip | Resend):
            return look
        kept = await self.budget.keep_abandoned(self.db, look.quest, look.charges, look.limits)
        worker_metrics.spent(look.quest.model, kept)
        ledger = Ledger(self.db, look.quest, look.charges if self.leases else None)
        admission = await self._admit(look, ledger, n)
        plan = await self.db.in_tenant(
            company, lambda tx: self._claim(tx, env, holder, look, admission)
        )
        if isinstance(plan, Moved):
            await self._give_back(ledger, n, admission, look.limits)
        return plan

    async def _give_back(
        self, ledger: Ledger, n: int, admission: Admission, limits: Limits
    ) -> None:
        """The claim did not happen: release the call's reservation, and the running slot
        (a cancel that ended the quest meanwhile released it before this step took it; a
        quest that goes on takes it again on the next look)."""
        if isinstance(admission, Admitted):
            await self.budget.withdraw(ledger, n, admission, limits)
        await self.budget.release(ledger.quest)

    async def _look(
        self, tx: TenantTx, env: Envelope[QuestStep], holder: str
    ) -> Look | Skip | Resend:
        n = env.payload.step
        found = await quest_look.look(tx, env.payload.quest_id)
        if found is None:
            raise BadMessage("no such quest for this company")
        quest, history = found.quest, found.steps
        decision, why = decide(
            quest,
            n,
            holder,
            now=datetime.now(UTC),
            stale_after=self.stale_claim_after,
            exclusive=self.leases is not None,
        )
        if decision is Decision.drop:
            return Skip(why)
        if decision is Decision.resend:
            return Resend(quest, history[-1])
        limits, charges = self.budget.limits_from(found.limits), found.charges
        if quest.cancel_requested_at is not None:  # asked while no worker held the quest
            return Look(quest, history, limits, charges, self.toolbox.for_company(set()), None)
        tools = self.toolbox.for_company(found.integrations)
        current = history[-1] if history and history[-1].step == n else None
        if current is not None and current.content is not None:  # the reply is stored: resume
            return Look(quest, history, limits, charges, tools, None)
        request = self.prompts.whole(
            quest.model,
            found.company_name,
            quest.company_id,
            quest.goal,
            [s for s in history if s.step < n],
            tools.schemas(),
        )
        return Look(quest, history, limits, charges, tools, request)

    async def _admit(self, look: Look, ledger: Ledger, n: int) -> Admission:
        """The running slot and the call's reservation, or a delay, or the quest's end (its
        money is gone, or its model cannot be priced)."""
        if look.request is None:
            return None
        prepared = await self._prepare(look)
        if isinstance(prepared, TooLong):
            return Outcome("failed", reason=prepared.reason)
        request, attempts = prepared.request, sum(1 for c in look.charges if c.step == n)
        counted = None if prepared.counted is None else Counted(prepared.counted)
        try:
            admitted = await self.budget.admit(ledger, n, request, attempts, look.limits, counted)
            if isinstance(admitted, CountFirst):
                counted = await self._count(look.quest.id, admitted.request)
                admitted = await self.budget.admit(
                    ledger, n, request, attempts, look.limits, counted
                )
        except QuestFailed as exc:
            return Outcome("failed", reason=str(exc))
        except QuestHalted as exc:
            return Outcome("halted", reason=str(exc))
        if isinstance(admitted, CountFirst):  # an admission given its count never asks again
            raise RuntimeError("the step's admission asked twice for the token count")
        return admitted

    async def _prepare(self, look: Look) -> Prepared | TooLong:
        """The look's request fitted to the model's window and marked for the prompt cache;
        a count of its tokens, if fitting asked for one, is cut by a cancel like any call."""
        assert look.request is not None
        async with self._watch(look.quest.id) as scope:
            try:
                return await scope.cut(
                    self.prompts.prepare(look.request, look.history, datetime.now(UTC))
                )
            except Interrupted:  # cancelled: the claim sees it and ends the quest
                return Prepared(look.request)

    async def _count(self, quest_id: UUID, request: ClaudeRequest) -> Counted:
        async with self._watch(quest_id) as scope:
            try:
                return await scope.cut(self.budget.count(request))
            except Interrupted:  # cancelled: the claim sees it and ends the quest
                return Counted(None)

    async def _claim(
        self, tx: TenantTx, env: Envelope[QuestStep], holder: str, look: Look, admission: Admission
    ) -> Plan | Moved:
        if isinstance(admission, Delay):
            moved = not await quests_store.touch_as_seen(tx, look.quest)  # waiting, not lost
            return Moved() if moved else admission
        admitted = admission if isinstance(admission, Admitted) else None
        charge = self.budget.charge_of(look.quest, admitted) if admitted else None
        quest = await quests_store.claim_step(tx, look.quest, env.payload.step, holder, charge)
        if quest is None:  # a cancel came, or the quest moved on, since the look
            return Moved()
        ended = admission if isinstance(admission, Outcome) else None
        if quest.cancel_requested_at is not None:
            ended = cancelled(quest)
        return Ready(StepRecord(env, quest), look.limits, look.history, look.tools, admitted, ended)

    # -- the step --------------------------------------------------------------------------

    async def _execute(self, ready: Ready, outbox: Outbox) -> None:
        record, quest = ready.record, ready.record.quest
        if record.step == 1:
            record.show("quest.state", status="running")
            record.audit_event(
                "started",
                "quest.started",
                f"quest:{quest.id}",
                data={"goal_chars": len(quest.goal)},
            )
        record.show(
            "step.started", reserved_usd_micros=ready.admitted.reserved if ready.admitted else None
        )
        await self.events.emit(record.live)
        record.live.clear()
        outcome: Ended
        try:
            async with self._watch(quest.id) as scope:
                outcome = ready.ended or await self._advance(ready, scope)
        except QuestCancelled:
            outcome = cancelled  # as the quest's row reads when the step ends it
        except QuestFailed as exc:
            outcome = Outcome("failed", reason=str(exc))
        except QuestHalted as exc:
            outcome = Outcome("halted", reason=str(exc))
        except TryLater as exc:  # the step keeps its claim; the broker retries this message
            record.show("step.waiting", reason=str(exc), retry_in_ms=exc.retry_after_ms)
            await self.events.emit(record.live)
            if record.audit:  # what this attempt did and charged (sent again when it succeeds)
                await self.publisher.publish(
                    record.env.follow_up(AuditBatch(events=list(record.audit)), actor=TED)
                )
            raise
        current = [s for s in ready.history if s.step < record.step or record.called is None]
        record.spend = spend_of(current, record.called)
        await self._finish(record, outcome, outbox)

    @contextlib.asynccontextmanager
    async def _watch(self, quest_id: UUID) -> AsyncIterator[CallScope]:
        """The step's call scope: its calls are cut at once if the quest is cancelled."""
        if self.cancels is None:
            yield CallScope(quest_id)
            return
        async with self.cancels.watching(quest_id) as scope:
            yield scope

    async def _advance(self, ready: Ready, scope: CallScope) -> Outcome | None:
        record, n = ready.record, ready.record.step
        if ready.admitted is None:
            current = ready.history[-1]
            reply = ClaudeReply(
                "", current.model, current.content or [], current.stop_reason, current.usage or {}
            )
        else:
            reply = await self._call(ready, ready.admitted, scope)
        stop = reply.stop_reason
        if stop == "tool_use":
            # before any tool runs: a retry resumes from it
            await self.db.in_tenant(
                record.quest.company_id, lambda tx: self._save_reply(tx, record)
            )
            record.tool_results = await self._run_tools(record, reply, ready.tools, scope)
        if stop in SUCCEED:
            return Outcome("succeeded", result=reply.text)
        if stop in CONTINUE:
            if n >= self.max_steps:
                return Outcome("failed", reason=f"step limit reached ({self.max_steps} steps)")
            return None
        return Outcome(
            "failed", reason=FAIL_REASONS.get(stop or "", f"unexpected stop reason {stop!r}")
        )

    async def _call(self, ready: Ready, admitted: Admitted, scope: CallScope) -> ClaudeReply:
        """One Claude call, settled in the guard at once: at its real cost; for a call that
        failed, at what it may have cost (``_failed_cost``)."""
        record, limits, quest = ready.record, ready.limits, ready.record.quest
        progress = Progress()
        try:
            with worker_metrics.waiting("claude"):
                reply = await scope.cut(self.claude.create(admitted.request, progress))
        except ClaudeUnavailable as exc:
            worker_metrics.CLAUDE_CALLS.labels(quest.model, "unavailable").inc()
            settle = await self._settle_failed(record, admitted, limits, exc.sent, exc.progress)
            await self.db.in_tenant(quest.company_id, settle)
            raise await self._wait_or_give_up(record, admitted, exc) from None
        except (ClaudeRejected, ClaudeSpendLimit) as exc:
            rejected = isinstance(exc, ClaudeRejected)
            worker_metrics.CLAUDE_CALLS.labels(
                quest.model, "refused" if rejected else "halted"
            ).inc()
            settle = await self._settle_failed(record, admitted, limits, exc.sent, exc.progress)
            await self.db.in_tenant(quest.company_id, settle)
            # Ours to fix, or the account's: one event per kind, not one per quest.
            if isinstance(exc, ClaudeRejected):
                sentry.report(
                    log,
                    "Claude refused a quest's request",
                    group=("claude-rejected", exc.error_type),
                    status=exc.status,
                    error_type=exc.error_type,
                    model=quest.model,
                )
            else:
                sentry.report(
                    log, "the Anthropic spend limit halted a quest", group=("claude-spend-limit",)
                )
            raise
        except Interrupted:  # cut by a cancel: its charge is settled as the step ends the quest
            worker_metrics.CLAUDE_CALLS.labels(quest.model, "cancelled").inc()
            settle = await self._settle_failed(record, admitted, limits, progress.sent, progress)
            record.unsettled_charge = settle
            raise QuestCancelled() from None
        if self.claude_waits and admitted.attempt > 1:
            await self.claude_waits.done(f"{quest.id}:{record.step}")
        cost = self.prices.cost(quest.model, Usage.from_api(reply.usage))
        worker_metrics.claude_reply(quest.model, reply.usage, cost)
        worker_metrics.spent(quest.model, cost)
        settlement = await self.budget.settle(quest, admitted, cost, limits)
        record.unsaved_reply = (reply, cost, admitted.charge_key)
        record.called = (reply.usage, cost)
        self._note_guard(record, settlement, limits)
        record.show(
            "claude.replied",
            stop_reason=reply.stop_reason,
            text=summarize(reply.text) or None,
            tools=[t["name"] for t in reply.tool_uses] or None,
            cost_usd_micros=cost,
            quest_cost_usd_micros=next(
                (lv.spent for lv in settlement.levels if lv.scope.name == "quest"), None
            ),
            input_tokens=reply.usage.get("input_tokens"),
            cache_write_tokens=reply.usage.get("cache_creation_input_tokens") or None,
            cache_read_tokens=reply.usage.get("cache_read_input_tokens") or None,
            output_tokens=reply.usage.get("output_tokens"),
        )
        return reply

    async def _wait_or_give_up(
        self, record: StepRecord, admitted: Admitted, exc: ClaudeUnavailable
    ) -> Exception:
        """Try again after the API's Retry-After or a backoff that doubles per attempt,
        whichever is later, within the outage bound counted from the step's first failed
        call; past it, the quest fails ``claude unavailable``."""
        bound_s = self.claude_outage_max.total_seconds()
        now = time.time()
        since = (
            await self.claude_waits.waiting_since(
                f"{record.quest.id}:{record.step}", bound_s=bound_s
            )
            if self.claude_waits
            else now
        )
        left_ms = int((since + bound_s - now) * 1000)
        if left_ms <= 0:
            reason = f"claude unavailable: {exc} (for {int(now - since)} s)"
            sentry.report(log, "a quest failed: Claude unavailable", group=("claude-unavailable",))
            return QuestFailed(reason)
        backoff = min(60_000, 500 * 2 ** min(admitted.attempt - 1, 7)) + random.randint(0, 250)
        wait = max(exc.retry_after_ms or 0, backoff)
        return ClaudeUnavailable(
            f"{exc}; giving up in {left_ms // 1000} s",
            sent=exc.sent,
            progress=exc.progress,
            retry_after_ms=min(wait, left_ms + 100),
        )

    def _failed_cost(self, admitted: Admitted, sent: Sent, progress: Progress) -> tuple[int, str]:
        """What a failed call may have cost, and on what basis: nothing if it never reached
        the API or was answered with an error; its reservation if it was sent and never
        answered; if its stream began, the prompt as reported plus the output as reported (or,
        with no report of it, all it might have produced)."""
        if sent in (Sent.nothing, Sent.answered):
            return 0, f"not billed: {sent.value}"
        if sent is Sent.unanswered or progress.input_usage is None:
            return admitted.reserved, "the reservation: sent, never answered"
        output = progress.output_tokens
        reported = output is not None
        usage = Usage.from_api(
            {
                **progress.input_usage,
                "output_tokens": output if reported else admitted.request.max_tokens,
            }
        )
        cost = min(admitted.reserved, self.prices.cost(admitted.request.model, usage))
        if reported:
            return cost, "cut mid-stream: as the stream reported"
        return cost, "cut mid-stream: the prompt as reported, max_tokens of output"

    async def _settle_failed(
        self, record: StepRecord, admitted: Admitted, limits: Limits, sent: Sent, progress: Progress
    ) -> Callable[[TenantTx], Awaitable[Quest | None]]:
        """Settle a failed call in the guard and record its charge in the step's audit; what
        settles it in Postgres is returned, for the caller's transaction: with a charge to add,
        it reads the quest back as it then stands."""
        actual, basis = self._failed_cost(admitted, sent, progress)
        await self.budget.settle(record.quest, admitted, actual, limits)
        worker_metrics.spent(record.quest.model, actual)

        async def charge(tx: TenantTx) -> Quest | None:
            if actual == admitted.reserved and actual:
                await charges_store.keep(tx, admitted.charge_key)
            else:
                await charges_store.settle(tx, admitted.charge_key, actual, progress.input_usage)
            if not actual:  # nothing to add: no write (the caller reads the row if it needs it)
                return None
            return await quests_store.add_cost(tx, record.quest.id, actual)

        if actual:
            record.audit_event(
                f"charge:{admitted.attempt}",
                "claude.call_charged",
                f"quest:{record.quest.id}",
                rationale=f"a Claude call that did not complete was charged {basis}",
                data={"charged_usd_micros": actual, "basis": basis, "sent": sent.value},
            )
        return charge

    def _note_guard(self, record: StepRecord, settlement: Settlement, limits: Limits) -> None:
        """Tier crossings become one audit row and one live event each; the slow tier holds
        the next step back."""
        for level in settlement.crossings():
            scope = level.scope
            target = (
                f"quest:{record.quest.id}"
                if scope.name == "quest"
                else f"budget:{scope.name}:{scope.window}"
            )
            pct = level.spent * 100 // max(1, scope.cap)
            worker_metrics.TIER_CROSSINGS.labels(scope.name, level.tier.name).inc()
            record.audit_event(
                f"guard:{scope.name}:{level.tier.name}",
                f"guard.{level.tier.name}",
                target,
                rationale=f"spend reached {pct}% of the {SCOPE_WORDS[scope.name]}",
                data={
                    "spent_usd_micros": level.spent,
                    "cap_usd_micros": scope.cap,
                    "scope": scope.name,
                },
            )
            record.show(
                "guard.tier",
                scope=scope.name,
                tier=level.tier.name,
                spent_usd_micros=level.spent,
                cap_usd_micros=scope.cap,
            )
        record.next_delay_ms = self.budget.slow_delay_ms(settlement, limits)
        if record.next_delay_ms:  # only a scope in the slow tier or past it delays
            record.show("guard.slowed", delay_ms=record.next_delay_ms)

    async def _save_reply(self, tx: TenantTx, record: StepRecord) -> None:
        if record.unsaved_reply is None:
            return
        reply, cost, charge_key = record.unsaved_reply
        await quests_store.save_reply(
            tx,
            record.quest.id,
            record.step,
            model=record.quest.model,
            content=reply.content,
            stop_reason=reply.stop_reason,
            usage=reply.usage,
            cost_usd_micros=cost,
        )
        if charge_key is not None:
            await charges_store.settle(tx, charge_key, cost, reply.usage)
        record.unsaved_reply = None

    async def _run_tools(
        self, record: StepRecord, reply: ClaudeReply, tools: Tools, scope: CallScope
    ) -> list[dict[str, Any]]:
        quest = record.quest
        results = []
        for block in reply.tool_uses:
            if scope.cancelled.is_set():
                raise QuestCancelled()  # no tool call starts after a cancel
            tool = tools.get(block["name"])
            record.show("tool.called", tool=block["name"], tool_use_id=block["id"])
            await self.events.emit(record.live)
            record.live.clear()
            if tool is None:
                results.append(tool_result(block["id"], f"unknown tool {block['name']}", True))
                record.show("tool.finished", tool=block["name"], ok=False)
                continue
            call = ToolCall(
                quest.company_id,
                quest.id,
                record.step,
                block["id"],
                block.get("input") or {},
                origin_message_id=quest.origin_message_id,
            )
            try:
                with worker_metrics.waiting("provider"):
                    outcome = await scope.cut(tool.run(call))
            except Interrupted:
                raise QuestCancelled() from None
            outcome = bounded(outcome, self.prompts.policy.tool_result_max_chars)
            results.append(tool_result(block["id"], outcome.content, outcome.is_error))
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

    async def _finish(self, record: StepRecord, outcome: Ended, outbox: Outbox) -> None:
        """The step is done; with an ``outcome``, so is the quest (``workers.ending``): its
        ending goes out with the step's audit events and live events.

        A cancel ends the quest in one transaction on the control pool, which runs on its own
        loop (``workers.control_loop``): the cut call's charge, the row read for who cancelled
        and why (``outcome`` is then a function of the row), and the step with the quest's
        final state. Nothing in it touches this loop's clients."""
        quest, n = record.quest, record.step
        ending: Ending | None = None
        unsaved, record.unsaved_reply = record.unsaved_reply, None
        unsettled, record.unsettled_charge = record.unsettled_charge, None

        async def finish(tx: TenantTx) -> None:
            nonlocal ending
            now = await unsettled(tx) if unsettled is not None else None
            ended = outcome
            if callable(ended):
                ended = ended(now or await quests_store.get(tx, quest.id) or quest)
            record.show("step.finished")  # before the ending's quest.state: streams end there
            ending = self.ending.in_step(record, ended) if ended is not None else None
            reply = None
            if unsaved is not None:
                answer, cost, charge_key = unsaved
                reply = Reply(answer.content, answer.stop_reason, answer.usage, cost, charge_key)
            await quests_store.complete_step(
                tx, quest.id, n, model=quest.model, reply=reply,
                tool_results=record.tool_results,
                events=[e.model_dump(mode="json") for e in record.audit],
                final=ending.final if ending is not None else None,
            )  # fmt: skip

        cancel = callable(outcome) or (outcome is not None and outcome.status == "cancelled")
        await (self.control_db if cancel else self.db).in_tenant(quest.company_id, finish)
        audit, delay, goes_on = list(record.audit), record.next_delay_ms, ending is None
        outbox.append(
            lambda: self._send(record.env, quest, audit, next_step=goes_on, delay_ms=delay)
        )
        if ending is not None:
            await self.ending.ended(ending)
        worker_metrics.STEPS.labels("done").inc()
        await self.events.emit(record.live)
        log.info("step done", outcome=ending.outcome.status if ending else "continue")

    async def _send(
        self,
        env: Envelope[QuestStep],
        quest: Quest,
        audit: list[AuditEvent],
        *,
        next_step: bool,
        delay_ms: int = 0,
    ) -> None:
        if audit:
            await self.publisher.publish(env.follow_up(AuditBatch(events=audit), actor=TED))
        if next_step:
            step = QuestStep(quest_id=quest.id, step=env.payload.step + 1)
            await self.publisher.publish(env.follow_up(step, actor=TED), delay_ms=delay_ms or None)
