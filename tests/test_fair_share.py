"""Fair share on the whole stack: worker processes fed by one company's backlog still run
another company's quest in its turn, and a worker killed with SIGKILL mid-backlog loses and
repeats nothing (``workers.fair_queue``)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Any

import psutil
import psycopg
import pytest

from store import limits as limits_store
from store.limits import LimitOverrides
from system2.procs import Proc
from tests.conftest import Stack, Tenant
from tests.support import InTenant, submit, wait_finished, wait_for
from workers.fleet import STARTUP_S

pytestmark = pytest.mark.slow
BACKLOG = 240
FAST = {"S2_BROKER_HEARTBEAT_MS": "3000", "S2_BROKER_MAINTENANCE_CHANCE": "1000000"}


def raise_limits(in_tenant: InTenant, company_id: uuid.UUID) -> None:
    """A's own limits must not be what holds its backlog back: the queue is under test."""
    overrides = LimitOverrides(max_running_quests=10_000, quests_per_minute=100_000)

    async def put(tx: Any) -> None:
        await limits_store.put(tx, overrides)

    in_tenant(company_id, put)


def counts(admin: psycopg.Connection[Any], company_id: uuid.UUID) -> dict[str, int]:
    rows = admin.execute(
        "SELECT status, count(*) FROM quests WHERE company_id = %s GROUP BY status",
        (company_id,),
    ).fetchall()
    return {str(status): int(n) for status, n in rows}


def children(group: Proc) -> list[int]:
    assert group.popen is not None
    return [c.pid for c in psutil.Process(group.popen.pid).children()]


def test_a_company_s_quest_runs_in_its_turn_behind_another_s_backlog_and_a_kill_loses_nothing(
    stack: Stack,
    in_tenant: InTenant,
    make_tenant: Any,
    admin_conn: psycopg.Connection[Any],
) -> None:
    a: Tenant = make_tenant("Flood Inc")
    b: Tenant = make_tenant("Small Co")
    raise_limits(in_tenant, a.id)
    for n in range(BACKLOG):
        submit(in_tenant, stack.settings.redis_url, a.id, f"[script:brief] task {n}")
    workers = stack.start_workers(processes=2, in_flight=3, **FAST)
    wait_for(lambda: counts(admin_conn, a.id).get("succeeded", 0) >= 10, timeout=60)

    quest = submit(in_tenant, stack.settings.redis_url, b.id, "[script:brief] one small thing")
    done = wait_finished(in_tenant, b.id, quest.id, timeout=30)
    assert done.status == "succeeded"
    a_left = BACKLOG - counts(admin_conn, a.id).get("succeeded", 0)
    # In a FIFO queue B's quest would run after all of A's; here it ran in its turn.
    assert a_left >= BACKLOG // 2, f"B's quest waited for A's backlog ({a_left} of A's left)"

    victim = children(workers)[0]
    # Past its start-up window (a death within it stops the group instead of being replaced).
    time.sleep(max(0.0, psutil.Process(victim).create_time() + STARTUP_S + 1 - time.time()))
    assert counts(admin_conn, a.id).get("queued", 0) > 0, "the kill must come mid-backlog"
    os.kill(victim, signal.SIGKILL)  # steps in flight; the group starts another process
    wait_for(lambda: counts(admin_conn, a.id) == {"succeeded": BACKLOG}, timeout=120)
    once = admin_conn.execute(
        "SELECT (SELECT count(*) FROM quests WHERE company_id = %s AND steps_done = 1),"
        "       (SELECT count(*) FROM charges WHERE company_id = %s AND status = 'settled')",
        (a.id, a.id),
    ).fetchone()
    assert once == (BACKLOG, BACKLOG)  # each quest's one step done and charged once
