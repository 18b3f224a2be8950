"""The audit log writer on real Postgres: batches, exactly once, one bad entry fails alone."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest

from messages import Actor, ActorType, AuditEvent, BadMessage
from store import Database
from store import activity as activity_store
from store.activity import ActivityFilter
from tests.conftest import Tenant
from workers.audit import AuditWriter

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


def rows(db: Database, tenant: Tenant) -> list[activity_store.Activity]:
    with db.tenant(tenant.id) as tx:
        found, _ = activity_store.page(tx, ActivityFilter(), limit=1000)
    return found


def test_a_redelivered_batch_adds_no_row(db: Database, tenant: Tenant) -> None:
    writer = AuditWriter(db)
    batch = [event(f"q:1:{i}") for i in range(5)]
    writer.write(tenant.id, batch)
    writer.write(tenant.id, batch)
    writer.write(tenant.id, [*batch[2:], event("q:1:new")])
    keys = sorted(r.idempotency_key for r in rows(db, tenant))
    assert keys == sorted([f"q:1:{i}" for i in range(5)] + ["q:1:new"])


def test_concurrent_writers_group_commit_every_event_once(
    db: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    writer = AuditWriter(db, max_batch=50)
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
        keys = [r.idempotency_key for r in rows(db, t)]
        assert len(keys) == len(set(keys)) == 4 * 20


def test_an_entry_for_a_missing_company_fails_alone(db: Database, tenant: Tenant) -> None:
    writer = AuditWriter(db)
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
    assert sorted(r.idempotency_key for r in rows(db, tenant)) == ["good:1", "good:2"]


def test_rows_keep_actor_rationale_and_originating_message(db: Database, tenant: Tenant) -> None:
    e = event("q:9:toolu_1")
    AuditWriter(db).write(tenant.id, [e])
    (row,) = rows(db, tenant)
    assert (row.actor_type, row.actor_id, row.action, row.target) == (
        "ted",
        "ted",
        "note.added",
        "note:1",
    )
    assert row.rationale == "because"
    assert row.originating_message_id == e.originating_message_id


@pytest.mark.parametrize("limit", [1, 3])
def test_activity_pages_walk_newest_first(db: Database, tenant: Tenant, limit: int) -> None:
    AuditWriter(db).write(tenant.id, [event(f"p:{i}") for i in range(7)])
    seen, cursor = [], None
    while True:
        with db.tenant(tenant.id) as tx:
            page, cursor = activity_store.page(tx, ActivityFilter(), cursor=cursor, limit=limit)
        seen.extend(page)
        if cursor is None:
            break
    assert len(seen) == 7 == len({r.id for r in seen})
    assert [r.occurred_at for r in seen] == sorted((r.occurred_at for r in seen), reverse=True)
