"""A company whose daily or monthly budget is spent is refused at submit: 429 with the
window's reset in ``Retry-After`` and a reason naming the window; nothing is created or
queued, and the refusal leaves no trace that a later retry trips over.

"Spent" is the workers' rule: less is left before the halt line than the least the quest's
first call can cost (``PriceTable.least_call``: MIN_OUTPUT_TOKENS of output, the prompt
bounded from below), since a worker halts a step that cannot reserve even that. By the same
rule a quest whose own cap (``max_usd``, else the company's quest cap) is below that least
can never run: 422.

The budget is spent through the guard's own API, in the order a worker's step uses it
(reserve in Redis with the ledger as fallback, open the ledger row, settle Redis, settle the
ledger), on the machine's real Redis and Postgres; the ingress runs in-process and
``system2 quest submit`` as a subprocess.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from redis.asyncio import Redis as AsyncRedis

from guard import Guard, Limits, PriceTable, Reserved, Scope
from guard.pricing import MIN_OUTPUT_TOKENS
from guard.spend import window_bounds
from ingress.guard_view import company_limits
from ingress.submit import FIRST_CALL_INPUT_FLOOR, QuestSpec, create_quest, usd
from runtime.settings import Settings
from store import TenantTx
from store import charges as charges_store
from store import limits as limits_store
from tests.conftest import Tenant
from tests.support import OPERATOR, InTenant, ingress_client
from tests.test_cli import assert_one_line_error, run

DOWN = "redis://127.0.0.1:1/0"  # nothing listens on port 1

QUEUE = "dramatiq:quests"
BODIES = "dramatiq:quests.msgs"
AdminConn = psycopg.Connection[tuple[Any, ...]]
Response = Any  # what TestClient answers: httpx2's or httpx's, whichever starlette found
PRICES = PriceTable.load()
SONNET, HAIKU = "claude-sonnet-5-5", "claude-haiku-5-5"


@pytest.fixture
def ingress(settings: Settings, rds: redis.Redis) -> Iterator[TestClient]:
    rds.flushdb()
    with ingress_client(settings, rds) as client:
        yield client


@pytest.fixture(autouse=True)
def not_at_midnight() -> None:
    """Spend and submit must fall in the same UTC day: start clear of its end."""
    now = datetime.now(UTC)
    left = (window_bounds("day", now)[1] - now).total_seconds()
    if left < 30:
        time.sleep(left + 1)


def set_limits(in_tenant: InTenant, tenant: Tenant, **values: int) -> None:
    overrides = limits_store.LimitOverrides(**values)
    in_tenant(tenant.id, lambda tx: limits_store.put(tx, overrides))


def limits_of(in_tenant: InTenant, settings: Settings, tenant: Tenant) -> Limits:
    return in_tenant(tenant.id, lambda tx: company_limits(tx, settings))


def spend(
    in_tenant: InTenant,
    guard_redis: AsyncRedis,
    settings: Settings,
    tenant: Tenant,
    amount: int,
    *,
    settle: bool = True,
) -> Callable[[], None]:
    """One Claude call of ``amount`` micro-USD charged to a quest of the company, as a
    worker's step charges it. ``settle=False`` leaves it in flight (reserved, not spent) until
    the function returned is called."""
    guard = Guard(guard_redis)
    limits = limits_of(in_tenant, settings, tenant)
    now = datetime.now(UTC)

    async def charge(tx: TenantTx) -> tuple[str, list[Scope]]:
        quest, _ = await create_quest(
            tx, OPERATOR, QuestSpec(goal="spender", model="claude-sonnet-5-5")
        )
        scopes = guard.scopes(tenant.id, quest.id, limits.quest_cap_for(None), limits, now)
        key = f"{quest.id}:1:1"

        async def ledger(scope: Scope) -> tuple[int, int]:  # read in this transaction
            if scope.name == "quest":
                return charges_store.totals(await charges_store.for_quest(tx, quest.id))
            return await charges_store.window_totals(tx, *window_bounds(scope.name, now))

        reserved = await guard.reserve(tenant.id, key, amount, scopes, limits, ledger=ledger)
        assert isinstance(reserved, Reserved), reserved
        await charges_store.open_charge(tx, quest.id, 1, key, quest.model, amount, created_at=now)
        return key, scopes

    key, scopes = in_tenant(tenant.id, charge)

    def finish() -> None:
        in_tenant.run(
            guard.settle(tenant.id, key, amount=amount, actual=amount, scopes=scopes, limits=limits)
        )
        in_tenant(tenant.id, lambda tx: charges_store.settle(tx, key, amount, None))

    if settle:
        finish()
    return finish


def quest_rows(admin_conn: AdminConn, tenant: Tenant) -> int:
    row = admin_conn.execute(
        "SELECT count(*) FROM quests WHERE company_id = %s", (tenant.id,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def queued_quest_ids(rds: redis.Redis) -> list[str]:
    ids = rds.lrange(QUEUE, 0, -1)
    bodies = [rds.hget(BODIES, i) for i in ids]
    return [json.loads(b)["args"][0]["payload"]["quest_id"] for b in bodies if b is not None]


def seconds_to_reset(window: str) -> float:
    now = datetime.now(UTC)
    return (window_bounds(window, now)[1] - now).total_seconds()


def least(model: str = SONNET) -> int:
    """The least a quest's first call to ``model`` can cost, as the ingress reckons it."""
    return PRICES.least_call(model, FIRST_CALL_INPUT_FLOOR)


def post(
    ingress: TestClient,
    tenant: Tenant,
    key: str | None = None,
    *,
    model: str | None = None,
    max_usd: str | None = None,
) -> Response:
    headers = tenant.headers(tenant.member)
    if key:
        headers["Idempotency-Key"] = key
    body = {"goal": "g"} | ({"model": model} if model else {})
    body |= {"max_usd": max_usd} if max_usd else {}
    return ingress.post(f"/v1/companies/{tenant.id}/quests", json=body, headers=headers)


def assert_refused(resp: Response, window: str) -> dict[str, Any]:
    """A budget 429 naming ``window``, its Retry-After the seconds until it resets."""
    assert resp.status_code == 429, resp.text
    expected = seconds_to_reset(window)
    retry_after = int(resp.headers["Retry-After"])
    assert expected - 5 <= retry_after <= math.ceil(expected) + 5, (retry_after, expected)
    body: dict[str, Any] = resp.json()
    words = {"day": "daily", "month": "monthly"}[window]
    assert body["reason"] == f"{words}_budget_exhausted"
    assert body["window"] == window
    resets_at = window_bounds(window, datetime.now(UTC))[1]
    assert body["resets_at"] == resets_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert f"{words} budget" in body["detail"] and "nothing was queued" in body["detail"]
    return body


def ledger_of(spent: int) -> Callable[[Scope], Awaitable[tuple[int, int]]]:
    """A ledger in which every scope has ``spent`` settled and nothing open."""

    async def ledger(_: Scope) -> tuple[int, int]:
        return spent, 0

    return ledger


async def no_ledger(scope: Scope) -> tuple[int, int]:
    raise AssertionError(f"the ledger was read for {scope.name} although Redis has it")


# -- the guard's rule -----------------------------------------------------------------------


@pytest.mark.parametrize("least", [1, 2_560])
@pytest.mark.parametrize(("cap", "halt_pct"), [(10_000, 100), (10_000, 90), (999, 50), (7, 33)])
def test_a_window_is_exhausted_exactly_when_no_call_can_be_reserved_against_it(
    rds: redis.Redis,
    guard_redis: AsyncRedis,
    in_tenant: InTenant,
    cap: int,
    halt_pct: int,
    least: int,
) -> None:
    """The ingress refuses where a worker's step, with nothing else in flight, would be
    refused the least call and halt."""
    rds.flushdb()
    guard, company = Guard(guard_redis), uuid.uuid4()
    limits = Limits(
        quest_cap=10**9,
        quest_ceiling=10**9,
        daily_budget=cap,
        monthly_budget=10**9,
        warn_pct=min(50, halt_pct),
        slow_pct=min(80, halt_pct),
        halt_pct=halt_pct,
    )
    now = datetime.now(UTC)
    line = cap * halt_pct // 100
    around = {*range(line - least - 2, line - least + 3), *range(line - 2, line + 3)}
    for spent in sorted(n for n in around if n >= 0):
        rds.flushdb()
        scopes = guard.scopes(company, uuid.uuid4(), limits.quest_cap, limits, now)
        found = in_tenant.run(
            guard.exhausted_windows(company, limits, now, ledger=ledger_of(spent), least=least)
        )
        assert not rds.keys("*"), "nothing is rebuilt or reserved"
        smallest = in_tenant.run(
            guard.reserve(company, "k", least, scopes, limits, ledger=ledger_of(spent))
        )
        assert bool(found) == (not isinstance(smallest, Reserved)), (spent, line)
        assert [r.scope.name for r in found] == (["day"] if found else [])
        assert all(r.left == max(0, line - spent) for r in found)
        # now from the counters the reservation rebuilt (what it took is reserved, not spent)
        again = in_tenant.run(
            guard.exhausted_windows(company, limits, now, ledger=no_ledger, least=least)
        )
        assert again == found


def test_the_least_call_is_the_one_a_worker_shrinks_its_call_to_before_it_halts(
    settings: Settings, guard_redis: AsyncRedis
) -> None:
    """``PriceTable.least_call`` is the workers' own floor: for any prompt, a step's call fits
    what is left exactly when the least call does."""
    from workers.app import step_budget  # the test may import the workers; the ingress not
    from workers.claude import ClaudeRequest
    from workers.step_budget import MIN_OUTPUT_TOKENS as WORKERS_MIN

    assert WORKERS_MIN is MIN_OUTPUT_TOKENS == 256
    budget = step_budget(settings, guard_redis, PRICES)
    for model in (SONNET, HAIKU, "claude-opus-5-5"):
        request = ClaudeRequest(model, 4096, "system", [{"role": "user", "content": "g"}], [])
        for input_tokens in (0, 27, request.input_bound(), 150_000):
            floor = PRICES.least_call(model, input_tokens)
            assert floor == PRICES.worst_case(model, input_tokens, MIN_OUTPUT_TOKENS)
            assert budget._shrink(request, input_tokens, floor - 1) is None, "it halts"
            fits = budget._shrink(request, input_tokens, floor)
            assert fits is not None and fits[1] == floor
            assert fits[0].max_tokens == MIN_OUTPUT_TOKENS
        # the ingress bounds the prompt from below, so its least is never above a worker's
        assert least(model) <= PRICES.least_call(model, request.input_bound())
        assert least(model) == PRICES.worst_case(model, 0, MIN_OUTPUT_TOKENS)


def test_the_ingress_imports_no_worker_code() -> None:
    code = (
        "import sys, ingress.app, ingress.submit, guard; "
        "print([m for m in sys.modules if m == 'workers' or m.startswith('workers.')])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


# -- the refusal -----------------------------------------------------------------------------


def test_a_spent_daily_budget_is_429_until_midnight_utc_and_nothing_is_created(
    ingress: TestClient,
    in_tenant: InTenant,
    rds: redis.Redis,
    guard_redis: AsyncRedis,
    settings: Settings,
    tenant: Tenant,
    other_tenant: Tenant,
    admin_conn: AdminConn,
) -> None:
    set_limits(in_tenant, tenant, daily_budget_micros=10_000)
    spend(in_tenant, guard_redis, settings, tenant, 10_000)
    rows = quest_rows(admin_conn, tenant)

    body = assert_refused(post(ingress, tenant), "day")
    assert body["period"] == datetime.now(UTC).strftime("%Y-%m-%d")
    assert body["exhausted"] == ["day"]
    assert quest_rows(admin_conn, tenant) == rows, "no quest row"
    assert rds.llen(QUEUE) == 0 and rds.hlen(BODIES) == 0, "nothing on the queue"

    # another company's budget is its own
    ok = post(ingress, other_tenant)
    assert ok.status_code == 202, ok.text
    assert queued_quest_ids(rds) == [ok.json()["quest_id"]]


def test_a_spent_monthly_budget_is_429_until_the_first_of_next_month(
    ingress: TestClient,
    in_tenant: InTenant,
    rds: redis.Redis,
    guard_redis: AsyncRedis,
    settings: Settings,
    tenant: Tenant,
    admin_conn: AdminConn,
) -> None:
    set_limits(in_tenant, tenant, daily_budget_micros=1_000_000, monthly_budget_micros=20_000)
    spend(in_tenant, guard_redis, settings, tenant, 12_000)
    spend(in_tenant, guard_redis, settings, tenant, 8_000)
    rows = quest_rows(admin_conn, tenant)

    body = assert_refused(post(ingress, tenant), "month")
    assert body["period"] == datetime.now(UTC).strftime("%Y-%m")
    assert body["exhausted"] == ["month"]
    assert quest_rows(admin_conn, tenant) == rows
    assert rds.llen(QUEUE) == 0 and rds.hlen(BODIES) == 0


def test_with_both_windows_spent_the_later_reset_is_named(
    ingress: TestClient,
    in_tenant: InTenant,
    guard_redis: AsyncRedis,
    settings: Settings,
    tenant: Tenant,
) -> None:
    set_limits(in_tenant, tenant, daily_budget_micros=10_000, monthly_budget_micros=10_000)
    spend(in_tenant, guard_redis, settings, tenant, 10_000)
    body = assert_refused(post(ingress, tenant), "month")
    assert body["exhausted"] == ["day", "month"]
    assert "daily budget" in body["detail"] and "monthly budget" in body["detail"]


def test_a_budget_with_less_left_than_the_least_call_is_429_as_if_spent(
    ingress: TestClient,
    in_tenant: InTenant,
    rds: redis.Redis,
    guard_redis: AsyncRedis,
    settings: Settings,
    tenant: Tenant,
    admin_conn: AdminConn,
) -> None:
    """The review's case: a $0.01 daily budget with $0.009 spent. A worker would halt the
    quest at once ("too little is left for another call"), so the submit is refused."""
    assert settings.default_model == SONNET and least() > 1_000
    set_limits(in_tenant, tenant, daily_budget_micros=10_000)
    spend(in_tenant, guard_redis, settings, tenant, 9_000)
    rows = quest_rows(admin_conn, tenant)

    body = assert_refused(post(ingress, tenant), "day")
    assert body["exhausted"] == ["day"]
    detail = body["detail"]
    assert "daily budget" in detail and "$0.001 left" in detail, detail
    assert f"least one call to {SONNET} can cost ({usd(least())})" in detail, detail
    assert quest_rows(admin_conn, tenant) == rows, "no quest row"
    assert rds.llen(QUEUE) == 0 and rds.hlen(BODIES) == 0, "nothing on the queue"

    rds.flushdb()  # the same from the ledger, when Redis has lost the counters
    assert_refused(post(ingress, tenant), "day")
    assert quest_rows(admin_conn, tenant) == rows


def test_a_budget_with_the_least_call_left_is_admitted(
    ingress: TestClient,
    in_tenant: InTenant,
    rds: redis.Redis,
    guard_redis: AsyncRedis,
    settings: Settings,
    tenant: Tenant,
) -> None:
    set_limits(in_tenant, tenant, daily_budget_micros=10_000, monthly_budget_micros=20_000)
    spend(in_tenant, guard_redis, settings, tenant, 10_000 - least())
    ok = post(ingress, tenant)
    assert ok.status_code == 202, ok.text
    assert queued_quest_ids(rds) == [ok.json()["quest_id"]]

    set_limits(in_tenant, tenant, daily_budget_micros=100_000)  # the month now is the short one
    spend(in_tenant, guard_redis, settings, tenant, 10_000)  # the least call left of the month
    assert post(ingress, tenant).status_code == 202
    spend(in_tenant, guard_redis, settings, tenant, 1)  # one micro-dollar short
    body = assert_refused(post(ingress, tenant), "month")
    assert body["exhausted"] == ["month"] and "monthly budget" in body["detail"]


def test_the_least_call_is_the_quests_models(
    ingress: TestClient,
    in_tenant: InTenant,
    guard_redis: AsyncRedis,
    settings: Settings,
    tenant: Tenant,
) -> None:
    """$0.001 left is too little for a call to Sonnet, enough for one to Haiku."""
    assert least(HAIKU) < 1_000 < least(SONNET)
    set_limits(in_tenant, tenant, daily_budget_micros=10_000)
    spend(in_tenant, guard_redis, settings, tenant, 9_000)
    assert_refused(post(ingress, tenant, model=SONNET), "day")
    ok = post(ingress, tenant, model=HAIKU)
    assert ok.status_code == 202, ok.text


def test_an_unpriced_model_is_left_to_the_worker_but_a_spent_budget_is_not(
    ingress: TestClient,
    in_tenant: InTenant,
    guard_redis: AsyncRedis,
    settings: Settings,
    tenant: Tenant,
) -> None:
    """A model without a price has no least call: its first step fails the quest, naming the
    missing price (as before); a budget at its halt line refuses it all the same."""
    set_limits(in_tenant, tenant, daily_budget_micros=10_000)
    spend(in_tenant, guard_redis, settings, tenant, 9_000)
    set_limits(in_tenant, tenant, daily_budget_micros=10_000, quest_cap_micros=1)
    ok = post(ingress, tenant, model="claude-unpriced-9")
    assert ok.status_code == 202, ok.text
    set_limits(in_tenant, tenant, quest_cap_micros=settings.default_limits().quest_cap)
    spend(in_tenant, guard_redis, settings, tenant, 1_000)
    assert_refused(post(ingress, tenant, model="claude-unpriced-9"), "day")


def test_warn_and_slow_tiers_and_money_in_flight_are_admitted_the_halt_line_is_not(
    ingress: TestClient,
    in_tenant: InTenant,
    rds: redis.Redis,
    guard_redis: AsyncRedis,
    settings: Settings,
    tenant: Tenant,
) -> None:
    set_limits(
        in_tenant, tenant, daily_budget_micros=100_000, warn_pct=50, slow_pct=70, halt_pct=90
    )
    spend(in_tenant, guard_redis, settings, tenant, 50_000)  # warn
    assert post(ingress, tenant).status_code == 202
    spend(in_tenant, guard_redis, settings, tenant, 20_000)  # slow
    assert post(ingress, tenant).status_code == 202
    spend(in_tenant, guard_redis, settings, tenant, 20_000 - least())  # exactly the least call left
    assert post(ingress, tenant).status_code == 202
    set_limits(in_tenant, tenant, halt_pct=89)  # the line is S2_GUARD_HALT_PCT of the budget
    assert_refused(post(ingress, tenant), "day")
    set_limits(in_tenant, tenant, halt_pct=90)
    in_flight = spend(
        in_tenant, guard_redis, settings, tenant, 1, settle=False
    )  # reserved: may settle lower
    assert post(ingress, tenant).status_code == 202
    assert len(queued_quest_ids(rds)) == 4

    in_flight()  # settled: one micro-dollar short of the least call
    body = assert_refused(post(ingress, tenant), "day")
    assert f"{usd(least() - 1)} left" in body["detail"], body["detail"]
    assert len(queued_quest_ids(rds)) == 4


def test_the_ledger_decides_when_redis_has_lost_the_counters(
    ingress: TestClient,
    in_tenant: InTenant,
    rds: redis.Redis,
    guard_redis: AsyncRedis,
    settings: Settings,
    tenant: Tenant,
    admin_conn: AdminConn,
) -> None:
    set_limits(in_tenant, tenant, daily_budget_micros=10_000)
    spend(in_tenant, guard_redis, settings, tenant, 10_000)
    rds.flushdb()  # Redis restarted empty: the budget did not reset
    rows = quest_rows(admin_conn, tenant)
    assert_refused(post(ingress, tenant), "day")
    assert quest_rows(admin_conn, tenant) == rows
    assert rds.llen(QUEUE) == 0


def test_a_refused_idempotency_key_creates_the_quest_once_the_day_has_reset(
    ingress: TestClient,
    in_tenant: InTenant,
    rds: redis.Redis,
    guard_redis: AsyncRedis,
    settings: Settings,
    tenant: Tenant,
    admin_conn: AdminConn,
) -> None:
    set_limits(in_tenant, tenant, daily_budget_micros=10_000, quests_per_minute=1)
    spend(in_tenant, guard_redis, settings, tenant, 10_000)
    key = "retry-" + uuid.uuid4().hex
    for _ in range(2):  # a client retrying before the reset is refused the same way
        assert_refused(post(ingress, tenant, key), "day")
    assert rds.llen(QUEUE) == 0

    # The day ends: its counter and its charges now belong to yesterday.
    now = datetime.now(UTC)
    limits = limits_of(in_tenant, settings, tenant)
    today = Guard(guard_redis).window_scopes(tenant.id, limits, now)[0].key
    rds.rename(
        today, today.rsplit(":", 1)[0] + ":" + (now - timedelta(days=1)).strftime("%Y-%m-%d")
    )
    admin_conn.execute(
        "UPDATE charges SET created_at = created_at - interval '1 day' WHERE company_id = %s",
        (tenant.id,),
    )

    # The key is not poisoned, and the refusals used none of the one quest start a minute.
    resp = post(ingress, tenant, key)
    assert resp.status_code == 202, resp.text
    quest_id = resp.json()["quest_id"]
    assert queued_quest_ids(rds) == [quest_id]
    row = admin_conn.execute(
        "SELECT id FROM quests WHERE company_id = %s AND idempotency_key = %s", (tenant.id, key)
    ).fetchall()
    assert [str(r[0]) for r in row] == [quest_id]
    again = post(ingress, tenant, key)  # and it replays as any idempotent retry does
    assert again.status_code == 202 and again.json()["quest_id"] == quest_id
    assert queued_quest_ids(rds) == [quest_id]


def test_concurrent_submits_as_the_line_is_crossed_are_each_all_or_nothing(
    ingress: TestClient,
    in_tenant: InTenant,
    rds: redis.Redis,
    guard_redis: AsyncRedis,
    settings: Settings,
    tenant: Tenant,
    admin_conn: AdminConn,
) -> None:
    """Each answer matches what it left: a 202 one row and one message, a 429 neither. Once
    the crossing is settled every submit is refused, the same Idempotency-Key sent twice at
    once included."""
    set_limits(in_tenant, tenant, daily_budget_micros=10_000, quests_per_minute=1_000)
    # the least call left: admitted
    spend(in_tenant, guard_redis, settings, tenant, 10_000 - least())
    keys = [f"race-{i}-{uuid.uuid4().hex}" for i in range(12)]
    crossed = threading.Event()

    def submit(i: int) -> Response:
        if i == len(keys) // 2:
            # a worker settles the call that crosses
            spend(in_tenant, guard_redis, settings, tenant, 1)
            crossed.set()
        return post(ingress, tenant, keys[i])

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(submit, range(len(keys))))
    assert crossed.is_set()
    queued = set(queued_quest_ids(rds))
    for key, resp in zip(keys, answers, strict=True):
        found = admin_conn.execute(
            "SELECT id FROM quests WHERE company_id = %s AND idempotency_key = %s",
            (tenant.id, key),
        ).fetchall()
        if resp.status_code == 202:
            assert [str(r[0]) for r in found] == [resp.json()["quest_id"]]
            assert resp.json()["quest_id"] in queued
        else:
            assert_refused(resp, "day")
            assert found == []
    assert len(queued) == sum(r.status_code == 202 for r in answers)

    rows, key = quest_rows(admin_conn, tenant), "same-" + uuid.uuid4().hex
    with ThreadPoolExecutor(max_workers=2) as pool:
        both = list(pool.map(lambda _: post(ingress, tenant, key), range(2)))
    for resp in both:
        assert_refused(resp, "day")
    assert quest_rows(admin_conn, tenant) == rows
    assert len(queued_quest_ids(rds)) == len(queued)


def test_with_redis_down_a_submit_is_still_503_and_creates_nothing(
    settings: Settings, in_tenant: InTenant, tenant: Tenant, admin_conn: AdminConn
) -> None:
    set_limits(in_tenant, tenant, daily_budget_micros=10_000)
    down = redis.Redis.from_url(DOWN, socket_connect_timeout=1)
    rows = quest_rows(admin_conn, tenant)
    with ingress_client(settings, down, broker_url=DOWN, guard_url=DOWN) as client:
        resp = post(client, tenant, "k-" + uuid.uuid4().hex)
    assert resp.status_code == 503, resp.text
    assert int(resp.headers["Retry-After"]) > 0
    assert quest_rows(admin_conn, tenant) == rows


# -- the quest's own cap ---------------------------------------------------------------------


def assert_cap_refused(resp: Response, *words: str) -> str:
    assert resp.status_code == 422, resp.text
    assert "Retry-After" not in resp.headers
    detail: str = resp.json()["detail"]
    assert "would halt at its first step" in detail, detail
    for w in words:
        assert w in detail, (w, detail)
    return detail


def test_a_max_usd_below_the_least_call_is_422_and_nothing_is_created(
    ingress: TestClient, rds: redis.Redis, tenant: Tenant, admin_conn: AdminConn
) -> None:
    rds.flushdb()
    rows = quest_rows(admin_conn, tenant)
    below = usd(least() - 1).removeprefix("$")
    assert_cap_refused(
        post(ingress, tenant, max_usd=below),
        f"max_usd of ${below}",
        f"least one call to {SONNET} can cost ({usd(least())})",
        "ask for a larger max_usd",
    )
    key = "cap-" + uuid.uuid4().hex  # refused with a key: nothing is kept under it
    assert_cap_refused(post(ingress, tenant, key, max_usd=below))
    assert quest_rows(admin_conn, tenant) == rows
    assert rds.llen(QUEUE) == 0 and rds.hlen(BODIES) == 0

    exact = usd(least()).removeprefix("$")
    ok = post(ingress, tenant, max_usd=exact)
    assert ok.status_code == 202, ok.text
    assert post(ingress, tenant, max_usd=below, model=HAIKU).status_code == 202
    assert post(ingress, tenant, key, max_usd=exact).status_code == 202


def test_the_cap_is_measured_at_its_halt_line(
    ingress: TestClient, in_tenant: InTenant, rds: redis.Redis, tenant: Tenant
) -> None:
    rds.flushdb()
    set_limits(in_tenant, tenant, warn_pct=30, slow_pct=40, halt_pct=50)  # halts at half its cap
    twice = least() * 2
    assert_cap_refused(
        post(ingress, tenant, max_usd=usd(twice - 1).removeprefix("$")), "halted at 50% of it"
    )
    ok = post(ingress, tenant, max_usd=usd(twice).removeprefix("$"))
    assert ok.status_code == 202, ok.text


def test_a_company_quest_cap_below_the_least_call_is_422_unless_max_usd_raises_it(
    ingress: TestClient, in_tenant: InTenant, rds: redis.Redis, tenant: Tenant
) -> None:
    rds.flushdb()
    set_limits(in_tenant, tenant, quest_cap_micros=1_000, quest_ceiling_micros=10_000)
    assert_cap_refused(
        post(ingress, tenant),
        "this company's quest cap of $0.001",
        "when max_usd is not given",
        "ask for a larger max_usd (at most $0.01)",
    )
    ok = post(ingress, tenant, max_usd="0.01")
    assert ok.status_code == 202, ok.text

    set_limits(in_tenant, tenant, quest_ceiling_micros=2_000)
    assert_cap_refused(post(ingress, tenant), "not even this company's ceiling of $0.002")


def test_a_cap_refusal_comes_before_a_budget_refusal(
    ingress: TestClient,
    in_tenant: InTenant,
    guard_redis: AsyncRedis,
    settings: Settings,
    tenant: Tenant,
) -> None:
    """The request itself can never run: 422, not a 429 whose retry would be refused again."""
    set_limits(in_tenant, tenant, daily_budget_micros=10_000)
    spend(in_tenant, guard_redis, settings, tenant, 10_000)
    assert_cap_refused(post(ingress, tenant, max_usd="0.001"))
    assert_refused(post(ingress, tenant, max_usd="0.01"), "day")


# -- the console command ---------------------------------------------------------------------


def test_quest_submit_refuses_a_spent_budget_in_one_line(
    in_tenant: InTenant,
    rds: redis.Redis,
    guard_redis: AsyncRedis,
    settings: Settings,
    tenant: Tenant,
    admin_conn: AdminConn,
) -> None:
    rds.flushdb()
    set_limits(in_tenant, tenant, daily_budget_micros=10_000)
    spend(in_tenant, guard_redis, settings, tenant, 10_000)
    rows = quest_rows(admin_conn, tenant)
    result = run(settings, "quest", "submit", "--company", str(tenant.id), "--goal", "g")
    line = assert_one_line_error(result)
    assert "daily budget" in line and "spent" in line, line
    assert result.stdout == ""
    assert quest_rows(admin_conn, tenant) == rows
    assert rds.llen(QUEUE) == 0


def test_quest_submit_refuses_a_cap_below_the_least_call_in_one_line(
    in_tenant: InTenant, rds: redis.Redis, settings: Settings, tenant: Tenant, admin_conn: AdminConn
) -> None:
    rds.flushdb()
    rows = quest_rows(admin_conn, tenant)
    result = run(
        settings,
        "quest",
        "submit",
        "--company",
        str(tenant.id),
        "--goal",
        "g",
        "--max-usd",
        "0.001",
    )
    line = assert_one_line_error(result)
    assert "max_usd of $0.001" in line and "first step" in line, line
    assert result.stdout == ""
    assert quest_rows(admin_conn, tenant) == rows
    assert rds.llen(QUEUE) == 0
