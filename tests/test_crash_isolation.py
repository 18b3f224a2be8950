"""Crash isolation when one process runs many steps: a suspect runs in a group that halves
with each crash it was in, the poison step is dead-lettered once it crashes alone, and the
steps that stood beside it run to the end."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import dramatiq
import pytest
import redis
from redis.asyncio import Redis

from messages.redis_keys import DEAD_LETTER_REASONS, dead_letters_key, starts_key
from tests.consumer_support import DONE, bodies, consumer, publish
from workers.crash_isolation import CrashGuard, Isolation, StartCounter
from workers.errors import NotStarted


@pytest.fixture
def queue() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def test_groups_halve_with_each_crash_after_the_first_and_alone_comes_after_log2_of_the_limit() -> (
    None
):
    isolation = Isolation(1_000)
    assert [isolation.group_of(c) for c in (0, 1, 2, 3, 4, 10, 11, 30)] == [
        1_000,
        1_000,
        500,
        250,
        125,
        1,
        1,
        1,
    ]
    assert [isolation.unbounded(c) for c in (0, 1, 2)] == [True, True, False]
    assert isolation.alone_from == 9 + 1  # 1000 >> (10 - 1) == 1
    assert CrashGuard(StartCounter(Redis()), isolation, bound=3).poison_at() == 12
    one = Isolation(1)  # a process of one step: a suspect is alone from its first crash
    assert one.alone_from == 1
    assert CrashGuard(StartCounter(Redis()), one, bound=3).poison_at() == 3


def test_a_suspect_runs_only_in_its_group_and_new_steps_wait_for_it(
    redis_url: str, queue: str
) -> None:
    ids = publish(redis_url, queue, 40)
    suspect = ids[20]
    r = redis.Redis.from_url(redis_url)
    r.set(starts_key(suspect), 4)  # four starts that never ended: 4 crashes
    running = 0
    beside_suspect: list[int] = []
    done: list[str] = []
    gate = asyncio.Event()

    async def job(message: dramatiq.Message[Any]) -> None:
        nonlocal running
        running += 1
        try:
            if message.message_id == suspect:
                for _ in range(10):
                    beside_suspect.append(running)
                    await asyncio.sleep(0.05)
            elif message.args[0] < 20:
                await gate.wait()  # the first twenty hold their slots until the suspect waits
            else:
                await asyncio.sleep(0.05)
        finally:
            running -= 1
        done.append(message.message_id)

    async def main() -> None:
        client = Redis.from_url(redis_url)
        guard = CrashGuard(StartCounter(client), Isolation(32), bound=2)
        c = consumer(client, queue, job, in_flight=32, guard=guard)
        task = asyncio.create_task(c.run())
        while guard.isolation.ceiling() == 32:  # the suspect is fetched and narrows the process
            await asyncio.sleep(0.02)
        assert guard.isolation.ceiling() == 32 >> 3  # halved at each crash after the first
        gate.set()
        while len(done) < 40:
            await asyncio.sleep(0.02)
        c.stop()
        await task

    asyncio.run(main())
    assert beside_suspect and max(beside_suspect) <= 32 >> 3
    assert r.get(starts_key(suspect)) is None  # it survived: its count is gone
    assert bodies(redis_url, queue) == 0


def test_a_step_that_could_not_start_keeps_its_crashes(redis_url: str, queue: str) -> None:
    """A step redelivered after a crash into its quest's lease (the dead process's lease has
    not lapsed yet) does not begin: its start is taken back and the crash it was in still
    counts, rather than being forgotten as if it had run and survived."""
    (suspect,) = publish(redis_url, queue, 1)
    r = redis.Redis.from_url(redis_url)
    r.set(starts_key(suspect), 2)  # two starts that never ended: 2 crashes
    seen: list[int] = []  # the process's ceiling while the step runs: its group, as a suspect
    guard: CrashGuard | None = None

    async def job(message: dramatiq.Message[Any]) -> None:
        assert guard is not None
        seen.append(guard.isolation.ceiling())
        if len(seen) == 1:
            raise NotStarted("another worker is running this quest's step", retry_after_ms=50)

    async def main() -> None:
        nonlocal guard
        client = Redis.from_url(redis_url)
        guard = CrashGuard(StartCounter(client), Isolation(8), bound=2)
        c = consumer(client, queue, job, in_flight=8, guard=guard)
        task = asyncio.create_task(c.run())
        while len(seen) < 2:
            await asyncio.sleep(0.02)
        c.stop()
        await task

    asyncio.run(main())
    # Both runs are a suspect's of two crashes (a group of 8 >> 1): the first one's start
    # was taken back, so the retry still knows the crash.
    assert seen == [4, 4]
    assert r.get(starts_key(suspect)) is None  # the second ran and survived
    assert bodies(redis_url, queue) == 0


@pytest.mark.slow
def test_a_poison_step_is_dead_lettered_and_its_neighbours_finish(
    redis_url: str, queue: str
) -> None:
    ids = publish(redis_url, queue, 40)
    r = redis.Redis.from_url(redis_url)
    root = os.path.dirname(os.path.dirname(__file__))
    crashes = 0
    deadline = time.monotonic() + 120

    def finished() -> bool:  # the poison step dead-lettered (by its Redis id), the rest done
        return r.zcard(dead_letters_key(queue)) == 1 and r.scard(f"{DONE}:{queue}") == 39

    while not finished():
        assert time.monotonic() < deadline, "the poison step was not isolated in time"
        proc = subprocess.Popen(  # one process at a time: each crash is the poison step's
            [sys.executable, "-m", "tests.consumer_support", "crash", redis_url, queue, "16"],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while proc.poll() is None and not finished():
                assert time.monotonic() < deadline, "the poison step was not isolated in time"
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                proc.terminate()
            if proc.wait(30) == 1:
                crashes += 1
        time.sleep(1.2)  # past the heartbeat timeout: the next process takes back its messages
    reason = json.loads(r.hget(DEAD_LETTER_REASONS, ids[0]) or b"{}")
    assert "crashed its worker" in reason["reason"]
    assert r.zcard(dead_letters_key(queue)) == 1  # only the poison step
    assert r.smembers(f"{DONE}:{queue}") == {str(n).encode() for n in range(1, 40)}
    # 16 >> (5 - 1) == 1: alone from its 5th crash, poison at bound (2) crashes alone.
    assert crashes == 5 + 2 - 1
