"""Transcript retention on real Postgres, as the app role: a finished quest's replies and tool
results are redacted S2_TRANSCRIPT_RETENTION_DAYS after its steps ended, every company's, in
batches that skip a step another transaction holds; the rest of the record stays."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from redis.asyncio import Redis as AsyncRedis

from ingress.submit import QuestSpec, create_quest
from runtime.settings import Settings
from store import Database, TenantTx
from store import quests as quests_store
from store.quests import Quest
from store.retention import REDACTED
from tests.conftest import Tenant
from tests.support import OPERATOR, InTenant
from workers.retention import Retention

USE = {"type": "tool_use", "id": "toolu_1", "name": "crm_find_account", "input": {"q": "Globex"}}
REPLY = [{"type": "text", "text": "The Q3 figures for Globex: 1.2M."}, USE]
RESULTS = [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "secret numbers"}]


def quest_with_steps(
    in_tenant: InTenant,
    admin: psycopg.Connection[Any],
    tenant: Tenant,
    *,
    steps: int,
    ended_days_ago: float | None,
) -> Quest:
    """A quest whose ``steps`` steps ended ``ended_days_ago`` (and the quest with them; None:
    the quest is still running)."""

    async def create(tx: TenantTx) -> Quest:
        quest, _ = await create_quest(
            tx, OPERATOR, QuestSpec(goal="Summarise Q3", model="claude-sonnet-5-5")
        )
        return quest

    quest = in_tenant(tenant.id, create)
    at = datetime.now(UTC) - timedelta(days=ended_days_ago or 200)
    for n in range(1, steps + 1):
        admin.execute(
            "INSERT INTO quest_steps (company_id, quest_id, step, status, model, stop_reason, "
            "content, tool_results, usage, cost_usd_micros, events, started_at, finished_at) "
            "VALUES (%s, %s, %s, 'done', 'claude-sonnet-5-5', 'tool_use', %s, %s, %s, 42, %s, %s, %s)",
            (tenant.id, quest.id, n, json.dumps(REPLY), json.dumps(RESULTS),
             json.dumps({"input_tokens": 10}), json.dumps([{"action": "note.added"}]), at, at),
        )  # fmt: skip
    if ended_days_ago is not None:
        admin.execute(
            "UPDATE quests SET status = 'succeeded', result = 'Q3 is up', finished_at = %s "
            "WHERE id = %s",
            (at, quest.id),
        )
    return quest


def stored(admin: psycopg.Connection[Any], quest: Quest) -> list[tuple[Any, ...]]:
    return admin.execute(
        "SELECT content, tool_results, usage, cost_usd_micros, events, redacted_at "
        "FROM quest_steps WHERE quest_id = %s ORDER BY step",
        (quest.id,),
    ).fetchall()


def test_transcripts_past_the_retention_are_redacted_in_batches_for_every_company(
    in_tenant: InTenant,
    db: Database,
    guard_redis: AsyncRedis,
    admin_conn: psycopg.Connection[Any],
    make_tenant: Callable[[str], Tenant],
) -> None:
    a, b = make_tenant("Acme"), make_tenant("Globex")
    old = quest_with_steps(in_tenant, admin_conn, a, steps=5, ended_days_ago=100)
    recent = quest_with_steps(in_tenant, admin_conn, a, steps=2, ended_days_ago=10)
    running = quest_with_steps(in_tenant, admin_conn, a, steps=2, ended_days_ago=None)
    other = quest_with_steps(in_tenant, admin_conn, b, steps=3, ended_days_ago=91)
    retention = Retention(db, guard_redis, days=90, interval_s=3600, batch=2)

    redacted = in_tenant.run(retention.redact())
    assert redacted >= 8  # other tests' companies may have old steps too: never fewer
    for quest in (old, other):
        for content, tool_results, usage, cost, events, redacted_at in stored(admin_conn, quest):
            # which tool was called stays, not what it was asked
            assert content == [*REDACTED, {**USE, "input": {}}] and tool_results == []
            assert redacted_at is not None
            # the record of what was done and what it cost stays
            assert (usage, cost, events) == ({"input_tokens": 10}, 42, [{"action": "note.added"}])
        row = in_tenant(quest.company_id, lambda tx, q=quest: quests_store.get(tx, q.id))
        assert row is not None and (row.goal, row.result) == ("Summarise Q3", "Q3 is up")
    for quest in (recent, running):
        assert [(c, t) for c, t, *_ in stored(admin_conn, quest)] == [(REPLY, RESULTS)] * 2
    assert in_tenant.run(retention.redact()) == 0  # nothing twice


def test_a_step_another_transaction_holds_is_skipped_not_waited_for(
    in_tenant: InTenant,
    db: Database,
    guard_redis: AsyncRedis,
    admin_conn: psycopg.Connection[Any],
    settings: Settings,
    tenant: Tenant,
) -> None:
    quest = quest_with_steps(in_tenant, admin_conn, tenant, steps=3, ended_days_ago=120)
    retention = Retention(db, guard_redis, days=90, interval_s=3600, batch=10)
    holding, release = threading.Event(), threading.Event()

    def hold_step_two() -> None:
        with psycopg.connect(settings.admin_database_url) as conn, conn.transaction():
            conn.execute(
                "SELECT 1 FROM quest_steps WHERE quest_id = %s AND step = 2 FOR UPDATE",
                (quest.id,),
            )
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold_step_two)
    holder.start()
    try:
        assert holding.wait(10)
        in_tenant.run(retention.redact())  # returns at once: the held step is skipped
        assert [r[5] is not None for r in stored(admin_conn, quest)] == [True, False, True]
    finally:
        release.set()
        holder.join(10)
    in_tenant.run(retention.redact())
    assert all(r[5] is not None for r in stored(admin_conn, quest))


def test_the_retention_is_a_number_of_days_of_at_least_one() -> None:
    assert Settings(transcript_retention_days=30).transcript_retention_days == 30
    assert Settings().transcript_retention_days == 90
    try:
        Settings(transcript_retention_days=0)
    except ValueError as exc:
        assert "transcript_retention_days" in str(exc)
    else:
        raise AssertionError("a retention of 0 days was accepted")
