"""Fair dispatch on real Redis with a real consumer: a company's backlog does not hold back
another's steps, backlogged companies share in proportion to their weights, started quests
go first, and what is handed back keeps its place (``workers.fair_queue``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import dramatiq
import pytest
import redis
from redis.asyncio import Redis

from messages.redis_keys import FAIR_WEIGHTS, fair_prefix, fair_waiting_key
from messages.transport import build_broker
from tests.consumer_support import ACTOR, FAIR_PREFIX, consumer, held, waiting
from workers.consumer import Consumer
from workers.fair_queue import FairQueue

Ran = list[tuple[str, int]]


@pytest.fixture
def queue() -> str:
    return f"{FAIR_PREFIX}{uuid.uuid4().hex[:12]}"


def publish_steps(
    redis_url: str, queue: str, company: str, count: int, step: int = 1, *, first: int = 0
) -> None:
    """Quest-step-shaped messages of ``company`` through Dramatiq's own broker, numbered
    from ``first`` (``options["n"]``)."""
    broker = build_broker(redis_url, middleware=[])
    broker.declare_queue(queue)
    for n in range(count):
        envelope = {"company_id": company, "payload": {"quest_id": str(uuid.uuid4()), "step": step}}
        broker.enqueue(
            dramatiq.Message(
                queue_name=queue,
                actor_name=ACTOR,
                args=(envelope,),
                kwargs={},
                options={"n": first + n},
            )
        )
    broker.close()


def recorder(ran: Ran, hold_s: float = 0.0) -> Callable[[dramatiq.Message[Any]], Awaitable[None]]:
    async def job(message: dramatiq.Message[Any]) -> None:
        envelope = message.args[0]
        ran.append((envelope["company_id"], envelope["payload"]["step"]))
        await asyncio.sleep(hold_s)

    return job


async def run_until(c: Consumer, check: Callable[[], bool], timeout: float = 30.0) -> None:
    task = asyncio.create_task(c.run())
    try:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, "timed out"
            assert not task.done(), "the consumer stopped"
            await asyncio.sleep(0.01)
    finally:
        c.stop()
        c.stop()
        await task


def test_a_company_arriving_behind_a_backlog_runs_in_its_next_turn(
    redis_url: str, queue: str
) -> None:
    a, b = "a-" + uuid.uuid4().hex, "b-" + uuid.uuid4().hex
    publish_steps(redis_url, queue, a, 400)
    ran: Ran = []

    async def main() -> None:
        client = Redis.from_url(redis_url)
        c = consumer(client, queue, recorder(ran, 0.005), in_flight=4)
        task = asyncio.create_task(c.run())
        while len(ran) < 50:
            await asyncio.sleep(0.01)
        at_b = len(ran)
        await asyncio.to_thread(publish_steps, redis_url, queue, b, 3)
        while sum(1 for who, _ in ran if who == b) < 3:
            assert not task.done()
            await asyncio.sleep(0.01)
        b_done_at = max(i for i, (who, _) in enumerate(ran) if who == b)
        # B's three steps ran in its next turns: the steps already fetched (4) and one of
        # A's turn for each of B's, not behind A's 350 still queued.
        assert b_done_at - at_b <= 4 + 2 * 3 + 2, (at_b, b_done_at)
        assert waiting(redis_url, queue) > 300  # A's backlog was still there
        c.stop()
        c.stop()
        await task
        await client.aclose()

    asyncio.run(main())


def test_backlogged_companies_with_equal_weights_take_equal_turns(
    redis_url: str, queue: str
) -> None:
    companies = [f"{x}-{uuid.uuid4().hex}" for x in "abc"]
    for company in companies:  # one after the other: a FIFO would run all of a's first
        publish_steps(redis_url, queue, company, 200)
    ran: Ran = []

    async def main() -> None:
        client = Redis.from_url(redis_url)
        await run_until(
            consumer(client, queue, recorder(ran), in_flight=1), lambda: len(ran) >= 150
        )
        await client.aclose()

    asyncio.run(main())
    shares = Counter(who for who, _ in ran[:150])
    for company in companies:
        assert 45 <= shares[company] <= 55, shares  # within 10 % of an equal share


def test_a_heavier_company_gets_a_share_in_proportion_to_its_weight(
    redis_url: str, queue: str
) -> None:
    a, b = "a-" + uuid.uuid4().hex, "b-" + uuid.uuid4().hex
    redis.Redis.from_url(redis_url).hset(FAIR_WEIGHTS, b, 3)
    publish_steps(redis_url, queue, a, 200)
    publish_steps(redis_url, queue, b, 200)
    ran: Ran = []

    async def main() -> None:
        client = Redis.from_url(redis_url)
        await run_until(
            consumer(client, queue, recorder(ran), in_flight=1), lambda: len(ran) >= 120
        )
        await client.aclose()

    asyncio.run(main())
    shares = Counter(who for who, _ in ran[:120])
    assert 81 <= shares[b] <= 99 and 21 <= shares[a] <= 39, shares  # 3 : 1, within 10 %


def test_steps_of_started_quests_go_before_first_steps(redis_url: str, queue: str) -> None:
    a = "a-" + uuid.uuid4().hex
    publish_steps(redis_url, queue, a, 30, step=1)
    publish_steps(redis_url, queue, a, 5, step=4)
    ran: Ran = []

    async def main() -> None:
        client = Redis.from_url(redis_url)
        await run_until(consumer(client, queue, recorder(ran), in_flight=1), lambda: len(ran) >= 35)
        await client.aclose()

    asyncio.run(main())
    assert [step for _, step in ran[:5]] == [4] * 5
    assert [step for _, step in ran[5:]] == [1] * 30


def test_steps_handed_back_at_a_stop_run_first_next_time(redis_url: str, queue: str) -> None:
    a = "a-" + uuid.uuid4().hex
    publish_steps(redis_url, queue, a, 3, step=2)  # fetched and held, then handed back
    started: list[int] = []

    async def hold(message: dramatiq.Message[Any]) -> None:
        started.append(message.options["n"])
        await asyncio.Event().wait()

    async def first() -> None:
        client = Redis.from_url(redis_url)
        c = consumer(client, queue, hold, in_flight=3, grace_s=0.0)
        await run_until(c, lambda: len(started) == 3)
        await client.aclose()

    asyncio.run(first())
    publish_steps(redis_url, queue, a, 10, step=2)
    ran: Ran = []
    order: list[int] = []

    async def job(message: dramatiq.Message[Any]) -> None:
        order.append(message.options["n"])
        await recorder(ran)(message)

    async def second() -> None:
        client = Redis.from_url(redis_url)
        await run_until(consumer(client, queue, job, in_flight=1), lambda: len(ran) >= 13)
        await client.aclose()

    asyncio.run(second())
    assert sorted(order[:3]) == [0, 1, 2] and order[3:] == list(range(10))


def test_a_drained_queue_keeps_nothing_per_company(redis_url: str, queue: str) -> None:
    companies = [f"{n}-{uuid.uuid4().hex}" for n in range(20)]
    for company in companies:
        publish_steps(redis_url, queue, company, 2)
    ran: Ran = []

    async def main() -> None:
        client = Redis.from_url(redis_url)
        await run_until(consumer(client, queue, recorder(ran), in_flight=8), lambda: len(ran) >= 40)
        await client.aclose()

    asyncio.run(main())
    r = redis.Redis.from_url(redis_url)
    left = sorted(k.decode() for k in r.scan_iter(f"{fair_prefix(queue)}:*"))
    assert left == [f"{fair_prefix(queue)}:clock"]  # no lane, ring entry or count per company
    assert r.hlen(fair_waiting_key(queue)) == 0


def test_turned_off_fair_dispatch_puts_waiting_steps_back_on_the_plain_queue(
    redis_url: str, queue: str
) -> None:
    a, b = "a-" + uuid.uuid4().hex, "b-" + uuid.uuid4().hex
    publish_steps(redis_url, queue, a, 5)
    held: list[int] = []

    async def hold(message: dramatiq.Message[Any]) -> None:
        held.append(message.options["n"])
        await asyncio.Event().wait()

    async def sort_then_unsort() -> int:
        client = Redis.from_url(redis_url)  # a fair fetch sorts a's five into lanes
        await run_until(consumer(client, queue, hold, in_flight=1, grace_s=0.0), lambda: held)
        await asyncio.to_thread(publish_steps, redis_url, queue, b, 2)  # still in the intake
        moved = await FairQueue(client, queue, "ops", heartbeat_timeout_ms=60_000).unsort()
        await client.aclose()
        return moved

    assert asyncio.run(sort_then_unsort()) == 5
    r = redis.Redis.from_url(redis_url)
    intake = [r.hget(f"dramatiq:{queue}.msgs", i) for i in r.lrange(f"dramatiq:{queue}", 0, -1)]
    companies = [json.loads(body)["args"][0]["company_id"] for body in intake if body]
    assert companies == [b, b] + [a] * 5  # all seven where a plain FIFO fetch finds them
    assert not list(r.scan_iter(f"{fair_prefix(queue)}:*:*"))  # no lane left, no ring


def test_a_killed_consumer_s_steps_come_back_ahead_of_their_company_s_backlog(
    redis_url: str, queue: str
) -> None:
    a = "a-" + uuid.uuid4().hex
    publish_steps(redis_url, queue, a, 3)
    victim = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.consumer_support", "hold", redis_url, queue, victim],
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    try:
        deadline = time.monotonic() + 30
        while held(redis_url, queue, victim) < 3:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    publish_steps(redis_url, queue, a, 20, first=100)  # queued behind them meanwhile
    killed_at = time.monotonic()
    order: list[int] = []
    ran: Ran = []

    async def job(message: dramatiq.Message[Any]) -> None:
        order.append(message.options["n"])
        await recorder(ran, 0.2)(message)

    async def main() -> None:
        client = Redis.from_url(redis_url)
        c = consumer(client, queue, job, in_flight=1, heartbeat_timeout_ms=1_000)
        await run_until(c, lambda: len(ran) >= 23)
        await client.aclose()

    asyncio.run(main())
    assert time.monotonic() - killed_at < 15
    assert held(redis_url, queue, victim) == 0
    # The victim's three came back once its heartbeat fell silent (1 s: a handful of the
    # 0.2 s steps), at the head of their company's lane, not behind the twenty.
    assert sorted(order) == [0, 1, 2, *range(100, 120)]
    assert max(order.index(n) for n in (0, 1, 2)) < 12, order
