"""The guard on a real Redis: prices, reserve and settle, tiers, rebuilds, races, limits."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from guard import (
    Admissions,
    Guard,
    Limits,
    PriceTable,
    Refused,
    Reserved,
    Scope,
    Tier,
    UnpricedModel,
    Usage,
)

PRICES = PriceTable.load()
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def limits(**kw: int) -> Limits:
    base = {
        "quest_cap": 10_000,
        "quest_ceiling": 50_000,
        "daily_budget": 100_000,
        "monthly_budget": 1_000_000,
    }
    return Limits(**{**base, **kw})


# -- money ------------------------------------------------------------------------------------


@asynccontextmanager
async def a_quest(url: str) -> AsyncIterator[tuple[Guard, uuid.UUID, list[Scope], Limits]]:
    """A guard on its own client, and the scopes of a new quest (cap 10,000) of a new company."""
    async with Redis.from_url(url) as client:
        guard = Guard(client)
        company, lim = uuid.uuid4(), limits()
        yield guard, company, guard.scopes(company, uuid.uuid4(), 10_000, lim, NOW), lim


def test_cache_writes_and_reads_are_priced_from_a_recorded_usage() -> None:
    # A usage object as the Messages API reports it (values from a recorded reply).
    usage = {
        "input_tokens": 1000,
        "output_tokens": 500,
        "cache_creation_input_tokens": 1500,
        "cache_creation": {"ephemeral_5m_input_tokens": 1200, "ephemeral_1h_input_tokens": 300},
        "cache_read_input_tokens": 2400,
        "service_tier": "standard",
    }
    # Sonnet 5.5 per MTok: input $2, 5m writes $2.50, 1h writes $4, cache hits $0.10, output $10.
    expected = 1000 * 2 + 1200 * 2.5 + 300 * 4 + 2400 * 0.10 + 500 * 10
    assert PRICES.cost("claude-sonnet-5-5", Usage.from_api(usage), date(2026, 11, 29)) == expected
    # Before 2026-10-07, cache hits cost $0.20.
    assert (
        PRICES.cost("claude-sonnet-5-5", Usage.from_api(usage), date(2026, 10, 1))
        == expected + 2400 * 0.10
    )


def test_writes_without_a_ttl_split_are_priced_at_the_dearer_hour_rate() -> None:
    usage = Usage.from_api(
        {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 1000}
    )
    assert usage.cache_write_1h == 1000 and usage.cache_write_5m == 0


def test_haiku_long_prompts_are_priced_on_every_token_at_the_higher_tier() -> None:
    short = Usage(input_tokens=100_000, output_tokens=1000)
    long = Usage(input_tokens=100_001, output_tokens=1000)
    assert PRICES.cost("claude-haiku-5-5", short) == -(
        -(100_000 * 100_000 + 1000 * 500_000) // 1_000_000
    )
    assert PRICES.cost("claude-haiku-5-5", long) == -(
        -(100_001 * 500_000 + 1000 * 2_500_000) // 1_000_000
    )


def test_an_unpriced_model_is_refused_not_free() -> None:
    with pytest.raises(UnpricedModel, match="no price"):
        PRICES.cost("claude-imaginary-9", Usage(input_tokens=1, output_tokens=1))
    with pytest.raises(UnpricedModel):
        PRICES.worst_case("claude-imaginary-9", 10, 10)


@given(
    model=st.sampled_from(["claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5"]),
    prompt=st.integers(0, 300_000),
    split=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    max_tokens=st.integers(1, 64_000),
    out=st.floats(0, 1),
)
@settings(max_examples=300, deadline=None)
def test_the_worst_case_is_never_below_the_real_cost(
    model: str, prompt: int, split: tuple[float, float], max_tokens: int, out: float
) -> None:
    read = int(prompt * split[0])
    plain = prompt - read
    usage = Usage(input_tokens=plain, cache_read=read, output_tokens=int(max_tokens * out))
    assert PRICES.cost(model, usage) <= PRICES.worst_case(model, prompt, max_tokens)
    writes = Usage(input_tokens=plain, cache_write_1h=read, output_tokens=max_tokens)
    assert PRICES.cost(model, writes) <= PRICES.worst_case(
        model, prompt, max_tokens, cache_writes=True
    )


# -- reserve and settle -----------------------------------------------------------------------
# A redis.asyncio client is bound to the loop it first connects on, so each test opens its own
# inside the coroutine it runs with asyncio.run, and closes it there (``async with``).


@pytest.fixture
def url(rds: redis.Redis, redis_url: str) -> str:
    """The session's scratch Redis database, emptied."""
    rds.flushdb()
    return redis_url


async def fresh_ledger(_scope: object) -> tuple[int, int]:
    return 0, 0


def test_a_reservation_that_does_not_fit_is_not_made(url: str) -> None:
    async def main() -> None:
        async with a_quest(url) as (guard, company, scopes, lim):
            assert await guard.reserve(
                company, "q:1:1", 6_000, scopes, lim, ledger=fresh_ledger
            ) == Reserved(6_000)
            refused = await guard.reserve(company, "q:2:1", 6_000, scopes, lim, ledger=fresh_ledger)
            assert isinstance(refused, Refused)
            assert (refused.scope.name, refused.spent, refused.reserved, refused.limit) == (
                "quest",
                0,
                6_000,
                10_000,
            )
            assert not refused.exhausted
            assert [
                (s.name, spent, reserved) for s, spent, reserved in await guard.levels(scopes)
            ] == [
                ("quest", 0, 6_000),
                ("day", 0, 6_000),
                ("month", 0, 6_000),
            ]

    asyncio.run(main())


def test_reserving_or_settling_twice_counts_once(url: str) -> None:
    async def main() -> None:
        async with a_quest(url) as (guard, company, scopes, lim):
            await guard.reserve(company, "q:1:1", 3_000, scopes, lim, ledger=fresh_ledger)
            again = await guard.reserve(company, "q:1:1", 3_000, scopes, lim, ledger=fresh_ledger)
            assert again == Reserved(3_000, duplicate=True)
            first = await guard.settle(
                company, "q:1:1", amount=3_000, actual=1_234, scopes=scopes, limits=lim
            )
            second = await guard.settle(
                company, "q:1:1", amount=3_000, actual=1_234, scopes=scopes, limits=lim
            )
            assert [lv.spent for lv in first] == [1_234, 1_234, 1_234] and second == []
            assert [(spent, reserved) for _, spent, reserved in await guard.levels(scopes)] == [
                (1_234, 0)
            ] * 3

    asyncio.run(main())


def test_each_tier_is_crossed_once(url: str) -> None:
    async def main() -> None:
        async with a_quest(url) as (guard, company, scopes, lim):
            crossings = []
            for i in range(10):
                await guard.reserve(company, f"q:{i}:1", 1_000, scopes, lim, ledger=fresh_ledger)
                for lv in await guard.settle(
                    company, f"q:{i}:1", amount=1_000, actual=1_000, scopes=scopes, limits=lim
                ):
                    if lv.crossed and lv.scope.name == "quest":
                        crossings.append((i, lv.tier))
            # 5,000 spent is 50 % (warn), 8,000 is 80 % (slow), 10,000 is 100 % (halt)
            assert crossings == [(4, Tier.warn), (7, Tier.slow), (9, Tier.halt)]
            refused = await guard.reserve(company, "q:10:1", 1, scopes, lim, ledger=fresh_ledger)
            assert isinstance(refused, Refused) and refused.exhausted

    asyncio.run(main())


def test_missing_counters_are_rebuilt_from_the_ledger_before_reserving(
    url: str, rds: redis.Redis
) -> None:
    asked = []

    async def ledger(scope: object) -> tuple[int, int]:
        asked.append(scope.name)  # type: ignore[attr-defined]
        return {"quest": (7_000, 1_000), "day": (40_000, 1_000), "month": (90_000, 1_000)}[
            scope.name
        ]  # type: ignore[attr-defined]

    async def main() -> None:
        async with a_quest(url) as (guard, company, scopes, lim):
            refused = await guard.reserve(company, "q:3:1", 2_500, scopes, lim, ledger=ledger)
            assert sorted(asked) == ["day", "month", "quest"]
            assert isinstance(refused, Refused) and refused.scope.name == "quest"
            assert (refused.spent, refused.reserved) == (7_000, 1_000)
            assert await guard.reserve(
                company, "q:3:2", 2_000, scopes, lim, ledger=ledger
            ) == Reserved(2_000)
            assert len(asked) == 3, "rebuilt once"
            # the rebuild remembers the tier already reached, so it is not reported again
            assert int(rds.hget(scopes[0].key, "tier") or 0) == Tier.warn

    asyncio.run(main())


def test_a_settlement_after_redis_lost_the_reservation_uses_the_rebuilt_counters(
    url: str, rds: redis.Redis
) -> None:
    async def main() -> None:
        async with a_quest(url) as (guard, company, scopes, lim):
            await guard.reserve(company, "q:1:1", 3_000, scopes, lim, ledger=fresh_ledger)
            rds.flushdb()  # Redis restarted without its data, the call still in flight
            for s in scopes:  # a rebuild from the ledger, where the call is still open
                await guard.rebuild(s, 0, 3_000, lim)
            levels = await guard.settle(
                company, "q:1:1", amount=3_000, actual=2_000, scopes=scopes, limits=lim
            )
            assert [lv.spent for lv in levels] == [2_000] * 3
            assert [(spent, reserved) for _, spent, reserved in await guard.levels(scopes)] == [
                (2_000, 0)
            ] * 3

    asyncio.run(main())


# -- the race ------------------------------------------------------------------------------------
# Four processes and a thread of this one race for one quest's cap, each on its own event loop
# and its own client, each loop running 8 reservations at once: every racer's Lua scripts
# reach Redis on separate connections, interleaved, as different workers' would.

CAP = 50_000
AMOUNT = 7_000  # at most 7 reservations fit


async def _race(url: str, company: str, quest: str, tag: str, n: int) -> list[tuple[str, int, int]]:
    """Reserve and settle ``n`` calls concurrently against one small cap; say what happened."""
    lim = limits(quest_cap=CAP, quest_ceiling=CAP)
    async with Redis.from_url(url) as client:
        guard = Guard(client)
        scopes = guard.scopes(uuid.UUID(company), uuid.UUID(quest), CAP, lim, NOW)
        gate = asyncio.Barrier(n)

        async def one(i: int) -> tuple[str, int, int]:
            key = f"{tag}:{i}"
            await gate.wait()
            got = await guard.reserve(
                uuid.UUID(company), key, AMOUNT, scopes, lim, ledger=fresh_ledger
            )
            if isinstance(got, Reserved):
                actual = random.randint(AMOUNT // 2, AMOUNT)
                settled = await guard.settle(
                    uuid.UUID(company), key, amount=AMOUNT, actual=actual, scopes=scopes, limits=lim
                )
                again = await guard.settle(
                    uuid.UUID(company), key, amount=AMOUNT, actual=actual, scopes=scopes, limits=lim
                )
                return (key, actual, len(settled) + 10 * len(again))
            return (key, 0, -1)

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def _racer(
    url: str, company: str, quest: str, tag: str, n: int, out: multiprocessing.Queue[object]
) -> None:
    """One racer, on an event loop of its own (in a process or a thread); report to ``out``."""
    out.put(asyncio.run(_race(url, company, quest, tag, n)))


def test_concurrent_reservations_never_pass_the_cap(url: str) -> None:
    company, quest = str(uuid.uuid4()), str(uuid.uuid4())
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[object] = ctx.Queue()
    procs = [
        ctx.Process(target=_racer, args=(url, company, quest, f"p{p}", 8, out)) for p in range(4)
    ]
    for p in procs:
        p.start()
    here = threading.Thread(target=_racer, args=(url, company, quest, "main", 8, out))
    here.start()
    results = [r for _ in range(5) for r in out.get(timeout=60)]  # type: ignore[union-attr]
    here.join()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert len(results) == 40, "every reservation attempt reported back"
    won = [r for r in results if r[2] != -1]
    assert 0 < len(won) < len(results), "some calls fit, the others were refused"
    assert all(r[2] == 3 for r in won), "each settled exactly once (3 scopes, then a no-op)"
    lim = limits(quest_cap=CAP, quest_ceiling=CAP)

    async def levels() -> list[tuple[Scope, int, int]]:
        async with Redis.from_url(url) as client:
            guard = Guard(client)
            scopes = guard.scopes(uuid.UUID(company), uuid.UUID(quest), CAP, lim, NOW)
            return await guard.levels(scopes)

    (_, spent, reserved), *_ = asyncio.run(levels())
    assert reserved == 0, "no reservation left behind"
    assert spent == sum(r[1] for r in won) <= CAP


# -- policy and admission -----------------------------------------------------------------------


def test_a_quest_may_lower_its_cap_or_raise_it_only_to_the_ceiling() -> None:
    lim = limits(quest_cap=5_000, quest_ceiling=20_000)
    assert lim.quest_cap_for(None) == 5_000
    assert lim.quest_cap_for(1_000) == 1_000
    assert lim.quest_cap_for(15_000) == 15_000
    assert lim.quest_cap_for(99_000) == 20_000
    with pytest.raises(ValueError, match="tiers"):
        limits(warn_pct=90, slow_pct=80)


def test_the_slow_delay_grows_as_spend_nears_the_cap() -> None:
    lim = limits()
    delays = [
        lim.slow_delay_ms(spent, 10_000, shortest_ms=1_000, longest_ms=30_000)
        for spent in range(0, 10_001, 500)
    ]
    assert delays[:16] == [0] * 16  # below 80 %
    growing = delays[16:]
    assert growing[0] == 1_000 and growing[-1] == 30_000
    assert growing == sorted(growing) and len(set(growing)) == len(growing)


def test_quest_starts_per_minute(url: str) -> None:
    async def main() -> None:
        async with Redis.from_url(url) as client:
            admissions, company = Admissions(client), uuid.uuid4()
            minute = 1_700_000_040_000 - 1_700_000_040_000 % 60_000
            assert [(await admissions.start(company, 3, minute + 1_000)).ok for _ in range(4)] == [
                True,
                True,
                True,
                False,
            ]
            refused = await admissions.start(company, 3, minute + 45_000)
            assert not refused.ok and refused.retry_after_s == 15
            assert (await admissions.start(company, 3, minute + 60_000)).ok, (
                "a new minute, a new window"
            )

    asyncio.run(main())


def test_running_slots_are_limited_refreshed_and_reclaimed(url: str) -> None:
    async def main() -> None:
        async with Redis.from_url(url) as client:
            admissions, company = Admissions(client), uuid.uuid4()
            a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
            t = 1_000_000
            assert (await admissions.take_slot(company, a, 2, t, 10_000)).ok
            assert (await admissions.take_slot(company, b, 2, t, 10_000)).ok
            full = await admissions.take_slot(company, c, 2, t + 1_000, 10_000)
            assert not full.ok and full.retry_after_ms == 9_000
            assert (await admissions.take_slot(company, a, 2, t + 5_000, 10_000)).ok, (
                "a holder refreshes its slot"
            )
            # b's worker died: its slot lapses and c gets it
            assert (await admissions.take_slot(company, c, 2, t + 10_001, 10_000)).ok
            assert sorted(await admissions.running(company, t + 10_001)) == sorted([str(a), str(c)])
            await admissions.release_slot(company, a)
            assert await admissions.running(company, t + 10_001) == [str(c)]

    asyncio.run(main())
