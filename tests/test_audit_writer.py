"""The audit log writer on real Postgres: batches, exactly once, one bad entry fails alone."""

from __future__ import annotations

import contextlib
import ctypes
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import psycopg
import pytest
from dramatiq.middleware.time_limit import TimeLimitExceeded

from messages import Actor, ActorType, AuditEvent, BadMessage
from store import Database, StoreUnavailable, TenantTx
from store import activity as activity_store
from store.activity import ActivityFilter
from tests.conftest import Tenant
from tests.support import InTenant, wait_for
from workers.audit import AuditWriter, WriteInterrupted, to_row
from workers.call_loop import CallLoop

TED = Actor(type=ActorType.ted, id="ted")


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


def test_a_redelivered_batch_adds_no_row(in_tenant: InTenant, tenant: Tenant) -> None:
    writer = AuditWriter(in_tenant)
    batch = [event(f"q:1:{i}") for i in range(5)]
    writer.write(tenant.id, batch)
    writer.write(tenant.id, batch)
    writer.write(tenant.id, [*batch[2:], event("q:1:new")])
    keys = sorted(r.idempotency_key for r in rows(in_tenant, tenant))
    assert keys == sorted([f"q:1:{i}" for i in range(5)] + ["q:1:new"])


def test_concurrent_writers_group_commit_every_event_once(
    in_tenant: InTenant, tenant: Tenant, other_tenant: Tenant
) -> None:
    writer = AuditWriter(in_tenant, max_batch=50)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        target = tenant if (n // 2) % 2 else other_tenant
        try:
            for i in range(20):
                # every key is written by two threads: duplicates across concurrent batches
                writer.write(target.id, [event(f"k:{n // 2}:{i}")])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for t in (tenant, other_tenant):
        keys = [r.idempotency_key for r in rows(in_tenant, t)]
        assert len(keys) == len(set(keys)) == 4 * 20


def test_an_entry_for_a_missing_company_fails_alone(in_tenant: InTenant, tenant: Tenant) -> None:
    writer = AuditWriter(in_tenant)
    ghost = uuid.uuid4()
    failures: list[BaseException] = []
    gate = threading.Barrier(3)

    def write(company: uuid.UUID, key: str) -> None:
        gate.wait()
        try:
            writer.write(company, [event(key)])
        except BaseException as exc:
            failures.append(exc)

    threads = [
        threading.Thread(target=write, args=(tenant.id, "good:1")),
        threading.Thread(target=write, args=(ghost, "ghost:1")),
        threading.Thread(target=write, args=(tenant.id, "good:2")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [type(f) for f in failures] == [BadMessage]
    assert "does not exist" in str(failures[0])
    assert sorted(r.idempotency_key for r in rows(in_tenant, tenant)) == ["good:1", "good:2"]


def test_rows_keep_actor_rationale_and_originating_message(
    in_tenant: InTenant, tenant: Tenant
) -> None:
    e = event("q:9:toolu_1")
    AuditWriter(in_tenant).write(tenant.id, [e])
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
def test_activity_pages_walk_newest_first(in_tenant: InTenant, tenant: Tenant, limit: int) -> None:
    AuditWriter(in_tenant).write(tenant.id, [event(f"p:{i}") for i in range(7)])
    seen, cursor = [], None
    while True:
        walk = partial(activity_store.page, filters=ActivityFilter(), cursor=cursor, limit=limit)
        page, cursor = in_tenant(tenant.id, walk)
        seen.extend(page)
        if cursor is None:
            break
    assert len(seen) == 7 == len({r.id for r in seen})
    assert [r.occurred_at for r in seen] == sorted((r.occurred_at for r in seen), reverse=True)


def test_postgres_down_fails_a_batch_at_once_not_entry_by_entry(call_loop: CallLoop) -> None:
    # Nothing listens on port 1: every request for a connection waits out the pool's timeout.
    down = Database("postgresql://s2_app@127.0.0.1:1/system2", timeout=0.5)
    call_loop.run(down.open(wait=False))
    writer = AuditWriter(InTenant(down, call_loop))
    failures: list[BaseException] = []

    def write(key: str) -> None:
        try:
            writer.write(uuid.uuid4(), [event(key)])
        except BaseException as exc:
            failures.append(exc)

    first = threading.Thread(target=write, args=("down:0",))
    first.start()
    wait_for(lambda: down.pool.get_stats().get("requests_num"))
    rest = [threading.Thread(target=write, args=(f"down:{i}",)) for i in range(1, 5)]
    for t in rest:  # they queue while the first one's batch waits for a connection
        t.start()
    for t in [first, *rest]:
        t.join(30)
    stats = down.pool.get_stats()
    call_loop.run(down.close())
    assert [type(f) for f in failures] == [StoreUnavailable] * 5
    assert stats["requests_num"] == 2, "one wait for the first batch, one for the other four"


class StoppedSecondBatch(AuditWriter):
    """A writer whose second batch is stopped the way Dramatiq's time limit stops a thread
    (an exception that is no ``Exception``). The first waits until two writers queue behind it,
    so the second batch holds both. Every other batch is committed for real."""

    batches = 0

    def _commit(self, batch: list[Any]) -> None:
        self.batches += 1
        if self.batches == 1:
            wait_for(lambda: len(self._queue) == 2)
        if self.batches == 2:
            raise TimeLimitExceeded()
        super()._commit(batch)


class Writes:
    """Writers on their own threads, and what each write came to."""

    def __init__(self, writer: AuditWriter, company_id: uuid.UUID) -> None:
        self.writer = writer
        self.company_id = company_id
        self.outcomes: dict[str, BaseException | None] = {}
        self.threads: dict[str, threading.Thread] = {}

    def start(self, key: str) -> threading.Thread:
        def write() -> None:
            try:
                self.writer.write(self.company_id, [event(key)])
                self.outcomes[key] = None
            except BaseException as exc:
                self.outcomes[key] = exc

        self.threads[key] = t = threading.Thread(target=write, daemon=True)
        t.start()
        return t

    def join(self) -> None:
        for t in self.threads.values():
            t.join(10)
        stuck = [key for key, t in self.threads.items() if t.is_alive()]
        assert not stuck, f"left waiting forever: {stuck}"


def test_a_leader_stopped_mid_batch_hands_on_and_later_writes_go_through(
    in_tenant: InTenant, tenant: Tenant
) -> None:
    writer = StoppedSecondBatch(in_tenant)
    writes = Writes(writer, tenant.id)
    writes.start("first")
    wait_for(lambda: writer.batches == 1)
    writes.start("leader")  # leads the second batch, once the first is committed
    wait_for(lambda: len(writer._queue) == 1)
    writes.start("follower")
    writes.join()
    assert isinstance(writes.outcomes["leader"], TimeLimitExceeded)
    assert isinstance(writes.outcomes["follower"], WriteInterrupted), "it is retried"
    assert writes.outcomes["first"] is None
    writes.start("later")
    writes.join()
    assert writes.outcomes["later"] is None
    writer.write(tenant.id, [event("follower")])  # the retry
    keys = sorted(r.idempotency_key for r in rows(in_tenant, tenant))
    assert keys == ["first", "follower", "later"]


@contextlib.contextmanager
def held_open(in_tenant: InTenant, company_id: uuid.UUID) -> Iterator[TenantTx]:
    """A transaction of the company held open (uncommitted) while the test goes on, on the
    pool's loop; it ends as the block does: committed, or rolled back by an exception."""
    transaction = in_tenant.db.tenant(company_id)
    tx = in_tenant.run(transaction.__aenter__())
    try:
        yield tx
    except BaseException as exc:
        if not in_tenant.run(transaction.__aexit__(type(exc), exc, exc.__traceback__)):
            raise
    else:
        in_tenant.run(transaction.__aexit__(None, None, None))


def test_a_writer_stopped_as_it_is_made_leader_hands_on(
    in_tenant: InTenant, tenant: Tenant, admin_conn: psycopg.Connection[tuple[object, ...]]
) -> None:
    writer = AuditWriter(in_tenant)
    writes = Writes(writer, tenant.id)

    def lock_waits() -> int:
        row = admin_conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
        return int(str(row[0])) if row else 0

    with contextlib.ExitStack() as holding:
        # Another transaction holds the key "held" uncommitted: the leader's insert waits on it.
        tx = holding.enter_context(held_open(in_tenant, tenant.id))
        in_tenant.run(activity_store.append(tx, [to_row(event("held"))]))
        writes.start("held")
        wait_for(lock_waits)
        stopped = writes.start("stopped")
        wait_for(lambda: len(writer._queue) == 1)
        writes.start("next")
        wait_for(lambda: len(writer._queue) == 2)
        # What Dramatiq's time limit does to a thread that runs too long: the exception is
        # raised as soon as the thread runs again, i.e. when it is woken to lead.
        assert stopped.ident is not None
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(stopped.ident), ctypes.py_object(TimeLimitExceeded)
        )
        holding.pop_all().close()  # roll the holding transaction back: "held" commits
    writes.join()
    assert writes.outcomes["stopped"] is not None
    assert writes.outcomes["held"] is None and writes.outcomes["next"] is None
    assert sorted(r.idempotency_key for r in rows(in_tenant, tenant)) == ["held", "next"]
