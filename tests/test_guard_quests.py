"""The guard wired into real quests: tiers and what each does, company budgets, concurrency,
rate limits at the ingress, and budgets that survive Redis losing its counters."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from redis.asyncio import Redis as AsyncRedis

from guard import Admissions, Guard, Limits, PriceTable
from runtime.settings import Settings
from store import TenantTx
from store import activity as activity_store
from store import charges as charges_store
from store import limits as limits_store
from store import quests as quests_store
from store.activity import Activity, ActivityFilter
from store.quests import Quest, Step
from tests.conftest import Stack, Tenant
from tests.support import (
    InTenant,
    ingress_client,
    quest_state,
    submit,
    wait_finished,
    wait_for,
)
from tests.test_quest_runner import cancel_message, start
from tests.worker_support import InProcess, in_process_worker
from workers.app import step_budget
from workers.claude import ClaudeRequest
from workers.step_budget import Admitted, CountFirst, Delay, Ledger, StepBudget

pytestmark = pytest.mark.slow


def set_limits(in_tenant: InTenant, tenant: Tenant, **values: int) -> None:
    overrides = limits_store.LimitOverrides(**values)
    in_tenant(tenant.id, lambda tx: limits_store.put(tx, overrides))


def audit_rows(
    in_tenant: InTenant, tenant: Tenant, quest_id: uuid.UUID | None = None
) -> list[Activity]:
    wanted = ActivityFilter(quest_id=quest_id)
    rows, _ = in_tenant(tenant.id, lambda tx: activity_store.page(tx, wanted, limit=500))
    return rows


def live_events(rds: redis.Redis, tenant: Tenant, quest_id: uuid.UUID) -> list[dict[str, Any]]:
    entries = rds.xrange(f"s2:events:{tenant.id}")
    events = [json.loads(fields[b"e"])["payload"] for _, fields in entries]
    return [e for e in events if e["quest_id"] == str(quest_id)]


def test_warn_slow_and_halt_through_a_real_quest(
    stack: Stack, tenant: Tenant, in_tenant: InTenant, rds: redis.Redis
) -> None:
    set_limits(in_tenant, tenant, quest_cap_micros=6_000, warn_pct=20, slow_pct=40, halt_pct=100)
    stack.start_workers(processes=1, S2_MAX_TOKENS="128", S2_GUARD_SLOW_MIN_MS="1500")
    quest = submit(
        in_tenant, stack.settings.redis_url, tenant.id, "[script:loop] keep writing notes"
    )
    done = wait_finished(in_tenant, tenant.id, quest.id, timeout=60)

    assert done.status == "halted", done.reason
    assert "quest's cap" in (done.reason or "")
    assert 0 < done.cost_usd_micros <= 6_000

    async def steps_and_charges(tx: TenantTx) -> tuple[list[Step], list[charges_store.Charge]]:
        return await quests_store.steps(tx, quest.id), await charges_store.for_quest(tx, quest.id)

    steps, charges = in_tenant(tenant.id, steps_and_charges)
    replied = [s for s in steps if s.content is not None]
    assert len(charges) == len(replied) >= 3, "no Claude call after the halt"
    assert all(c.status == "settled" for c in charges)
    assert sum(c.cost_micros or 0 for c in charges) == done.cost_usd_micros

    def all_audited() -> list[Activity] | None:
        rows = audit_rows(in_tenant, tenant, quest.id)
        return rows if any(r.action == "quest.halted" for r in rows) else None

    rows = wait_for(all_audited)
    actions = [r.action for r in rows]
    assert actions.count("guard.warn") == 1 and actions.count("guard.slow") == 1, actions
    warn = next(r for r in rows if r.action == "guard.warn")
    assert warn.target == f"quest:{quest.id}"
    assert "of the quest's cap" in (warn.rationale or "")

    events = live_events(rds, tenant, quest.id)
    tiers = [(e["data"]["scope"], e["data"]["tier"]) for e in events if e["kind"] == "guard.tier"]
    assert tiers == [("quest", "warn"), ("quest", "slow")]
    assert any(e["kind"] == "guard.slowed" for e in events)
    # after the slow tier, a step waits (no thread sleeps: the message is delayed)
    gaps = [
        (b.started_at - a.finished_at).total_seconds()
        for a, b in itertools.pairwise(steps)
        if a.finished_at
    ]
    assert max(gaps) >= 1.4, gaps


def test_a_company_daily_budget_warns_once_and_halts_the_quest_that_would_pass_it(
    stack: Stack, tenant: Tenant, in_tenant: InTenant
) -> None:
    set_limits(in_tenant, tenant, daily_budget_micros=2_500, warn_pct=30, slow_pct=90, halt_pct=100)
    stack.start_workers(processes=1, S2_MAX_TOKENS="128")
    results = []
    for i in range(5):
        quest = submit(
            in_tenant, stack.settings.redis_url, tenant.id, f"[script:answer] question {i}"
        )
        results.append(wait_finished(in_tenant, tenant.id, quest.id))
    statuses = [q.status for q in results]
    assert "halted" in statuses and statuses[0] == "succeeded", statuses
    first_halt = statuses.index("halted")
    assert all(s == "succeeded" for s in statuses[:first_halt])
    assert all(s == "halted" for s in statuses[first_halt:]), "once spent, every new quest halts"
    assert "daily budget" in (results[first_halt].reason or "")
    assert sum(q.cost_usd_micros for q in results) <= 2_500

    def window_warnings() -> list[Activity] | None:
        rows = [r for r in audit_rows(in_tenant, tenant) if r.action == "guard.warn"]
        return rows or None

    warnings = wait_for(window_warnings)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert [r.target for r in warnings] == [f"budget:day:{today}"], "one audit row for the crossing"


def test_over_the_running_limit_steps_wait_and_are_never_dropped(
    stack: Stack, tenant: Tenant, in_tenant: InTenant
) -> None:
    quests = [
        submit(in_tenant, stack.settings.redis_url, tenant.id, f"[script:pause] task {i}")
        for i in range(3)
    ]
    set_limits(in_tenant, tenant, max_running_quests=1)
    stack.start_workers(processes=1)
    done = [wait_finished(in_tenant, tenant.id, q.id, timeout=60) for q in quests]
    assert [q.status for q in done] == ["succeeded"] * 3
    spans = sorted((q.started_at, q.finished_at) for q in done)
    for (_, end), (start_next, _) in itertools.pairwise(spans):
        assert end is not None and start_next is not None and start_next >= end, "one ran at a time"
    assert "step delayed" in stack.procs["workers"].output()


# -- the ingress ---------------------------------------------------------------------------------


@pytest.fixture
def ingress(settings: Settings, rds: redis.Redis) -> Iterator[TestClient]:
    rds.flushdb()
    with ingress_client(settings, rds) as client:
        yield client


def quest_count(in_tenant: InTenant, tenant: Tenant) -> int:
    row = in_tenant(
        tenant.id,
        lambda tx: tx.one("SELECT count(*) FROM quests WHERE company_id = %s", (tenant.id,)),
    )
    return int(row[0]) if row else 0


def test_the_ingress_answers_429_over_the_start_rate_and_enqueues_nothing(
    ingress: TestClient, in_tenant: InTenant, tenant: Tenant, rds: redis.Redis
) -> None:
    set_limits(in_tenant, tenant, quests_per_minute=2)
    url = f"/v1/companies/{tenant.id}/quests"
    for _ in range(2):
        assert ingress.post(url, json={"goal": "hi"}, headers=tenant.headers()).status_code == 202
    queued, rows = rds.llen("dramatiq:quests"), quest_count(in_tenant, tenant)
    over = ingress.post(url, json={"goal": "one too many"}, headers=tenant.headers())
    assert over.status_code == 429
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert "quest starts a minute" in over.json()["detail"]
    assert rds.llen("dramatiq:quests") == queued and quest_count(in_tenant, tenant) == rows


def test_the_ingress_answers_429_when_the_company_runs_its_limit(
    ingress: TestClient, in_tenant: InTenant, tenant: Tenant, guard_redis: AsyncRedis
) -> None:
    set_limits(in_tenant, tenant, max_running_quests=2)
    admissions = Admissions(guard_redis)
    now = int(time.time() * 1000)
    for _ in range(2):
        assert in_tenant.run(admissions.take_slot(tenant.id, uuid.uuid4(), 2, now, 60_000)).ok
    over = ingress.post(
        f"/v1/companies/{tenant.id}/quests", json={"goal": "more"}, headers=tenant.headers()
    )
    assert over.status_code == 429 and over.headers["Retry-After"]
    assert quest_count(in_tenant, tenant) == 0


def test_max_usd_may_not_pass_the_company_ceiling(
    ingress: TestClient, in_tenant: InTenant, tenant: Tenant
) -> None:
    set_limits(in_tenant, tenant, quest_ceiling_micros=20_000_000)
    url = f"/v1/companies/{tenant.id}/quests"
    assert (
        ingress.post(url, json={"goal": "g", "max_usd": "20"}, headers=tenant.headers()).status_code
        == 202
    )
    too_much = ingress.post(url, json={"goal": "g", "max_usd": "20.01"}, headers=tenant.headers())
    assert too_much.status_code == 422 and "ceiling" in too_much.json()["detail"]


def test_guard_status_shows_windows_for_admins_only(ingress: TestClient, tenant: Tenant) -> None:
    resp = ingress.get(f"/v1/companies/{tenant.id}/guard", headers=tenant.headers())
    assert resp.status_code == 200
    body = resp.json()
    assert [w["scope"] for w in body["windows"]] == ["day", "month"]
    assert body["limits"]["quest_cap"] > 0
    assert (
        ingress.get(
            f"/v1/companies/{tenant.id}/guard", headers=tenant.headers(tenant.member)
        ).status_code
        == 403
    )


# -- Redis losing the counters, redelivery -----------------------------------------------------


@pytest.fixture
def worker(
    in_tenant: InTenant,
    rds: redis.Redis,
    guard_redis: AsyncRedis,
    offline_claude: str,
    settings: Settings,
) -> Iterator[InProcess]:
    rds.flushdb()
    with in_process_worker(
        in_tenant, guard_redis, settings, offline_claude, max_tokens=256, max_steps=10
    ) as w:
        yield w


def redis_spend(rds: redis.Redis, key: str) -> tuple[int, int]:
    spent, reserved = rds.hmget(key, "spent", "reserved")
    return int(spent or 0), int(reserved or 0)


def test_after_redis_loses_the_counters_they_are_rebuilt_and_spend_is_right(
    worker: InProcess,
    in_tenant: InTenant,
    rds: redis.Redis,
    guard_redis: AsyncRedis,
    tenant: Tenant,
) -> None:
    first = start(in_tenant, tenant, "[script:loop] notes")
    worker.step(first, holder="m1")
    other = start(in_tenant, tenant, "[script:answer] another quest, same day")
    worker.step(other, holder="m2")
    for key in rds.scan_iter(match="s2:g:*"):
        rds.delete(key)  # Redis restarted or flushed: every guard counter is gone

    second = first.follow_up(first.payload.model_copy(update={"step": 2}))
    worker.step(second, holder="m3")

    quest = quest_state(in_tenant, tenant.id, first.payload.quest_id)
    scopes = Guard(guard_redis).scopes(
        tenant.id, quest.id, 1, worker.runner.budget.defaults, datetime.now(UTC)
    )
    assert redis_spend(rds, scopes[0].key) == (quest.cost_usd_micros, 0), (
        "the quest's spend survived"
    )
    other_cost = quest_state(in_tenant, tenant.id, other.payload.quest_id).cost_usd_micros
    assert redis_spend(rds, scopes[1].key) == (quest.cost_usd_micros + other_cost, 0), (
        "so did the day's"
    )


def test_a_redelivered_step_is_not_charged_twice(
    worker: InProcess, in_tenant: InTenant, tenant: Tenant
) -> None:
    env = start(in_tenant, tenant, "[script:notes] once")
    worker.step(env, holder="m1")
    cost = quest_state(in_tenant, tenant.id, env.payload.quest_id).cost_usd_micros
    worker.step(env, holder="m1")  # redelivered after it was done
    charges = in_tenant(tenant.id, lambda tx: charges_store.for_quest(tx, env.payload.quest_id))
    assert len(charges) == 1 and charges[0].cost_micros == cost
    assert quest_state(in_tenant, tenant.id, env.payload.quest_id).cost_usd_micros == cost


def test_a_call_whose_worker_died_is_kept_at_its_reservation(
    worker: InProcess, in_tenant: InTenant, rds: redis.Redis, tenant: Tenant
) -> None:
    env = start(in_tenant, tenant, "[script:answer] the worker dies during this call")
    # as if a worker reserved and opened the charge, then died
    plan = in_tenant.run(worker.runner._plan(env, "dead-worker"))
    assert plan.__class__.__name__ == "Ready"
    reserved = plan.admitted.reserved  # type: ignore[union-attr]
    in_tenant(
        tenant.id,
        lambda tx: tx.execute(
            "UPDATE quests SET step_claimed_at = now() - interval '1 hour' WHERE company_id = %s AND id = %s",
            (tenant.id, env.payload.quest_id),
        ),
    )
    worker.step(env, holder="the-redelivery")
    quest = quest_state(in_tenant, tenant.id, env.payload.quest_id)
    charges = in_tenant(tenant.id, lambda tx: charges_store.for_quest(tx, env.payload.quest_id))
    assert [c.status for c in charges] == ["kept", "settled"]
    assert quest.status == "succeeded"
    assert quest.cost_usd_micros == reserved + (charges[1].cost_micros or 0)


# -- a redelivery that finds an earlier delivery's reservation -------------------------------


def small_cap_quest(
    in_tenant: InTenant,
    settings: Settings,
    tenant: Tenant,
    request: ClaudeRequest,
    input_tokens: int,
) -> tuple[Quest, Limits]:
    """A quest whose cap fits the call at half its max_tokens, not at all of them."""
    prices = PriceTable.load()
    half = prices.worst_case(request.model, input_tokens, request.max_tokens // 2)
    assert prices.worst_case(request.model, input_tokens, request.max_tokens) > half
    env = start(in_tenant, tenant, "[script:answer] a small cap")
    quest = in_tenant(tenant.id, lambda tx: quests_store.get(tx, env.payload.quest_id))
    assert quest is not None
    defaults = settings.default_limits()
    return quest, replace(defaults, quest_cap=half, daily_budget=0, monthly_budget=0)


def claude_request(max_tokens: int = 1024) -> ClaudeRequest:
    return ClaudeRequest(
        model="claude-sonnet-5-5",
        max_tokens=max_tokens,
        system="You are Ted.",
        messages=[
            {
                "role": "user",
                "content": "a small cap, with a prompt long enough that its byte bound is far above its count",
            }
        ],
        tools=[],
    )


def admit(
    budget: StepBudget,
    in_tenant: InTenant,
    quest: Quest,
    request: ClaudeRequest,
    attempts: int,
    limits: Limits,
) -> Admitted | Delay | CountFirst:
    """Step 1's admission as the quest runner makes it, with no transaction open: asked to
    count the prompt first, it counts and is admitted again with the count."""

    async def admission() -> Admitted | Delay | CountFirst:
        ledger = Ledger(in_tenant.db, quest)
        result = await budget.admit(ledger, 1, request, attempts, limits)
        if isinstance(result, CountFirst):
            counted = await budget.count(result.request)
            result = await budget.admit(ledger, 1, request, attempts, limits, counted)
        return result

    return in_tenant.run(admission())


def admit_and_crash(
    budget: StepBudget, in_tenant: InTenant, quest: Quest, request: ClaudeRequest, limits: Limits
) -> Admitted | Delay | CountFirst:
    """Admitted, and the worker dies before its claim commits: nothing in the ledger."""
    return admit(budget, in_tenant, quest, request, 0, limits)


def test_a_redelivery_fits_its_call_to_the_smaller_reservation_it_finds(
    in_tenant: InTenant, guard_redis: AsyncRedis, settings: Settings, tenant: Tenant
) -> None:
    budget = step_budget(settings, guard_redis, PriceTable.load())  # reserves by the byte bound
    quest, limits = small_cap_quest(
        in_tenant, settings, tenant, claude_request(), claude_request().input_bound()
    )
    first = admit_and_crash(budget, in_tenant, quest, claude_request(), limits)
    assert isinstance(first, Admitted) and first.request.max_tokens == 512, "it shrank its call"

    # the redelivery: no ledger row, the same charge key
    again = admit(budget, in_tenant, quest, claude_request(), 0, limits)
    assert isinstance(again, Admitted)
    assert again.charge_key == first.charge_key and again.reserved == first.reserved
    worst = budget.prices.worst_case(
        quest.model, again.request.input_bound(), again.request.max_tokens
    )
    assert worst <= again.reserved, "the call may not cost more than was reserved"
    assert again.request.max_tokens == 512


def test_a_reservation_the_redelivered_call_cannot_fit_is_released_and_made_again(
    in_tenant: InTenant,
    rds: redis.Redis,
    guard_redis: AsyncRedis,
    settings: Settings,
    tenant: Tenant,
) -> None:
    # The first delivery counted the prompt's tokens; the redelivery's count fails and it
    # falls back to the byte bound, which no longer fits what the first one reserved.
    counts = iter([10, None, 10, 10])
    budget = step_budget(settings, guard_redis, PriceTable.load())

    async def count_next(_request: ClaudeRequest) -> int | None:
        return next(counts)

    budget.count_tokens = count_next
    request = claude_request(max_tokens=512)  # it can shrink to 256 tokens, no further
    assert request.input_bound() > 100
    quest, limits = small_cap_quest(in_tenant, settings, tenant, request, 10 + 1 + 16)
    first = admit_and_crash(budget, in_tenant, quest, request, limits)
    assert isinstance(first, Admitted) and first.request.max_tokens == 256
    quest_scope = first.scopes[0]

    second = admit_and_crash(budget, in_tenant, quest, request, limits)  # released; the worker died
    assert isinstance(second, Delay)
    assert redis_spend(rds, quest_scope.key) == (0, 0)

    # the same key again: released, so not a reservation
    third = admit(budget, in_tenant, quest, request, 0, limits)
    assert isinstance(third, Delay)
    charges = in_tenant(tenant.id, lambda tx: charges_store.for_quest(tx, quest.id))
    assert [(c.charge_key, c.status, c.cost_micros) for c in charges] == [
        (first.charge_key, "settled", 0)
    ]

    # the next delivery reserves afresh under a new key
    fourth = admit(budget, in_tenant, quest, request, len(charges), limits)
    assert isinstance(fourth, Admitted) and fourth.charge_key != first.charge_key
    assert redis_spend(rds, quest_scope.key) == (0, fourth.reserved)


def test_the_token_count_is_asked_only_when_the_byte_bound_does_not_fit(
    in_tenant: InTenant, guard_redis: AsyncRedis, settings: Settings, tenant: Tenant
) -> None:
    asked: list[ClaudeRequest] = []

    async def count(request: ClaudeRequest) -> int:
        asked.append(request)
        return 10

    budget = step_budget(settings, guard_redis, PriceTable.load())
    budget.count_tokens = count
    request = claude_request()
    roomy = replace(settings.default_limits(), daily_budget=0, monthly_budget=0)
    quest, _ = small_cap_quest(in_tenant, settings, tenant, request, 10)
    plenty = admit(budget, in_tenant, quest, request, 0, roomy)
    assert isinstance(plenty, Admitted) and asked == [], "the bound fitted: no round trip"

    quest, tight = small_cap_quest(in_tenant, settings, tenant, request, 10 + 1 + 16)
    tight = replace(tight, quest_cap=budget.prices.worst_case(request.model, 27, 1024))
    counted = admit(budget, in_tenant, quest, request, 0, tight)
    assert asked == [request], "the bound did not fit: counted once"
    assert isinstance(counted, Admitted) and counted.request.max_tokens == 1024
    assert counted.reserved == budget.prices.worst_case(request.model, 27, 1024)


def meanwhile(
    budget: StepBudget, what: Callable[[], Awaitable[object]], *, before: bool
) -> list[object]:
    """``budget.admit`` with ``what`` done once around the first admission (before or after
    it, while the step holds no lock); the admissions made."""
    admit = budget.admit
    admitted: list[object] = []

    async def admit_with(*args: Any, **kw: Any) -> Any:
        first = not admitted
        if first and before:
            await what()
        admitted.append(await admit(*args, **kw))
        if first and not before:
            await what()
        return admitted[-1]

    budget.admit = admit_with  # type: ignore[method-assign]
    return admitted


def test_a_cancel_during_admission_waits_on_no_lock_and_the_reservation_is_withdrawn(
    worker: InProcess, in_tenant: InTenant, rds: redis.Redis, tenant: Tenant
) -> None:
    env = start(in_tenant, tenant, "[script:answer] cancelled while the guard admits it")

    async def ask_to_cancel() -> object:  # its UPDATE commits while the step holds a reservation
        return await in_tenant.db.in_tenant(
            tenant.id,
            lambda tx: quests_store.request_cancel(
                tx, env.payload.quest_id, by="operator:test", reason="not now"
            ),
        )

    admitted = meanwhile(worker.runner.budget, ask_to_cancel, before=False)
    worker.step(env, holder="m1")
    assert quest_state(in_tenant, tenant.id, env.payload.quest_id).status == "cancelled"
    (first,) = admitted  # looked again, saw the cancel: nothing more to admit
    assert isinstance(first, Admitted)
    charges = in_tenant(tenant.id, lambda tx: charges_store.for_quest(tx, env.payload.quest_id))
    assert [(c.charge_key, c.status, c.cost_micros) for c in charges] == [
        (first.charge_key, "settled", 0)
    ], "the reservation was withdrawn and its key spent"
    assert all(redis_spend(rds, s.key) == (0, 0) for s in first.scopes)


def test_a_quest_cancelled_and_ended_while_its_step_is_admitted_keeps_no_slot_or_reservation(
    worker: InProcess, in_tenant: InTenant, rds: redis.Redis, tenant: Tenant
) -> None:
    env = start(in_tenant, tenant, "[script:answer] ended before the guard took its slot")

    async def end_it() -> None:  # no step holds the quest yet: the cancel ends it at once
        await worker.ender.cancel(cancel_message(env, "not now"))

    admitted = meanwhile(worker.runner.budget, end_it, before=True)
    worker.step(env, holder="m1")
    assert quest_state(in_tenant, tenant.id, env.payload.quest_id).status == "cancelled"
    (first,) = admitted
    assert isinstance(first, Admitted)
    slots = rds.zrange(worker.runner.budget.admissions.slots_key(tenant.id), 0, -1)
    assert slots == [], "no running slot held"
    assert all(redis_spend(rds, s.key) == (0, 0) for s in first.scopes)


def test_a_quest_s_counters_rebuilt_from_what_its_step_saw_match_the_ledger(
    in_tenant: InTenant, settings: Settings, guard_redis: AsyncRedis, tenant: Tenant
) -> None:
    env = start(in_tenant, tenant, "[script:answer] charges of earlier attempts")
    quest = quest_state(in_tenant, tenant.id, env.payload.quest_id)
    now = datetime.now(UTC)

    async def earlier_attempts(tx: TenantTx) -> list[charges_store.Charge]:
        for n, key in ((1, "a"), (2, "b"), (3, "c")):
            await charges_store.open_charge(
                tx, quest.id, 1, key, quest.model, n * 100, created_at=now
            )
        await charges_store.settle(tx, "a", 40, None)  # b and c were left open by dead workers
        return await charges_store.for_quest(tx, quest.id)

    seen = in_tenant(tenant.id, earlier_attempts)
    budget = step_budget(settings, guard_redis, PriceTable.load())
    limits = settings.default_limits()
    scope = budget.guard.scopes(tenant.id, quest.id, budget.quest_cap(quest, limits), limits, now)[
        0
    ]
    assert scope.name == "quest"
    kept = in_tenant.run(budget.keep_abandoned(in_tenant.db, quest, seen, limits))
    assert kept == 500
    from_ledger = in_tenant.run(Ledger(in_tenant.db, quest).totals(scope, now))
    from_what_it_saw = in_tenant.run(Ledger(in_tenant.db, quest, seen).totals(scope, now))
    assert from_what_it_saw == from_ledger == (540, 0)
