"""Submitting a quest: the row, then its first step on the queue.

Shared by the HTTP route and ``system2 quest submit``. The row is committed first, then the
first step is published and the row marked as enqueued. If the queue does not take it, the
row is deleted again and the caller is told so — nothing is claimed to be queued that is
not. If the submitter dies between the two, a retry with the same idempotency key publishes
the first step (a duplicate, should one exist, is dropped by the worker's step claim).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID, uuid4

from starlette.concurrency import run_in_threadpool

from guard import Admissions, Guard, Limits, PriceTable, Refused, Scope, UnpricedModel
from guard.pricing import packaged_prices
from guard.spend import window_bounds
from ingress.errors import SubmissionRefused, Throttled
from messages import Actor, Envelope, QuestStep
from messages.errors import PublishFailed
from messages.transport import Publisher
from store import Conflict, Database, TenantTx
from store import charges as charges_store
from store import quests as quests_store
from store.quests import NewQuest, Quest


@dataclass(frozen=True)
class QuestSpec:
    goal: str
    model: str
    max_usd_micros: int | None = None
    idempotency_key: str | None = None

    def request_hash(self) -> str:
        body = {"goal": self.goal, "model": self.model, "max_usd_micros": self.max_usd_micros}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


# The first step's prompt as the ingress bounds it from below, in tokens: none. The least a
# call can cost is the workers' rule (``PriceTable.least_call``: MIN_OUTPUT_TOKENS of output
# plus the prompt); the ingress must never put the prompt higher than a worker would. A
# worker reserves the first call by its byte bound (system prompt, goal and tool schemas as
# JSON bytes, always more than the goal's bytes) — but when that does not fit it asks the
# API for a token count (S2_GUARD_COUNT_TOKENS, on by default) and uses the count plus a
# margin, about a quarter of the bytes for a long English goal. Neither the goal's bytes nor
# its characters bound that count from below, and the system prompt and the tool schemas are
# the workers' (the ingress must not import them): so the prompt counts as nothing here, and
# the least refused is the output part alone. The ingress then never refuses a quest a worker
# would admit; one whose prompt alone tips its first call over is halted by the worker.
FIRST_CALL_INPUT_FLOOR = 0


WINDOW_WORDS = {"day": "daily", "month": "monthly"}


class BudgetExhausted(Throttled):
    """The company's daily or monthly budget is spent to its halt line, or so nearly that
    what is left is less than the least a call can cost (``least``, for ``model``): a quest
    created now would halt at its first step, so none is created until the window resets.

    Named after the window that resets last (when both are spent, the month); ``retry_after_s``
    is the seconds until then."""

    def __init__(
        self, spent: list[Refused], now: datetime, *, least: int = 1, model: str = ""
    ) -> None:
        resets = {r.scope.name: window_bounds(r.scope.name, now)[1] for r in spent}
        last = max(spent, key=lambda r: resets[r.scope.name]).scope
        self.window = last.name
        self.period = last.window
        self.resets_at = resets[last.name]
        self.windows = [r.scope.name for r in spent]
        which = " and ".join(
            f"{WINDOW_WORDS[r.scope.name]} budget ({r.scope.window})" for r in spent
        )
        many = len(spent) > 1
        if all(r.exhausted for r in spent):
            state = f"{'are' if many else 'is'} spent"
        else:
            state = (
                f"{'are' if many else 'is'} all but spent: "
                f"{' and '.join(usd(r.left) for r in spent)} left, less than the least one "
                f"call{f' to {model}' if model else ''} can cost ({usd(least)})"
            )
        super().__init__(
            f"the company's {which} {state}; "
            f"no quest can run until {self.resets_at:%Y-%m-%dT%H:%M:%SZ}",
            max(1, math.ceil((self.resets_at - now).total_seconds())),
            f"{WINDOW_WORDS[last.name]}_budget_exhausted",
        )


@dataclass(frozen=True)
class Gate:
    """The company's limits on new quests, checked when a new quest is about to be created:
    its ceiling and the quest's cap (the request itself: 422), its budgets, then its running
    quests and quest starts (the last one counts the start, so it comes after every check
    that may refuse).

    A cap or budget is measured against the least the quest's first Claude call can cost, by
    the workers' own rule (``least_first_call``): what a worker would halt at its first step
    is not created."""

    admissions: Admissions
    limits: Limits
    guard: Guard
    prices: PriceTable = field(default_factory=packaged_prices)

    async def check(self, tx: TenantTx, spec: QuestSpec) -> None:
        ceiling = self.limits.quest_ceiling
        if spec.max_usd_micros is not None and spec.max_usd_micros > ceiling:
            raise SubmissionRefused(
                f"max_usd may not exceed this company's ceiling of ${ceiling / 1e6:,.2f}"
            )
        least = self.least_first_call(spec.model)
        if least is not None:
            self.check_quest_cap(spec, least)
        await self.check_budgets(tx, least or 1, spec.model)
        company_id = tx.company_id
        now_ms = int(time.time() * 1000)
        running = await self.admissions.running(company_id, now_ms)
        if len(running) >= self.limits.max_running_quests:
            raise Throttled(
                f"{len(running)} quests of this company are running (the limit)",
                5,
                "too_many_running_quests",
            )
        started = await self.admissions.start(company_id, self.limits.quests_per_minute, now_ms)
        if not started.ok:
            raise Throttled(started.reason, started.retry_after_s, "too_many_quest_starts")

    def least_first_call(self, model: str) -> int | None:
        """The least the quest's first call can be reserved at, as a worker's step reckons it
        (``PriceTable.least_call``) with the prompt bounded from below (FIRST_CALL_INPUT_FLOOR).
        None for a model without a price: not refused here, its first step fails the quest
        with the missing price named, as before."""
        try:
            return self.prices.least_call(model, FIRST_CALL_INPUT_FLOOR)
        except UnpricedModel:
            return None

    def check_quest_cap(self, spec: QuestSpec, least: int) -> None:
        """Refuse a quest whose own cap (its ``max_usd``, else the company's quest cap) halts
        before its first call: a worker reserves that call against the cap's halt line and
        halts the quest when even the least call does not fit. No retry can change that, so
        it is the request that is refused (422), not the moment."""
        limits = self.limits
        cap = limits.quest_cap_for(spec.max_usd_micros)
        if least * 100 <= cap * limits.halt_pct:  # the guard's test, exactly (reserve.lua)
            return
        line = "" if limits.halt_pct == 100 else f" (halted at {limits.halt_pct}% of it)"
        what = (
            f"the quest's max_usd of {usd(cap)}{line}"
            if spec.max_usd_micros is not None
            else f"this company's quest cap of {usd(cap)}{line}, which applies when max_usd "
            "is not given,"
        )
        if least * 100 <= limits.quest_ceiling * limits.halt_pct:
            fix = f"ask for a larger max_usd (at most {usd(limits.quest_ceiling)})"
        else:
            fix = f"not even this company's ceiling of {usd(limits.quest_ceiling)} allows one"
        raise SubmissionRefused(
            f"{what} is less than the least one call to {spec.model} can cost "
            f"({usd(least)}): it would halt at its first step; {fix}"
        )

    async def check_budgets(self, tx: TenantTx, least: int = 1, model: str = "") -> None:
        """Refuse when a company budget window has less left before its halt line than
        ``least`` (the least a call can cost), read as the workers' guard reads it (its Redis
        counters, the ledger when Redis lost them). An early, honest refusal, not the
        enforcement: a quest admitted just above the line is still held to it by each step's
        reservation."""
        now = datetime.now(UTC)

        async def ledger(scope: Scope) -> tuple[int, int]:
            return await charges_store.window_totals(tx, *window_bounds(scope.name, now))

        spent = await self.guard.exhausted_windows(
            tx.company_id, self.limits, now, ledger=ledger, least=least
        )
        if spent:
            raise BudgetExhausted(spent, now, least=least, model=model)


def usd(micros: int) -> str:
    """Micro-USD in dollars, exactly: 2_560 -> '$0.00256', 1_000_000 -> '$1.00'."""
    whole, frac = divmod(micros, 1_000_000)
    return f"${whole:,}.{f'{frac:06d}'.rstrip('0').ljust(2, '0')}"


async def create_quest(
    tx: TenantTx,
    actor: Actor,
    spec: QuestSpec,
    *,
    correlation_id: UUID | None = None,
    gate: Gate | None = None,
) -> tuple[Quest, bool]:
    """Insert the quest (or find the one this idempotency key made). True if its first step
    must now be published. A new quest passes ``gate`` first; if it refuses, the caller's
    transaction rolls the row back."""
    new = NewQuest(
        id=uuid4(),
        goal=spec.goal,
        model=spec.model,
        max_usd_micros=spec.max_usd_micros,
        created_by=actor.ref,
        correlation_id=correlation_id or uuid4(),
        origin_message_id=uuid4(),
        idempotency_key=spec.idempotency_key,
        request_hash=spec.request_hash() if spec.idempotency_key else None,
    )
    quest, stored_hash, created = await quests_store.create(tx, new)
    if not created and stored_hash != new.request_hash:
        raise Conflict("this Idempotency-Key was already used for a different request")
    if created and gate is not None:
        await gate.check(tx, spec)
    return quest, created or quest.needs_first_step


async def enqueue_first_step(
    db: Database, publisher: Publisher, quest: Quest, actor: Actor
) -> None:
    """Publish the quest's first step (in a worker thread: the publisher blocks), then mark
    the row as enqueued — or delete it again if the queue did not take the step."""
    envelope = Envelope[QuestStep](
        message_id=quest.origin_message_id,
        company_id=quest.company_id,
        actor=actor,
        correlation_id=quest.correlation_id,
        payload=QuestStep(quest_id=quest.id, step=1),
    )
    try:
        await run_in_threadpool(publisher.publish, envelope)
    except PublishFailed:
        async with db.tenant(quest.company_id) as tx:
            await quests_store.delete_unstarted(tx, quest.id)
        raise
    async with db.tenant(quest.company_id) as tx:
        await quests_store.mark_first_step_enqueued(tx, quest.id)
