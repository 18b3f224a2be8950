"""The audit log writer on real Postgres: batches, exactly once, one bad entry fails alone.

Writers run as tasks on one event loop, as the consumer runs audit messages: each scenario
is one coroutine driven on the tests' loop (``call_loop``), with many writes at once through
``asyncio.gather`` or tasks of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest

from messages import Actor, ActorType, AuditEvent, BadMessage
from runtime.loop_thread import LoopThread
from runtime.settings import Settings
from store import BatchTx, Database, StoreUnavailable
from store import activity as activity_store
from store.activity import ActivityFilter
from store.db import Prepare
from tests.conftest import Tenant
from tests.support import InTenant
from workers.audit import AuditWriter, WriteInterrupted, to_row

TED = Actor(type=ActorType.ted, id="ted")
SCENARIO_TIMEOUT_S = 30


def event(key: str, action: str = "note.added") -> AuditEvent:
    return AuditEvent(
        idempotency_key=key,
        actor=TED,
        action=action,
        target="note:1",
        rationale="because",
        originating_message_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
    )


def rows(in_tenant: InTenant, tenant: Tenant) -> list[activity_store.Activity]:
    found, _ = in_tenant(
        tenant.id, lambda tx: activity_store.page(tx, ActivityFilter(), limit=1000)
    )
    return found


def keys(in_tenant: InTenant, tenant: Tenant) -> list[str]:
    return sorted(r.idempotency_key for r in rows(in_tenant, tenant))


@pytest.fixture
def writers(db: Database, call_loop: LoopThread) -> Iterator[Callable[..., AuditWriter]]:
    """Make writers on ``db`` (or another pool); each is closed when the test ends."""
    made: list[AuditWriter] = []

    def make(on: Database = db, **kw: Any) -> AuditWriter:
        made.append(AuditWriter(on, **kw))
        return made[-1]

    yield make
    for writer in made:
        call_loop.run(writer.close())


class CountedBatches(Database):
    """The app's pool, counting the batch transactions opened on it."""

    batches = 0

    @contextlib.asynccontextmanager
    async def batch(self, *, prepare: Prepare | None = None) -> AsyncIterator[BatchTx]:
        self.batches += 1
        async with super().batch(prepare=prepare) as tx:
            yield tx


@pytest.fixture
def counted_db(settings: Settings, call_loop: LoopThread) -> Iterator[CountedBatches]:
    database = CountedBatches(settings.database_url, min_size=1, max_size=2, name="counted")
    call_loop.run(database.open())
    yield database
    call_loop.run(database.close())


@contextlib.asynccontextmanager
async def key_held(db: Database, company_id: uuid.UUID, key: str) -> AsyncIterator[None]:
    """``key`` inserted for the company by a transaction held open while the block runs,
    then rolled back: a batch that writes the same key waits on it until then, and holds
    that key afterwards only if the batch itself committed."""
    async with db.connection() as conn, conn.transaction(force_rollback=True):
        tx = await BatchTx(conn).tenant(company_id)
        await activity_store.append(tx, [to_row(event(key))])
        yield


async def until_inserts_wait(db: Database, count: int) -> None:
    """Return once ``count`` sessions of this database wait on a lock (writers' inserts)."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'"
    )
    while True:
        async with db.connection() as conn:
            row = await (await conn.execute(sql)).fetchone()
        if row and row[0] >= count:
            return
        await asyncio.sleep(0.02)


async def stuck_batches(
    writer: AuditWriter, db: Database, company_id: uuid.UUID, flushers: int, *extra: str
) -> list[asyncio.Task[None]]:
    """Writes that keep every flusher of ``writer`` committing, each batch waiting on the
    key "held" (inside ``key_held``); the first batch also holds the keys ``extra``."""
    writes: list[asyncio.Task[None]] = []
    for n in range(flushers):
        keys = ["held", *extra] if n == 0 else ["held"]
        writes.append(asyncio.create_task(writer.write(company_id, [event(k) for k in keys])))
        await until_inserts_wait(db, n + 1)
    return writes


def run(call_loop: LoopThread, scenario: Any) -> Any:
    """A scenario on the tests' loop: all its writers share that loop, as in a worker."""
    return call_loop.run(scenario, timeout_s=SCENARIO_TIMEOUT_S)


def test_a_redelivered_batch_adds_no_row(
    writers: Callable[..., AuditWriter], call_loop: LoopThread, in_tenant: InTenant, tenant: Tenant
) -> None:
    writer = writers()
    batch = [event(f"q:1:{i}") for i in range(5)]
    run(call_loop, writer.write(tenant.id, batch))
    run(call_loop, writer.write(tenant.id, batch))
    run(call_loop, writer.write(tenant.id, [*batch[2:], event("q:1:new")]))
    assert keys(in_tenant, tenant) == sorted([f"q:1:{i}" for i in range(5)] + ["q:1:new"])


def test_concurrent_writers_group_commit_every_event_once(
    writers: Callable[..., AuditWriter],
    call_loop: LoopThread,
    in_tenant: InTenant,
    tenant: Tenant,
    other_tenant: Tenant,
) -> None:
    writer = writers(max_batch=50)

    async def work(n: int) -> None:
        target = tenant if (n // 2) % 2 else other_tenant
        for i in range(20):
            # every key is written by two writers: duplicates across concurrent batches
            await writer.write(target.id, [event(f"k:{n // 2}:{i}")])

    async def scenario() -> None:
        await asyncio.gather(*(work(n) for n in range(16)))

    run(call_loop, scenario())
    for t in (tenant, other_tenant):
        found = [r.idempotency_key for r in rows(in_tenant, t)]
        assert len(found) == len(set(found)) == 4 * 20


def test_five_hundred_concurrent_writes_commit_in_a_few_transactions(
    writers: Callable[..., AuditWriter],
    counted_db: CountedBatches,
    call_loop: LoopThread,
    in_tenant: InTenant,
    tenant: Tenant,
    other_tenant: Tenant,
) -> None:
    writer = writers(counted_db)

    async def write(n: int) -> None:
        await asyncio.sleep(n % 10 / 1000)  # they arrive over 10 ms, as fetched messages do
        target = tenant if n % 2 else other_tenant
        await writer.write(target.id, [event(f"many:{n}")])

    async def scenario() -> None:
        await asyncio.gather(*(write(n) for n in range(500)))

    run(call_loop, scenario())
    assert len(keys(in_tenant, tenant)) == len(keys(in_tenant, other_tenant)) == 250
    assert counted_db.batches <= 25, f"{counted_db.batches} transactions for 500 writes"


def test_an_entry_for_a_missing_company_fails_alone(
    writers: Callable[..., AuditWriter],
    counted_db: CountedBatches,
    call_loop: LoopThread,
    in_tenant: InTenant,
    tenant: Tenant,
) -> None:
    writer = writers(counted_db)
    ghost = uuid.uuid4()
    companies = [tenant.id] * 10 + [ghost] + [tenant.id] * 10

    async def scenario() -> Sequence[BaseException | None]:
        return await asyncio.gather(
            *(writer.write(c, [event(f"entry:{i}")]) for i, c in enumerate(companies)),
            return_exceptions=True,
        )

    outcomes = run(call_loop, scenario())
    failures = [o for o in outcomes if o is not None]
    assert [type(f) for f in failures] == [BadMessage]
    assert outcomes[10] is failures[0]
    assert "does not exist" in str(failures[0])
    assert keys(in_tenant, tenant) == sorted(f"entry:{i}" for i in range(21) if i != 10)
    # One batch, then halves down to the bad entry: not one transaction per entry.
    assert counted_db.batches <= 11


def test_rows_keep_actor_rationale_and_originating_message(
    writers: Callable[..., AuditWriter], call_loop: LoopThread, in_tenant: InTenant, tenant: Tenant
) -> None:
    e = event("q:9:toolu_1")
    run(call_loop, writers().write(tenant.id, [e]))
    (row,) = rows(in_tenant, tenant)
    assert (row.actor_type, row.actor_id, row.action, row.target) == (
        "ted",
        "ted",
        "note.added",
        "note:1",
    )
    assert row.rationale == "because"
    assert row.originating_message_id == e.originating_message_id


@pytest.mark.parametrize("limit", [1, 3])
def test_activity_pages_walk_newest_first(
    writers: Callable[..., AuditWriter],
    call_loop: LoopThread,
    in_tenant: InTenant,
    tenant: Tenant,
    limit: int,
) -> None:
    run(call_loop, writers().write(tenant.id, [event(f"p:{i}") for i in range(7)]))
    seen, cursor = [], None
    while True:
        walk = partial(activity_store.page, filters=ActivityFilter(), cursor=cursor, limit=limit)
        page, cursor = in_tenant(tenant.id, walk)
        seen.extend(page)
        if cursor is None:
            break
    assert len(seen) == 7 == len({r.id for r in seen})
    assert [r.occurred_at for r in seen] == sorted((r.occurred_at for r in seen), reverse=True)


@pytest.mark.parametrize("flushers", [1, 2])
def test_postgres_down_fails_a_batch_at_once_not_entry_by_entry(
    writers: Callable[..., AuditWriter], call_loop: LoopThread, flushers: int
) -> None:
    # Nothing listens on port 1: every request for a connection waits out the pool's timeout.
    down = Database("postgresql://s2_app@127.0.0.1:1/system2", timeout=0.5)
    call_loop.run(down.open(wait=False))
    writer = writers(down, flushers=flushers)

    async def scenario() -> Sequence[BaseException | None]:
        first = asyncio.create_task(writer.write(uuid.uuid4(), [event("down:0")]))
        while not down.pool.get_stats().get("requests_num"):
            await asyncio.sleep(0.01)
        # they queue while the first one's batch waits for a connection (with a second
        # flusher, it takes them all at once)
        rest = [writer.write(uuid.uuid4(), [event(f"down:{i}")]) for i in range(1, 5)]
        return await asyncio.gather(first, *rest, return_exceptions=True)

    try:
        outcomes = run(call_loop, scenario())
        stats = down.pool.get_stats()
    finally:
        call_loop.run(down.close())
    assert [type(o) for o in outcomes] == [StoreUnavailable] * 5
    assert stats["requests_num"] == 2, "one wait for the first batch, one for the other four"


def test_a_cancelled_writer_leaves_without_blocking_the_others(
    writers: Callable[..., AuditWriter],
    db: Database,
    call_loop: LoopThread,
    in_tenant: InTenant,
    tenant: Tenant,
) -> None:
    writer = writers(flushers=2)

    async def scenario() -> Sequence[BaseException | None]:
        async with key_held(db, tenant.id, "held"):
            # both flushers commit batches that wait on the lock; "left", "next" queue
            in_commit, other = await stuck_batches(writer, db, tenant.id, 2, "in a batch")
            left = asyncio.create_task(writer.write(tenant.id, [event("left")]))
            after = asyncio.create_task(writer.write(tenant.id, [event("next")]))
            await asyncio.sleep(0)
            in_commit.cancel()  # its time limit, say, while its batch commits
            left.cancel()  # while it is queued
            await asyncio.sleep(0.1)
        return await asyncio.gather(in_commit, other, left, after, return_exceptions=True)

    in_commit, other, left, after = run(call_loop, scenario())
    assert isinstance(in_commit, asyncio.CancelledError)
    assert isinstance(left, asyncio.CancelledError)
    assert other is None and after is None
    # The batch the cancelled writer was in went on ("in a batch" is there; the key's holder
    # rolled back): a cut writer does not cut the commit others wait on. "left" was dropped
    # before any batch took it.
    assert keys(in_tenant, tenant) == ["held", "in a batch", "next"]


@pytest.mark.parametrize("flushers", [1, 2])
def test_flushers_cut_mid_batch_leave_no_writer_waiting_and_later_writes_go_through(
    writers: Callable[..., AuditWriter],
    db: Database,
    call_loop: LoopThread,
    in_tenant: InTenant,
    tenant: Tenant,
    flushers: int,
) -> None:
    writer = writers(flushers=flushers)

    async def scenario() -> Sequence[BaseException | None]:
        async with key_held(db, tenant.id, "held"):
            stuck = await stuck_batches(writer, db, tenant.id, flushers, "in a batch")
            queued = asyncio.create_task(writer.write(tenant.id, [event("queued")]))
            await asyncio.sleep(0)
            cut = [t for t in asyncio.all_tasks() if t.get_name() == "audit writer"]
            assert len(cut) == flushers
            for flusher in cut:
                flusher.cancel()  # as the loop's end cancels every task
            return await asyncio.gather(*stuck, queued, return_exceptions=True)

    outcomes = run(call_loop, scenario())
    assert [type(o) for o in outcomes] == [WriteInterrupted] * (flushers + 1), "all retried"
    run(call_loop, writer.write(tenant.id, [event("later")]))
    assert keys(in_tenant, tenant) == ["later"], "the cut batches were rolled back"
    retries = [event("held"), event("in a batch"), event("queued")]
    run(call_loop, writer.write(tenant.id, retries))
    assert keys(in_tenant, tenant) == ["held", "in a batch", "later", "queued"]


def test_close_commits_what_is_queued_then_refuses_writes(
    writers: Callable[..., AuditWriter], call_loop: LoopThread, in_tenant: InTenant, tenant: Tenant
) -> None:
    writer = writers()

    async def scenario() -> None:
        queued = asyncio.gather(*(writer.write(tenant.id, [event(f"c:{i}")]) for i in range(3)))
        await asyncio.sleep(0)
        await writer.close()
        await queued
        with pytest.raises(WriteInterrupted):
            await writer.write(tenant.id, [event("after close")])

    run(call_loop, scenario())
    assert keys(in_tenant, tenant) == ["c:0", "c:1", "c:2"]


@pytest.mark.parametrize("flushers", [1, 2])
def test_close_cuts_stuck_batches_after_its_grace(
    writers: Callable[..., AuditWriter],
    db: Database,
    call_loop: LoopThread,
    in_tenant: InTenant,
    tenant: Tenant,
    flushers: int,
) -> None:
    writer = writers(flushers=flushers)

    async def scenario() -> tuple[float, Sequence[BaseException | None]]:
        async with key_held(db, tenant.id, "held"):
            stuck = await stuck_batches(writer, db, tenant.id, flushers)
            started = asyncio.get_running_loop().time()
            await writer.close(grace_s=0.2)
            took = asyncio.get_running_loop().time() - started
            return took, await asyncio.gather(*stuck, return_exceptions=True)

    took, outcomes = run(call_loop, scenario())
    assert took < 3
    assert [type(o) for o in outcomes] == [WriteInterrupted] * flushers
    assert keys(in_tenant, tenant) == []
