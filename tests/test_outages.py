"""Postgres down under load, Redis restarted (with its append-only file, as in production):
nothing acknowledged early, nothing lost, nothing written twice, budgets intact, and the
ingress says 503 with Retry-After rather than claiming to have queued what it did not.
Each test starts its own server on loopback and stops it by PID."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from guard import Guard, Scope
from runtime.loop_thread import LoopThread
from runtime.settings import Settings
from store import Database, TenantTx
from store import activity as activity_store
from store import charges as charges_store
from store import companies as companies_store
from store import notes as notes_store
from store.activity import ActivityFilter
from store.migrate import migrate
from tests.conftest import JWT_SECRET, Stack, Tenant
from tests.servers import PrivatePostgres, PrivateRedis
from tests.support import InTenant, submit, wait_for

pytestmark = pytest.mark.slow


def make_tenant(store: InTenant) -> Tenant:
    cid = uuid.uuid4()
    tenant = Tenant(cid, admin=f"admin-{cid.hex[:6]}", member=f"member-{cid.hex[:6]}")

    async def create(tx: TenantTx) -> None:
        await companies_store.create(tx, "Outage Co")
        await companies_store.add_member(tx, tenant.admin, "admin")

    store(cid, create)
    return tenant


def all_finished(store: InTenant, tenant: Tenant, ids: list[uuid.UUID]) -> list[str] | None:
    rows = store(
        tenant.id,
        lambda tx: tx.all(
            "SELECT status FROM quests WHERE company_id = %s AND id = ANY(%s)", (tenant.id, ids)
        ),
    )
    statuses = [r[0] for r in rows]
    return (
        statuses
        if len(statuses) == len(ids) and all(s not in ("queued", "running") for s in statuses)
        else None
    )


def audited_once(store: InTenant, tenant: Tenant, ids: list[uuid.UUID]) -> bool:
    rows, _ = store(tenant.id, lambda tx: activity_store.page(tx, ActivityFilter(), limit=1000))
    per_quest = {q: sorted(r.action for r in rows if r.quest_id == q) for q in ids}
    return all(
        actions == ["note.added", "quest.started", "quest.succeeded"]
        for actions in per_quest.values()
    )


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    try:
        pg = PrivatePostgres()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    pg.init()
    pg.start()
    yield pg
    pg.stop("immediate")
    pg.remove()


def test_postgres_down_for_30_s_under_load_loses_nothing_and_writes_nothing_twice(
    private_pg: PrivatePostgres,
    redis_url: str,
    offline_claude: str,
    tmp_path: Path,
    rds: redis.Redis,
    call_loop: LoopThread,
) -> None:
    rds.flushdb()
    admin, app = private_pg.admin_url("system2"), private_pg.app_url("system2")
    migrate(admin, app)
    settings = Settings(
        database_url=app, admin_database_url=admin, redis_url=redis_url, jwt_secret=JWT_SECRET
    )  # type: ignore[arg-type]
    stack = Stack(settings, offline_claude, tmp_path, {})
    store = InTenant(Database(app, max_size=2), call_loop)  # on the private Postgres
    call_loop.run(store.db.open())
    try:
        tenant = make_tenant(store)
        ids = [
            submit(store, redis_url, tenant.id, f"[script:notes] note {i}").id for i in range(16)
        ]
        stack.start_workers(processes=2)
        time.sleep(1.0)  # some quests are mid-step now
        private_pg.stop("immediate")
        time.sleep(30)
        private_pg.start()
        call_loop.run(store.db.close())
        store = InTenant(Database(app, max_size=2), call_loop)
        call_loop.run(store.db.open())
        statuses = wait_for(lambda: all_finished(store, tenant, ids), timeout=150, every=0.5)
        assert statuses == ["succeeded"] * 16
        notes = store(tenant.id, lambda tx: notes_store.recent(tx, 50))
        assert len(notes) == 16, "each note written once"
        wait_for(lambda: audited_once(store, tenant, ids), timeout=60, every=0.5)
    finally:
        stack.stop()
        call_loop.run(store.db.close())


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_redis_restarted_with_aof_resumes_the_work_and_the_ingress_says_503_meanwhile(
    private_redis: PrivateRedis,
    settings: Settings,
    offline_claude: str,
    tmp_path: Path,
    in_tenant: InTenant,
) -> None:
    s = settings.model_copy(update={"redis_url": private_redis.url})
    stack = Stack(
        s,
        offline_claude,
        tmp_path,
        {},
        base_env={"S2_SWEEP_INTERVAL_S": "2", "S2_SWEEP_IDLE_S": "10"},
    )
    tenant = make_tenant(in_tenant)
    try:
        stack.start_workers(processes=2)
        url = stack.start_ingress()
        http = httpx.Client(base_url=url, timeout=10)
        submit_url = f"/v1/companies/{tenant.id}/quests"
        ids = []
        for i in range(10):
            resp = http.post(
                submit_url,
                json={"goal": f"[script:brief_hold_notes] plan {i}"},
                headers=tenant.headers(),
            )
            assert resp.status_code == 202
            ids.append(uuid.UUID(resp.json()["quest_id"]))
        time.sleep(1.5)  # steps are waiting on Claude
        private_redis.stop()

        during = http.post(
            submit_url, json={"goal": "while Redis is down"}, headers=tenant.headers()
        )
        assert during.status_code == 503 and int(during.headers["Retry-After"]) > 0
        assert http.get("/readyz").status_code == 503
        count = in_tenant(
            tenant.id,
            lambda tx: tx.one("SELECT count(*) FROM quests WHERE company_id = %s", (tenant.id,)),
        )
        assert count == (10,), "nothing claimed to be queued"
        time.sleep(3)
        private_redis.start()

        statuses = wait_for(lambda: all_finished(in_tenant, tenant, ids), timeout=120, every=0.5)
        assert statuses == ["succeeded"] * 10

        async def notes_and_ledgers(tx: TenantTx) -> tuple[int, dict[uuid.UUID, int]]:
            notes = await notes_store.recent(tx, 50)
            charged = {q: await charges_store.for_quest(tx, q) for q in ids}
            return len(notes), {q: charges_store.totals(c)[0] for q, c in charged.items()}

        notes, ledgers = in_tenant(tenant.id, notes_and_ledgers)
        assert notes == 10
        wait_for(lambda: audited_once(in_tenant, tenant, ids), timeout=60, every=0.5)
        limits = s.default_limits()

        async def levels(quest_id: uuid.UUID) -> list[tuple[Scope, int, int]]:
            async with AsyncRedis.from_url(private_redis.url) as client:
                guard = Guard(client)
                (scope, *_) = guard.scopes(
                    tenant.id, quest_id, limits.quest_cap, limits, datetime.now(UTC)
                )
                return await guard.levels([scope])

        for quest_id, spent in ledgers.items():
            found = asyncio.run(levels(quest_id))
            assert found and found[0][1] >= spent, (
                "the guard's count survived the restart (never below)"
            )
    finally:
        stack.stop()
