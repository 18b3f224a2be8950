"""A step's dealings with the guard: admit it, reserve its Claude call, settle it after.

Order matters for money. The reservation is made in Redis, outside any transaction (no row
lock waits on Redis), before the ledger row is written in the transaction that claims the
step; a crash in between leaves a reservation that the redelivered step finds again by its
charge key. After the call, Redis is settled first and the ledger second: a crash in between
leaves the ledger *open*, which the next attempt *keeps* at the reserved amount — an
over-count, never an under-count. Keeping is the same two steps: Redis, then the ledger.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from guard import Admissions, Guard, Limits, PriceTable, Refused, Reserved, Scope, ScopeLevel
from guard.errors import UnpricedModel
from guard.pricing import MIN_OUTPUT_TOKENS
from guard.spend import window_bounds
from store import Database, TenantTx
from store import charges as charges_store
from store import limits as limits_store
from store import quests as quests_store
from store.charges import Charge
from store.limits import LimitOverrides
from store.quests import NewCharge, Quest
from workers.claude import ClaudeRequest
from workers.errors import QuestFailed, QuestHalted

SLOT_RECHECK_MS = 1_500


@dataclass(frozen=True)
class Admitted:
    """The step may call Claude: its reservation, under ``charge_key``."""

    request: ClaudeRequest
    charge_key: str
    reserved: int
    scopes: list[Scope]
    attempt: int = 1  # of this step's Claude call, from 1
    at: datetime = field(default_factory=lambda: datetime.now(UTC))  # picked the windows


@dataclass(frozen=True)
class CountFirst:
    """The call does not fit by its byte bound: count its tokens with the API, outside the
    claim transaction (a network call must not hold the quest's row), then admit again."""

    request: ClaudeRequest


@dataclass(frozen=True)
class Counted:
    """The API's count of a request's input tokens, asked once: None if it did not answer."""

    tokens: int | None


@dataclass(frozen=True)
class Delay:
    """Not now: publish the step again after ``ms``; nothing was reserved or claimed."""

    ms: int
    reason: str


@dataclass
class Settlement:
    levels: list[ScopeLevel] = field(default_factory=list)

    def crossings(self) -> list[ScopeLevel]:
        return [lv for lv in self.levels if lv.crossed]


@dataclass(frozen=True)
class _Call:
    """A Claude call as admission prices it: the request, the prompt's tokens it assumes (the
    byte bound or the API's count) and its worst case in micro-USD."""

    request: ClaudeRequest
    input_tokens: int
    amount: int


@dataclass(frozen=True)
class Ledger:
    """A quest's charges in Postgres, each read or write in a short transaction of its own:
    admission runs between transactions, so that no row lock waits on Redis.

    ``seen``: the quest's charges as its step looked at them, when that step holds the
    quest's lease (no other step adds a charge meanwhile) and has kept every open one
    (``StepBudget.keep_abandoned``). The quest's counters, which Redis has not yet for a
    quest's first call, are then rebuilt from them without another transaction."""

    db: Database
    quest: Quest
    seen: list[Charge] | None = None

    async def totals(self, scope: Scope, at: datetime) -> tuple[int, int]:
        """``scope``'s (spent, reserved), for the guard to rebuild its counters when Redis
        has lost them."""
        quest = self.quest
        if scope.name == "quest" and self.seen is not None:
            kept = sum(c.reserved_micros for c in self.seen if c.status == "open")
            return charges_store.totals(self.seen)[0] + kept, 0
        if scope.name == "quest":
            charges = await self.db.in_tenant(
                quest.company_id, lambda tx: charges_store.for_quest(tx, quest.id)
            )
            return charges_store.totals(charges)
        start, end = window_bounds(scope.name, at)
        return await self.db.in_tenant(
            quest.company_id, lambda tx: charges_store.window_totals(tx, start, end)
        )

    async def settled_at_zero(
        self, step: int, charge_key: str, reserved: int, at: datetime
    ) -> None:
        """A reservation released unused: its charge key is spent, the next attempt takes
        a new one."""
        quest = self.quest

        async def record(tx: TenantTx) -> None:
            await charges_store.open_charge(
                tx, quest.id, step, charge_key, quest.model, reserved, created_at=at
            )
            await charges_store.settle(tx, charge_key, 0, None)

        await self.db.in_tenant(quest.company_id, record)


@dataclass(frozen=True)
class _Attempt:
    """One attempt at a step's Claude call: where it is recorded and what it is charged to."""

    ledger: Ledger
    step: int
    number: int  # of this step's Claude call, from 1
    limits: Limits
    at: datetime
    scopes: list[Scope]
    charge_key: str

    @property
    def quest(self) -> Quest:
        return self.ledger.quest


class StepBudget:
    def __init__(
        self,
        guard: Guard,
        admissions: Admissions,
        prices: PriceTable,
        *,
        defaults: Limits,
        slot_ttl_ms: int,
        slow_min_ms: int,
        slow_max_ms: int,
        count_tokens: Callable[[ClaudeRequest], Awaitable[int | None]] | None = None,
    ) -> None:
        """``count_tokens``: the API's count of a request's input tokens; without it (or when
        it fails) the reservation uses a byte bound, which is safe but about four times high."""
        self.count_tokens = count_tokens
        self.guard = guard
        self.admissions = admissions
        self.prices = prices
        self.defaults = defaults
        self.slot_ttl_ms = slot_ttl_ms
        self.slow_min_ms = slow_min_ms
        self.slow_max_ms = slow_max_ms

    async def limits(self, tx: TenantTx) -> Limits:
        return self.limits_from(await limits_store.get(tx))

    def limits_from(self, overrides: LimitOverrides) -> Limits:
        """The defaults with a company's overrides."""
        return replace(self.defaults, **overrides.changes())

    def quest_cap(self, quest: Quest, limits: Limits) -> int:
        return limits.quest_cap_for(quest.max_usd_micros)

    async def keep_abandoned(
        self, db: Database, quest: Quest, charges: list[Charge], limits: Limits
    ) -> int:
        """Calls whose outcome never came back (their worker died): count their whole
        reservation as spent, in Redis first, then in the ledger (its own transaction, with
        the quest's cost). Returns the amount newly kept."""
        abandoned = [c for c in charges if c.status == "open"]
        if not abandoned:
            return 0
        for c in abandoned:
            scopes = self.guard.scopes(
                quest.company_id, quest.id, self.quest_cap(quest, limits), limits, c.created_at
            )
            await self.guard.settle(
                quest.company_id,
                c.charge_key,
                amount=c.reserved_micros,
                actual=c.reserved_micros,
                scopes=scopes,
                limits=limits,
            )

        async def keep(tx: TenantTx) -> int:
            kept = 0
            for c in abandoned:
                if await charges_store.keep(tx, c.charge_key):
                    kept += c.reserved_micros
            if kept:
                await quests_store.add_cost(tx, quest.id, kept)
            return kept

        return await db.in_tenant(quest.company_id, keep)

    async def admit(
        self,
        ledger: Ledger,
        step: int,
        request: ClaudeRequest,
        attempts: int,
        limits: Limits,
        counted: Counted | None = None,
    ) -> Admitted | Delay | CountFirst:
        """Take the quest's running slot and reserve the call's worst case, or say why not
        (or ask for the API's token count first, when ``counted`` is None and one would help).
        No transaction is open meanwhile: the ledger row (``charge_of``) is written in the
        claim's transaction.

        Raises ``QuestHalted`` when the money is gone and ``QuestFailed`` for an unpriced model.
        """
        quest = ledger.quest
        now = datetime.now(UTC)
        waiting = await self._take_slot(quest, limits)
        if waiting is not None:
            return waiting
        # The byte bound costs nothing; the API's token count (a round trip) is asked only
        # when the bound does not fit, or is above what an earlier delivery reserved.
        call = self._priced(quest, request, request.input_bound())
        attempt = self._attempt(ledger, step, attempts + 1, limits, now)
        held = await self._reserve(attempt, call.amount)
        recounted = await self._with_counted_tokens(attempt, call, held, counted)
        if isinstance(recounted, CountFirst):
            return recounted
        call, held = recounted
        if isinstance(held, Refused):
            fitted = await self._fit_to_what_is_left(attempt, call, held)
        else:
            fitted = await self._reuse_earlier_reservation(attempt, call, held)
        if isinstance(fitted, Delay):
            return fitted
        call, held = fitted
        return Admitted(
            call.request, attempt.charge_key, held.amount, attempt.scopes, attempt.number, now
        )

    # -- admission, step by step ------------------------------------------------------------

    def _priced(self, quest: Quest, request: ClaudeRequest, input_tokens: int) -> _Call:
        """The call's worst case if its prompt is ``input_tokens`` long: every prompt token at
        the cache-write rate of its breakpoints' TTL if it may write the cache (a write costs
        more than plain input), so the reservation stays a true upper bound."""
        amount = self.prices.worst_case(
            quest.model,
            input_tokens,
            request.max_tokens,
            cache_writes=request.cache_writes or False,
        )
        return _Call(request, input_tokens, amount)

    def _attempt(
        self, ledger: Ledger, step: int, number: int, limits: Limits, at: datetime
    ) -> _Attempt:
        """Attempt ``number`` of the step's call: its own charge key, so that a retry is
        charged apart and a redelivery of this attempt finds its reservation again."""
        quest = ledger.quest
        scopes = self.guard.scopes(
            quest.company_id, quest.id, self.quest_cap(quest, limits), limits, at
        )
        charge_key = f"{quest.id}:{step}:{number}"
        return _Attempt(ledger, step, number, limits, at, scopes, charge_key)

    async def _reserve(self, attempt: _Attempt, amount: int) -> Reserved | Refused:
        """Reserve ``amount`` under the attempt's charge key against all its scopes at once."""
        return await self.guard.reserve(
            attempt.quest.company_id,
            attempt.charge_key,
            amount,
            attempt.scopes,
            attempt.limits,
            ledger=lambda scope: attempt.ledger.totals(scope, attempt.at),
        )

    async def _with_counted_tokens(
        self, attempt: _Attempt, call: _Call, held: Reserved | Refused, counted: Counted | None
    ) -> tuple[_Call, Reserved | Refused] | CountFirst:
        """The byte bound is about four times high: when the call does not fit by it (refused,
        or above what an earlier delivery reserved), price it by the API's count instead,
        asking for the count first when it was not given; if it was refused, reserve again."""
        if not _short_of(held, call.amount):
            return call, held
        tokens = self._by_count(call.request, counted)
        if isinstance(tokens, CountFirst):
            return tokens
        if tokens is None or tokens >= call.input_tokens:
            return call, held
        call = self._priced(attempt.quest, call.request, tokens)
        if isinstance(held, Refused):
            held = await self._reserve(attempt, call.amount)
        return call, held

    async def _fit_to_what_is_left(
        self, attempt: _Attempt, call: _Call, refused: Refused
    ) -> tuple[_Call, Reserved] | Delay:
        """Refused: ask for fewer output tokens so the call fits what the scope has left, and
        reserve that; when even the least call does not fit, wait or halt (``_refusal``)."""
        smaller = self._smaller(call, refused.available)
        if smaller is None:
            return self._refusal(refused)
        held = await self._reserve(attempt, smaller.amount)
        if isinstance(held, Refused):
            return self._refusal(held)
        return smaller, held

    async def _reuse_earlier_reservation(
        self, attempt: _Attempt, call: _Call, held: Reserved
    ) -> tuple[_Call, Reserved] | Delay:
        """A duplicate is an earlier delivery's reservation under this charge key; that
        delivery died before its ledger row was committed, so its call was never made. It may
        have shrunk its call: this one must fit what it reserved, or that reservation is
        released (``_drop``). A fresh reservation is used as it is."""
        if not held.duplicate or (not held.settled and held.amount >= call.amount):
            return call, held
        smaller = None if held.settled else self._smaller(call, held.amount)
        if smaller is None:
            return await self._drop(attempt, held.amount)
        return smaller, held

    @staticmethod
    def charge_of(quest: Quest, admitted: Admitted) -> NewCharge:
        """The ledger row of an admitted call, open at the reserved amount, written with the
        step's claim: from its commit on, a crash leaves an open charge that the next
        attempt keeps."""
        return NewCharge(admitted.charge_key, quest.model, admitted.reserved, admitted.at)

    async def withdraw(self, ledger: Ledger, step: int, admitted: Admitted, limits: Limits) -> None:
        """Release a reservation whose claim did not happen (the quest changed meanwhile), and
        record it settled at zero so that the next attempt reserves under a new charge key.
        A crash before the record leaves the reservation released, which the next delivery
        finds settled and replaces (``_reuse_earlier_reservation``)."""
        await self._release(
            ledger,
            step,
            admitted.charge_key,
            admitted.reserved,
            admitted.scopes,
            limits,
            admitted.at,
        )

    async def _release(
        self,
        ledger: Ledger,
        step: int,
        charge_key: str,
        reserved: int,
        scopes: list[Scope],
        limits: Limits,
        at: datetime,
    ) -> None:
        """Settle a reservation at zero in Redis, then record its charge key as spent (settled
        at zero) in the ledger. Settling twice (a crash before the record) is a no-op."""
        await self.guard.settle(
            ledger.quest.company_id,
            charge_key,
            amount=reserved,
            actual=0,
            scopes=scopes,
            limits=limits,
        )
        await ledger.settled_at_zero(step, charge_key, reserved, at)

    async def settle(
        self, quest: Quest, admitted: Admitted, actual: int, limits: Limits
    ) -> Settlement:
        """Settle the call in Redis (the ledger row is settled by the caller's transaction)."""
        levels = await self.guard.settle(
            quest.company_id,
            admitted.charge_key,
            amount=admitted.reserved,
            actual=actual,
            scopes=admitted.scopes,
            limits=limits,
        )
        return Settlement(levels)

    def slow_delay_ms(self, settlement: Settlement, limits: Limits) -> int:
        """How long the next step waits, from the most-spent scope."""
        return max(
            (
                limits.slow_delay_ms(
                    lv.spent,
                    lv.scope.cap,
                    shortest_ms=self.slow_min_ms,
                    longest_ms=self.slow_max_ms,
                )
                for lv in settlement.levels
            ),
            default=0,
        )

    async def release(self, quest: Quest) -> None:
        await self.admissions.release_slot(quest.company_id, quest.id)

    async def _take_slot(self, quest: Quest, limits: Limits) -> Delay | None:
        """The company's running slot for the quest, or how long to wait for one; a model we
        cannot price fails the quest."""
        slot = await self.admissions.take_slot(
            quest.company_id,
            quest.id,
            limits.max_running_quests,
            int(time.time() * 1000),
            self.slot_ttl_ms,
        )
        if not slot.ok:  # a slot frees when a quest ends: look again soon, not at its expiry
            return Delay(
                min(slot.retry_after_ms, SLOT_RECHECK_MS) + random.randint(0, 500), slot.reason
            )
        try:
            self.prices.price(quest.model)
        except UnpricedModel as exc:
            raise QuestFailed(str(exc)) from None
        return None

    def _by_count(self, request: ClaudeRequest, counted: Counted | None) -> int | CountFirst | None:
        """The prompt's tokens as the API counted them (with a margin: it calls its count an
        estimate), or a request to count them first."""
        if counted is None:
            return CountFirst(request) if self.count_tokens else None
        return None if counted.tokens is None else counted.tokens + counted.tokens // 10 + 16

    async def count(self, request: ClaudeRequest) -> Counted:
        """The API's count of the prompt's tokens (a network call: never in a transaction)."""
        return Counted(await self.count_tokens(request) if self.count_tokens else None)

    def _shrink(
        self, request: ClaudeRequest, input_tokens: int, available: int
    ) -> tuple[ClaudeRequest, int] | None:
        """Ask for fewer output tokens so the call's worst case fits ``available``, if that
        leaves enough."""
        for max_tokens in (request.max_tokens // 2, request.max_tokens // 4, MIN_OUTPUT_TOKENS):
            if max_tokens < MIN_OUTPUT_TOKENS:
                break
            amount = self.prices.worst_case(
                request.model, input_tokens, max_tokens, cache_writes=request.cache_writes or False
            )
            if amount <= available:
                return replace(request, max_tokens=max_tokens), amount
        return None

    def _smaller(self, call: _Call, available: int) -> _Call | None:
        """``call`` with fewer output tokens, its worst case within ``available`` (``_shrink``)."""
        shrunk = self._shrink(call.request, call.input_tokens, available)
        return None if shrunk is None else _Call(shrunk[0], call.input_tokens, shrunk[1])

    async def _drop(self, attempt: _Attempt, reserved: int) -> Delay:
        """Release an earlier delivery's reservation that this call does not fit (its call
        was never made) and record it settled at zero, so that the next delivery reserves
        afresh under a new charge key."""
        await self._release(
            attempt.ledger,
            attempt.step,
            attempt.charge_key,
            reserved,
            attempt.scopes,
            attempt.limits,
            attempt.at,
        )
        return Delay(0, "an earlier delivery's reservation is too small for this call")

    def _refusal(self, refused: Refused) -> Delay:
        scope = refused.scope
        what = f"the {SCOPE_WORDS[scope.name]}"
        if scope.name == "quest" or refused.exhausted or refused.reserved == 0:
            raise QuestHalted(
                f"{what} is spent: {_usd(refused.spent)} of {_usd(refused.limit)}"
                + ("" if refused.exhausted else "; too little is left for another call")
            )
        # Other calls of the company hold reservations: wait for them to settle.
        return Delay(
            2_000, f"{what} is held by calls in flight ({_usd(refused.reserved)} reserved)"
        )


SCOPE_WORDS = {  # each guard scope in words
    "quest": "quest's cap",
    "day": "company's daily budget",
    "month": "company's monthly budget",
}


def _short_of(held: Reserved | Refused, amount: int) -> bool:
    """The reservation does not cover ``amount``: it was refused, or it is an earlier
    delivery's, not yet settled, and smaller."""
    return isinstance(held, Refused) or (
        held.duplicate and not held.settled and held.amount < amount
    )


def _usd(micros: int) -> str:
    return f"${micros / 1_000_000:,.4f}"
