"""The event-loop consumer on real Redis, with messages published by Dramatiq's own broker:
many messages in flight at once without a thread each, a bound that leaves the rest on the
queue, acks after the actor, Dramatiq's retries and dead letters, and nothing lost at a
graceful stop or a kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from typing import Any

import dramatiq
import pytest
import redis
from redis.asyncio import Redis

from messages.redis_keys import (
    DEAD_LETTER_REASONS,
    dead_letters_key,
    delayed_queue_key,
    queue_key,
)
from tests.consumer_support import FAIR_PREFIX, bodies, consumer, held, publish, waiting
from workers.errors import TryLater
from workers.queue_protocol import QueueProtocol


@pytest.fixture(params=["fifo", "fair"])
def queue(request: pytest.FixtureRequest) -> str:
    """Every test runs on a plain Dramatiq queue and on a fair one (``workers.fair_queue``)."""
    return f"{FAIR_PREFIX if request.param == 'fair' else 't-'}{uuid.uuid4().hex[:12]}"


async def until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            for t in asyncio.all_tasks():
                t.print_stack(limit=4)
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.02)


def test_hundreds_of_waiting_messages_run_at_once_on_one_thread(redis_url: str, queue: str) -> None:
    publish(redis_url, queue, 600)
    running, peak, done = 0, 0, []
    threads = threading.active_count()

    async def wait_a_second(message: dramatiq.Message[Any]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(1.0)
        running -= 1
        done.append(message.args[0])

    async def main() -> None:
        c = consumer(Redis.from_url(redis_url), queue, wait_a_second, in_flight=1_000)
        task = asyncio.create_task(c.run())
        await until(lambda: len(done) == 600)
        c.stop()
        await task

    started = time.monotonic()
    asyncio.run(main())
    took = time.monotonic() - started
    assert sorted(done) == list(range(600))
    assert peak >= 500, f"only {peak} ran at once"
    assert took < 15, f"600 one-second waits took {took:.1f}s"  # serially: 600 s
    assert threading.active_count() <= threads + 1  # no thread per message
    assert waiting(redis_url, queue) == 0 and bodies(redis_url, queue) == 0


def test_beyond_its_bound_messages_stay_on_the_queue(redis_url: str, queue: str) -> None:
    publish(redis_url, queue, 50)
    gate = asyncio.Event()
    started: list[int] = []
    consumer_id = uuid.uuid4().hex

    async def blocked(message: dramatiq.Message[Any]) -> None:
        started.append(message.args[0])
        await gate.wait()

    async def main() -> None:
        c = consumer(
            Redis.from_url(redis_url), queue, blocked, in_flight=7, consumer_id=consumer_id
        )
        task = asyncio.create_task(c.run())
        await until(lambda: len(started) == 7)
        await asyncio.sleep(0.5)  # time for a wrongly unbounded fetch to take more
        assert len(started) == 7
        assert held(redis_url, queue, consumer_id) == 7
        assert waiting(redis_url, queue) == 43  # not prefetched into this process
        gate.set()
        await until(lambda: len(started) == 50)
        c.stop()
        await task

    asyncio.run(main())
    assert sorted(started) == list(range(50))
    assert held(redis_url, queue, consumer_id) == 0
    assert bodies(redis_url, queue) == 0


def test_a_failure_is_retried_through_the_delayed_queue_with_its_count(
    redis_url: str, queue: str
) -> None:
    publish(redis_url, queue, 20)
    attempts: Counter[str] = Counter()
    retries_seen: dict[str, int] = {}

    async def flaky(message: dramatiq.Message[Any]) -> None:
        attempts[message.message_id] += 1
        if attempts[message.message_id] <= 2:
            raise RuntimeError("not yet")
        retries_seen[message.message_id] = message.options["retries"]

    async def main() -> None:
        c = consumer(Redis.from_url(redis_url), queue, flaky, min_backoff_ms=20, max_retries=5)
        task = asyncio.create_task(c.run())
        await until(lambda: len(retries_seen) == 20)
        c.stop()
        await task

    asyncio.run(main())
    assert set(attempts.values()) == {3}
    assert set(retries_seen.values()) == {2}
    r = redis.Redis.from_url(redis_url)
    assert r.llen(delayed_queue_key(queue)) == 0 and bodies(redis_url, f"{queue}.DQ") == 0
    assert r.zcard(dead_letters_key(queue)) == 0


class RedisAwayAtFirst(QueueProtocol):
    """The queue's Redis fails the first three moves of a message (a retry's, a due delayed
    message's) as a connection lost mid-command does."""

    failures = 0

    async def enqueue(self, queue: str, redis_id: str, body: bytes) -> None:
        if RedisAwayAtFirst.failures < 3:
            RedisAwayAtFirst.failures += 1
            raise redis.ConnectionError("Connection closed by server.")
        await super().enqueue(queue, redis_id, body)


def test_a_retry_or_a_due_message_that_redis_fails_to_move_is_moved_when_it_is_back(
    redis_url: str, queue: str
) -> None:
    publish(redis_url, queue, 3)
    attempts: Counter[str] = Counter()

    async def fails_once(message: dramatiq.Message[Any]) -> None:
        attempts[message.message_id] += 1
        if attempts[message.message_id] == 1:
            raise RuntimeError("not yet")

    async def main() -> None:
        c = consumer(
            Redis.from_url(redis_url),
            queue,
            fails_once,
            consumer_id="flaky",
            min_backoff_ms=20,
            protocol_class=RedisAwayAtFirst,
        )
        task = asyncio.create_task(c.run())
        await until(lambda: sorted(attempts.values()) == [2, 2, 2], timeout=30)
        await until(lambda: held(redis_url, queue, "flaky") == 0)
        c.stop()
        await task

    asyncio.run(main())
    assert RedisAwayAtFirst.failures == 3
    r = redis.Redis.from_url(redis_url)
    assert r.zcard(dead_letters_key(queue)) == 0
    assert held(redis_url, f"{queue}.DQ", "flaky") == 0, "no message stranded in an acks set"
    assert bodies(redis_url, queue) == 0 and bodies(redis_url, f"{queue}.DQ") == 0


def test_try_later_waits_as_long_as_it_asked(redis_url: str, queue: str) -> None:
    publish(redis_url, queue, 1)
    seen: list[float] = []

    async def busy_once(message: dramatiq.Message[Any]) -> None:
        seen.append(time.monotonic())
        if len(seen) == 1:
            raise TryLater("the provider is busy", retry_after_ms=1_500)

    async def main() -> None:
        c = consumer(Redis.from_url(redis_url), queue, busy_once, min_backoff_ms=10)
        task = asyncio.create_task(c.run())
        await until(lambda: len(seen) == 2)
        c.stop()
        await task

    asyncio.run(main())
    assert seen[1] - seen[0] >= 1.4


def test_out_of_retries_or_final_a_message_is_dead_lettered_with_its_reason(
    redis_url: str, queue: str
) -> None:
    ids = publish(redis_url, queue, 4)
    attempts: Counter[int] = Counter()

    class Final(Exception):
        pass

    async def failing(message: dramatiq.Message[Any]) -> None:
        attempts[message.args[0]] += 1
        if message.args[0] % 2:
            raise Final("this input can never work")
        raise RuntimeError("still broken")

    async def main() -> None:
        c = consumer(
            Redis.from_url(redis_url),
            queue,
            failing,
            min_backoff_ms=10,
            max_retries=2,
            throws=(Final,),
        )
        task = asyncio.create_task(c.run())
        r = redis.Redis.from_url(redis_url)
        await until(lambda: r.zcard(dead_letters_key(queue)) == 4)
        c.stop()
        await task

    asyncio.run(main())
    assert attempts == {0: 3, 1: 1, 2: 3, 3: 1}  # final errors are not retried
    r = redis.Redis.from_url(redis_url)
    reasons = {mid: json.loads(r.hget(DEAD_LETTER_REASONS, mid) or b"{}") for mid in ids}
    assert [reasons[mid]["reason"] for mid in ids] == [
        "still broken",
        "this input can never work",
        "still broken",
        "this input can never work",
    ]
    assert all(reasons[mid]["queue"] == queue for mid in ids)


def test_a_step_over_its_time_limit_is_stopped_and_retried(redis_url: str, queue: str) -> None:
    publish(redis_url, queue, 1)
    runs: list[str] = []

    async def slow_once(message: dramatiq.Message[Any]) -> None:
        runs.append("start")
        if len(runs) == 1:
            await asyncio.sleep(30)
        runs.append("done")

    async def main() -> None:
        c = consumer(
            Redis.from_url(redis_url), queue, slow_once, time_limit_ms=300, min_backoff_ms=10
        )
        task = asyncio.create_task(c.run())
        await until(lambda: runs[-1:] == ["done"], timeout=10)
        c.stop()
        await task

    asyncio.run(main())
    assert runs == ["start", "start", "done"]


def test_an_entry_that_is_no_message_is_dead_lettered_and_the_queue_flows(
    redis_url: str, queue: str
) -> None:
    r = redis.Redis.from_url(redis_url)
    r.hset(f"{queue_key(queue)}.msgs", "bad-entry", b"\xff not json")
    r.rpush(queue_key(queue), "bad-entry")
    publish(redis_url, queue, 5)
    done: list[int] = []

    async def record(message: dramatiq.Message[Any]) -> None:
        done.append(message.args[0])

    async def main() -> None:
        c = consumer(Redis.from_url(redis_url), queue, record)
        task = asyncio.create_task(c.run())
        await until(lambda: len(done) == 5)
        c.stop()
        await task

    asyncio.run(main())
    assert r.zscore(dead_letters_key(queue), "bad-entry") is not None
    reason = json.loads(r.hget(DEAD_LETTER_REASONS, "bad-entry") or b"{}")
    assert reason["reason"] == "undecodable"
    assert bodies(redis_url, queue) == 0


def test_a_wake_fetches_at_once_from_an_idle_queue(redis_url: str, queue: str) -> None:
    """What a cancel's notice does for the control queue: no wait for the idle poll."""
    done: list[float] = []

    async def record(_: dramatiq.Message[Any]) -> None:
        done.append(time.monotonic())

    async def main() -> float:
        c = consumer(Redis.from_url(redis_url), queue, record, poll_ms=30_000)
        task = asyncio.create_task(c.run())
        await asyncio.sleep(3.0)  # idle: its poll backs off towards 30 s
        await asyncio.to_thread(publish, redis_url, queue, 1)
        sent = time.monotonic()
        c.wake(queue)
        await until(lambda: done, timeout=10)
        c.stop()
        await task
        return done[0] - sent

    assert asyncio.run(main()) < 1.0


def test_a_graceful_stop_hands_unfinished_messages_back_at_once(redis_url: str, queue: str) -> None:
    publish(redis_url, queue, 30)
    consumer_id = uuid.uuid4().hex
    finished: list[int] = []
    started: list[int] = []

    async def some_finish(message: dramatiq.Message[Any]) -> None:
        started.append(message.args[0])
        await asyncio.sleep(0.1 if message.args[0] < 5 else 60)
        finished.append(message.args[0])

    async def main() -> None:
        c = consumer(
            Redis.from_url(redis_url),
            queue,
            some_finish,
            in_flight=10,
            consumer_id=consumer_id,
            grace_s=1.0,
        )
        task = asyncio.create_task(c.run())
        await until(lambda: len(started) == 10)
        c.stop()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert sorted(finished) == [0, 1, 2, 3, 4]  # within the grace
    assert held(redis_url, queue, consumer_id) == 0  # nothing left for the heartbeat timeout
    assert waiting(redis_url, queue) == 25  # 20 never fetched + 5 cut at the grace's end
    assert bodies(redis_url, queue) == 25


def test_a_second_stop_ends_the_grace_at_once(redis_url: str, queue: str) -> None:
    """A signal to the whole process group reaches a worker twice (from its parent and
    directly): the second hands back what runs without waiting out the grace."""
    publish(redis_url, queue, 5)
    consumer_id = uuid.uuid4().hex
    started: list[int] = []

    async def held_long(message: dramatiq.Message[Any]) -> None:
        started.append(message.args[0])
        await asyncio.sleep(60)

    async def main() -> float:
        c = consumer(
            Redis.from_url(redis_url),
            queue,
            held_long,
            in_flight=5,
            consumer_id=consumer_id,
            grace_s=30.0,
        )
        task = asyncio.create_task(c.run())
        await until(lambda: len(started) == 5)
        c.stop()
        await asyncio.sleep(0.5)
        assert not task.done(), "the first stop waits for the grace"
        t0 = time.monotonic()
        c.stop()
        await asyncio.wait_for(task, 10)
        return time.monotonic() - t0

    took = asyncio.run(main())
    assert took < 5, f"{took:.1f}s after the second stop"
    assert held(redis_url, queue, consumer_id) == 0 and waiting(redis_url, queue) == 5


def test_a_consumer_cancelled_at_any_moment_ends(redis_url: str, queue: str) -> None:
    """A cancel that redis-py loses on Python 3.11 (``asyncio.wait_for`` in its send) must
    not leave a loop running: the process (or ``asyncio.run``) would never end."""
    publish(redis_url, queue, 50)

    async def fail(message: dramatiq.Message[Any]) -> None:
        raise RuntimeError("retried through the delayed queue")

    async def cancel_after(delay_s: float) -> bool:
        c = consumer(Redis.from_url(redis_url), queue, fail, min_backoff_ms=1, grace_s=0.5)
        task = asyncio.create_task(c.run())
        await asyncio.sleep(delay_s)
        task.cancel()
        await asyncio.wait({task}, timeout=10)
        leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if leftovers:
            await asyncio.wait(leftovers, timeout=10)
        return task.done() and all(t.done() for t in leftovers)

    ended = [asyncio.run(cancel_after(i * 0.003)) for i in range(30)]
    assert all(ended), f"still running after a cancel: {ended.count(False)} of 30"


@pytest.mark.slow
def killed_holding(redis_url: str, queue: str, count: int) -> str:
    """A consumer process that fetched ``count`` messages, killed with SIGKILL; its id."""
    publish(redis_url, queue, count)
    victim = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.consumer_support", "hold", redis_url, queue, victim],
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    try:
        deadline = time.monotonic() + 30
        while held(redis_url, queue, victim) < count:
            assert proc.poll() is None, "the consumer exited"
            assert time.monotonic() < deadline, "the consumer never held every message"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return victim


def rerun_all(redis_url: str, queue: str, count: int, **options: Any) -> list[int]:
    """What a surviving consumer runs until it has run ``count`` messages."""
    done: list[int] = []

    async def record(message: dramatiq.Message[Any]) -> None:
        done.append(message.args[0])

    async def main() -> None:
        c = consumer(Redis.from_url(redis_url), queue, record, **options)
        task = asyncio.create_task(c.run())
        await until(lambda: len(done) == count, timeout=30)
        c.stop()
        await task

    asyncio.run(main())
    return done


def test_kill_9_with_messages_in_flight_loses_none(redis_url: str, queue: str) -> None:
    victim = killed_holding(redis_url, queue, 300)
    killed_at = time.monotonic()
    # the fleet's heartbeat setting (the victim ran with it); maintenance on every fetch
    done = rerun_all(
        redis_url, queue, 300, heartbeat_timeout_ms=1_000, maintenance_chance=1_000_000
    )
    assert sorted(done) == list(range(300))
    assert time.monotonic() - killed_at < 15  # redelivered within the heartbeat bound
    assert held(redis_url, queue, victim) == 0
    assert bodies(redis_url, queue) == 0


def test_a_dead_consumer_s_messages_come_back_by_the_heartbeat_when_no_fetch_maintains(
    redis_url: str, queue: str
) -> None:
    # Every process busy: no fetch is made, so none may run maintenance; heartbeats still do.
    victim = killed_holding(redis_url, queue, 50)
    killed_at = time.monotonic()
    done = rerun_all(redis_url, queue, 50, heartbeat_timeout_ms=1_000, maintenance_chance=0)
    assert sorted(done) == list(range(50))
    assert time.monotonic() - killed_at < 15
    assert held(redis_url, queue, victim) == 0
