"""Steps that take their worker process down with them, when a process runs many at once.

Dramatiq redelivers every message a dead process held without counting a retry, so a poison
step (one that crashes its process: out of memory, a segfault in a library) would kill
process after process forever. Each message's starts are counted in Redis
(``messages.redis_keys.starts_key``): a start that ended neither in success nor in a handled
failure was a crash, and its count is the message's *crashes*.

A crash is charged to every step in flight in the process, the innocent with the guilty.
With one step per thread that was a handful; with a thousand steps per process it is a
thousand, and "a suspect runs alone" would serialize them all after one crash. So suspects
run in groups that halve with each crash after the first: a message with ``c`` crashes runs
only while the process has at most ``limit >> (c - 1)`` steps running (its *group*), and
while it runs the process starts no more than that. The first crash costs a suspect nothing
but its place in the line (it runs before any new step): one crash among hundreds of steps
says almost nothing about any one of them (a deploy's SIGKILL, the OOM killer or a lost
machine are far more common than a poison step), and holding half of them back until the
survivors' own steps end would put their redelivery a whole Claude call past the 15 s
bound. The poison step's group halves at each further crash it causes, until it runs alone
(after about log2(limit) + 1 crashes, each redelivered within the heartbeat timeout); the
innocents beside it share fewer and fewer crashes. Only a step that keeps crashing when it
runs alone is poison: at ``bound`` crashes past the first alone one it is dead-lettered
(``poison_at``). An innocent never reaches that: alone, it does not crash.

A step waiting for its group holds no start: the count is taken when it begins to run, so a
crash of the process while it waits is not charged to it. A waiting suspect goes before any
new step, so a busy process cannot starve it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import dramatiq
from redis.asyncio import Redis
from redis.exceptions import RedisError

from messages.redis_keys import starts_key

STARTS_TTL_S = 2 * 86_400


# Count a start of the message KEYS[1] and keep the count ARGV[1] seconds: one command per
# start (every message runs through it) rather than a two-command pipeline.
_START = "local n = redis.call('INCR', KEYS[1]) redis.call('EXPIRE', KEYS[1], ARGV[1]) return n"


class StartCounter:
    """Starts of each message, in Redis, shared by every process."""

    def __init__(self, client: Redis) -> None:
        self.redis = client
        self._start = client.register_script(_START)

    async def start(self, message: dramatiq.Message[Any]) -> int:
        """Count a start; returns how many earlier starts ended with their process gone
        (0 if Redis does not answer: counted again at the next delivery)."""
        try:
            starts = int(await self._start([starts_key(message.message_id)], [STARTS_TTL_S]))
        except RedisError:
            return 0
        # A start that ended in a success or a handled failure deleted the key (``survived``):
        # every earlier start still counted ended with its process gone.
        return max(0, starts - 1)

    async def unstart(self, message: dramatiq.Message[Any]) -> None:
        """Take back a start counted before the message could run (or handed back)."""
        with suppress(RedisError):
            await self.redis.decr(starts_key(message.message_id))

    async def survived(self, message: dramatiq.Message[Any]) -> None:
        with suppress(RedisError):
            await self.redis.delete(starts_key(message.message_id))


class Isolation:
    """Which steps of one process may run now: any number up to ``limit`` while no suspect
    runs or waits; with suspects, no more than the smallest group among those running."""

    def __init__(self, limit: int, *, on_change: Callable[[], None] | None = None) -> None:
        self.limit = limit
        self.running = 0
        self._groups: Counter[int] = Counter()  # group sizes of the suspects running
        self._suspects_waiting = 0
        self._changed = asyncio.Condition()
        self.on_change = on_change

    def group_of(self, crashes: int) -> int:
        return max(1, self.limit >> max(0, crashes - 1))

    def unbounded(self, crashes: int) -> bool:
        """A step with this many crashes runs like any other when there is room: none, or
        the one crash that leaves its group the whole process."""
        return self.group_of(crashes) >= self.limit

    @property
    def alone_from(self) -> int:
        """The crash count from which a suspect runs alone."""
        return max(1, self.limit.bit_length())

    def ceiling(self) -> int:
        """How many steps the process may hold now: its limit, or the smallest group of a
        suspect running or waiting (the consumer fetches no more than this)."""
        return min([self.limit, *(g for g, n in self._groups.items() if n)])

    def _room(self) -> bool:
        return not self._suspects_waiting and self.running < self.ceiling()

    def enter_if_free(self) -> bool:
        """Join the steps running side by side if that needs no wait; ``leave`` after."""
        if not self._room():
            return False
        self.running += 1
        return True

    @asynccontextmanager
    async def beside_others(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(self._room)
            self.running += 1
        try:
            yield
        finally:
            await self.leave()

    @asynccontextmanager
    async def in_group(self, crashes: int) -> AsyncIterator[None]:
        group = self.group_of(crashes)
        async with self._changed:
            self._suspects_waiting += 1
            self._groups[group] += 1  # the process fetches no more than the group meanwhile
            self._changed_now()
            try:
                await self._changed.wait_for(lambda: self.running < min(group, self.ceiling()))
            except BaseException:
                self._groups[group] -= 1
                raise
            finally:
                self._suspects_waiting -= 1
            self.running += 1
        try:
            yield
        finally:
            await self.leave(group)

    async def leave(self, group: int | None = None) -> None:
        async with self._changed:
            self.running -= 1
            if group is not None:
                self._groups[group] -= 1
            self._changed.notify_all()
        self._changed_now()

    def _changed_now(self) -> None:
        if self.on_change is not None:
            self.on_change()


class CrashGuard:
    """What the consumer runs each message in: its crash count first, then its group."""

    def __init__(self, counter: StartCounter, isolation: Isolation, bound: int) -> None:
        self.counter = counter
        self.isolation = isolation
        self.bound = bound

    def poison_at(self) -> int:
        """Crashes at which a message is poison: ``bound`` of them running alone."""
        return self.isolation.alone_from + self.bound - 1

    @asynccontextmanager
    async def watching(self, message: dramatiq.Message[Any]) -> AsyncIterator[GuardedRun]:
        """Run the block in the message's group; yields its crash count (the caller
        dead-letters it at ``poison_at()`` instead of running it). A block that ends survived
        (the caller catches the actor's failure inside it) unless it says the message never
        began (``GuardedRun.not_started``); one cut by a cancel (a shutdown handing the message
        back) takes its start back too."""
        run = GuardedRun(await self.counter.start(message))  # one round trip, commonly
        if run.crashes >= self.poison_at():
            yield run
            return
        if self.isolation.unbounded(run.crashes) and self.isolation.enter_if_free():
            try:
                yield run
            except asyncio.CancelledError:
                await self.counter.unstart(message)
                raise
            finally:
                await self.isolation.leave()
            await self._ended(message, run)
            return
        await self.counter.unstart(message)  # it has to wait: a start counts once it runs
        group = self.isolation.in_group(run.crashes)
        async with group if run.crashes else self.isolation.beside_others():
            await self.counter.start(message)
            try:
                yield run
            except asyncio.CancelledError:
                await self.counter.unstart(message)
                raise
        await self._ended(message, run)

    async def _ended(self, message: dramatiq.Message[Any], run: GuardedRun) -> None:
        if run.started:
            await self.counter.survived(message)
        else:
            await self.counter.unstart(message)


@dataclass
class GuardedRun:
    """One start of a message under the guard: its crash count so far, and whether it
    began at all. A message that could not begin (its quest's step runs elsewhere, say) has
    its start taken back, so its crashes still count when it runs: if it were counted as
    having survived, a step redelivered after a crash into its quest's lease would forget
    the crash."""

    crashes: int
    started: bool = True

    def not_started(self) -> None:
        self.started = False
