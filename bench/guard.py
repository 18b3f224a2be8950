"""Reserve+settle pairs per second through the guard from one process, beside a raw
redis.asyncio EVALSHA loop doing two calls per iteration on the same Redis in the same run
(the same client on the same event loop, awaiting each call in turn as the guard does).

Raw side, two ways: the guard's own two Lua scripts with their arguments prepared in advance
(what the guard costs beyond its round trips), and a trivial script (what a round trip costs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from datetime import UTC, datetime

from redis.asyncio import Redis

from guard import Guard, Limits
from guard.scripts import LuaScript
from system2.scratch import scratch_redis

LIMITS = Limits(quest_cap=10**15, quest_ceiling=10**15, daily_budget=10**15, monthly_budget=10**15)


async def through_guard(client: Redis, n: int) -> float:
    guard = Guard(client, prefix="bench:g")
    company, quest = uuid.uuid4(), uuid.uuid4()
    scopes = guard.scopes(company, quest, LIMITS.quest_cap, LIMITS, datetime.now(UTC))

    async def ledger(_scope: object) -> tuple[int, int]:
        return 0, 0

    t0 = time.perf_counter()
    for i in range(n):
        key = f"{quest}:{i}:1"
        await guard.reserve(company, key, 5_000, scopes, LIMITS, ledger=ledger)
        await guard.settle(company, key, amount=5_000, actual=1_234, scopes=scopes, limits=LIMITS)
    return n / (time.perf_counter() - t0)


async def raw_same_scripts(client: Redis, n: int) -> float:
    reserve, settle = LuaScript(client, "reserve"), LuaScript(client, "settle")
    run = uuid.uuid4()  # fresh reservation keys each round: a reused key takes the "dup" path
    scopes = [f"bench:raw:{s}:{run}" for s in ("q", "d", "m")]
    for key in scopes:
        await client.hset(key, mapping={"spent": 0, "reserved": 0, "cap": 10**15, "tier": 0})
    reserve_args = [5_000, 100, 3600, "quest", 10**15, "day", 10**15, "month", 10**15]
    settle_args = [5_000, 1_234, 50, 80, 100, 3600]
    sha_r, sha_s = reserve.sha, settle.sha
    await client.script_load(reserve.source)
    await client.script_load(settle.source)
    t0 = time.perf_counter()
    for i in range(n):
        rkey = f"bench:raw:r:{run}:{i}"
        await client.evalsha(sha_r, 4, rkey, *scopes, *reserve_args)
        await client.evalsha(sha_s, 4, rkey, *scopes, *settle_args)
    return n / (time.perf_counter() - t0)


async def raw_trivial(client: Redis, n: int) -> float:
    sha = await client.script_load("return 1")
    t0 = time.perf_counter()
    for _ in range(n):
        await client.evalsha(sha, 0)
        await client.evalsha(sha, 0)
    return n / (time.perf_counter() - t0)


async def measure(url: str, pairs: int, n_rounds: int) -> dict[str, list[float]]:
    """Pairs/s of each side, ``n_rounds`` times, on one client made on this event loop."""
    rounds: dict[str, list[float]] = {"trivial": [], "same": [], "ours": []}
    async with Redis.from_url(url) as client:
        await raw_trivial(client, 1000)  # warm up
        for _ in range(n_rounds):  # interleaved, so drift in the machine hits all three
            rounds["trivial"].append(await raw_trivial(client, pairs))
            rounds["same"].append(await raw_same_scripts(client, pairs))
            rounds["ours"].append(await through_guard(client, pairs))
    return rounds


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with scratch_redis(os.environ.get("S2_REDIS_URL", "redis://127.0.0.1:6379/0")) as url:
        rounds = asyncio.run(measure(url, args.pairs, args.rounds))
    trivial, same, ours = (statistics.median(rounds[k]) for k in ("trivial", "same", "ours"))
    print(f"medians of {args.rounds} interleaved rounds of {args.pairs} pairs")
    print(f"raw EVALSHA, trivial script, 2 calls/iteration: {trivial:,.0f} pairs/s")
    print(f"raw EVALSHA, the guard's reserve+settle scripts:  {same:,.0f} pairs/s")
    print(f"through Guard.reserve + Guard.settle:             {ours:,.0f} pairs/s")
    print(
        f"ratio: {ours / same:.2f} of the raw loop on the same scripts (target >= 0.8), {ours / trivial:.2f} of trivial"
    )


if __name__ == "__main__":
    main()
