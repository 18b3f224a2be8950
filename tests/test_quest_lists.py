"""Seeing quests without holding an id (issue 20): the company's quest list (members their
own, admins all; newest first; an opaque cursor), the caller's companies, ``system2 quest
list``, ``Location`` on a submit, and the company-wide live feed (SSE), against the real
ingress, Postgres and Redis.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from redis.asyncio import Redis as AsyncRedis

from runtime.loop_thread import LoopThread
from runtime.settings import Settings
from tests.conftest import Tenant, settings_env, system2
from tests.ingress_server import Server, SseStream, WorkerEvents, emit, ingress_process, open_quest
from tests.support import InTenant, grant_support, ingress_client
from workers.events import QuestEvents

AdminConn = psycopg.Connection[tuple[Any, ...]]


@pytest.fixture
def client(settings: Settings, rds: redis.Redis) -> Iterator[TestClient]:
    with ingress_client(settings, rds) as test_client:
        yield test_client
    rds.flushdb()  # the steps its submits queued: no later test's workers should find them


def quests_url(company_id: uuid.UUID) -> str:
    return f"/v1/companies/{company_id}/quests"


def walk(client: TestClient, url: str, headers: dict[str, str], **params: Any) -> list[str]:
    """Every quest id the list gives, page by page."""
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(50):
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        resp = client.get(url, params=query, headers=headers)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        seen.extend(item["quest_id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("the pages never end")


def test_admins_list_every_quest_newest_first_and_members_their_own(
    client: TestClient,
    in_tenant: InTenant,
    tenant: Tenant,
    other_tenant: Tenant,
    admin_conn: AdminConn,
) -> None:
    by_member = [open_quest(in_tenant, tenant.id, tenant.member, f"member {i}") for i in range(5)]
    by_admin = [open_quest(in_tenant, tenant.id, tenant.admin, f"admin {i}") for i in range(4)]
    open_quest(in_tenant, other_tenant.id, other_tenant.member, "elsewhere")
    # Pairs that share a creation time: the cursor must break the tie, never skip or repeat.
    base = datetime(2031, 1, 1, tzinfo=UTC)
    for i, quest in enumerate([*by_member, *by_admin]):
        admin_conn.execute(
            "UPDATE quests SET created_at = %s WHERE id = %s",
            (base + timedelta(seconds=i // 2), quest),
        )
    url = quests_url(tenant.id)

    everything = walk(client, url, tenant.headers(tenant.admin), limit=2)
    rows = admin_conn.execute(
        "SELECT id FROM quests WHERE company_id = %s ORDER BY created_at DESC, id DESC",
        (tenant.id,),
    ).fetchall()
    assert everything == [str(r[0]) for r in rows]
    assert len(everything) == 9 and len(set(everything)) == 9

    own = walk(client, url, tenant.headers(tenant.member), limit=3)
    assert sorted(own) == sorted(str(q) for q in by_member)

    first = client.get(url, params={"limit": 1}, headers=tenant.headers(tenant.admin)).json()
    item = first["items"][0]
    assert item["goal"] == "admin 3" and item["status"] == "queued"
    assert item["created_by"] == f"user:{tenant.admin}"
    assert item["cost_usd_micros"] == 0 and item["steps_done"] == 0

    refused = client.get(url, headers=other_tenant.headers(other_tenant.admin))
    assert refused.status_code == 403


def test_the_list_filters_by_status_and_creation_time(
    client: TestClient, in_tenant: InTenant, tenant: Tenant, admin_conn: AdminConn
) -> None:
    old, done, fresh = (open_quest(in_tenant, tenant.id, tenant.admin, g) for g in "abc")
    admin_conn.execute("UPDATE quests SET created_at = '2020-01-01Z' WHERE id = %s", (old,))
    admin_conn.execute(
        "UPDATE quests SET status = 'succeeded', finished_at = now() WHERE id = %s", (done,)
    )
    url, headers = quests_url(tenant.id), tenant.headers(tenant.admin)

    assert walk(client, url, headers, status="succeeded") == [str(done)]
    both = walk(client, url, headers, status=["succeeded", "queued"])
    assert set(both) == {str(old), str(done), str(fresh)}
    assert str(old) not in walk(client, url, headers, since="2021-01-01T00:00:00Z")
    assert walk(client, url, headers, until="2021-01-01T00:00:00Z") == [str(old)]

    bad = client.get(url, params={"status": "sleeping"}, headers=headers)
    assert bad.status_code == 422
    for cursor in ("garbage", "MjAzMC0wMS0wMVQwMDowMDowMCswMDowMHwxMg"):  # an activity-like id
        resp = client.get(url, params={"cursor": cursor}, headers=headers)
        assert resp.status_code == 422, resp.text
        assert "cursor" in resp.json()["detail"]


def test_a_caller_sees_the_companies_it_belongs_to_and_no_other(
    client: TestClient, in_tenant: InTenant, tenant: Tenant, other_tenant: Tenant
) -> None:
    from store import companies as companies_store

    in_tenant(other_tenant.id, lambda tx: companies_store.add_member(tx, tenant.member, "admin"))

    mine = client.get("/v1/companies", headers=tenant.headers(tenant.member))
    assert mine.status_code == 200, mine.text
    roles = {c["company_id"]: c["role"] for c in mine.json()}
    assert roles == {str(tenant.id): "member", str(other_tenant.id): "admin"}

    theirs = client.get("/v1/companies", headers=tenant.headers(tenant.admin)).json()
    assert [(c["company_id"], c["role"]) for c in theirs] == [(str(tenant.id), "admin")]
    assert client.get("/v1/companies", headers=tenant.headers("nobody")).json() == []
    assert client.get("/v1/companies").status_code == 401


def test_the_app_role_sees_memberships_across_companies_only_for_the_member_it_names(
    settings: Settings, tenant: Tenant, other_tenant: Tenant
) -> None:
    with psycopg.connect(settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM memberships").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM companies").fetchone() == (0,)
        conn.execute("SELECT set_config('app.member_id', %s, true)", (tenant.member,))
        rows = conn.execute("SELECT company_id, user_id FROM memberships").fetchall()
        assert rows == [(tenant.id, tenant.member)]
        assert conn.execute("SELECT id FROM companies").fetchall() == [(tenant.id,)]
        assert conn.execute("SELECT count(*) FROM quests").fetchone() == (0,)
        # Read-only: the tenant policies still decide every write.
        updated = conn.execute(
            "UPDATE memberships SET role = 'admin' WHERE user_id = %s", (tenant.member,)
        )
        assert updated.rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO memberships (company_id, user_id, role) VALUES (%s, %s, 'admin')",
                (other_tenant.id, tenant.member),
            )


def test_a_submit_answers_with_the_quests_location(client: TestClient, tenant: Tenant) -> None:
    resp = client.post(
        quests_url(tenant.id), json={"goal": "Find me"}, headers=tenant.headers(tenant.member)
    )
    assert resp.status_code == 202, resp.text
    location = resp.headers["location"]
    assert location == f"/v1/companies/{tenant.id}/quests/{resp.json()['quest_id']}"
    shown = client.get(location, headers=tenant.headers(tenant.member))
    assert shown.status_code == 200 and shown.json()["goal"] == "Find me"


def test_quest_list_command_prints_a_page_and_its_cursor(
    settings: Settings, in_tenant: InTenant, tenant: Tenant
) -> None:
    quests = [open_quest(in_tenant, tenant.id, tenant.member, f"q{i}") for i in range(3)]
    env = settings_env(settings)
    grant_support(in_tenant, tenant.id)  # goals are content: an engineer reads them under a grant
    first = subprocess.run(
        system2("quest", "list", "--company", str(tenant.id), "--limit", "2"),
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    page = json.loads(first.stdout)
    assert [i["goal"] for i in page["items"]] == ["q2", "q1"]
    second = subprocess.run(
        system2("quest", "list", "--company", str(tenant.id), "--cursor", page["next_cursor"]),
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    rest = json.loads(second.stdout)
    assert [i["quest_id"] for i in rest["items"]] == [str(quests[0])] and rest[
        "next_cursor"
    ] is None

    bad = subprocess.run(
        system2("quest", "list", "--company", str(tenant.id), "--status", "sleeping"),
        check=False, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode != 0
    assert bad.stderr.strip().count("\n") == 0 and "sleeping" in bad.stderr


# --- the company feed ------------------------------------------------------------------------


@pytest.fixture
def events(guard_redis: AsyncRedis, call_loop: LoopThread) -> WorkerEvents:
    return WorkerEvents(QuestEvents(guard_redis, maxlen=10_000), call_loop)


def feed_url(company_id: uuid.UUID) -> str:
    return f"/v1/companies/{company_id}/events"


async def take(stream: SseStream, count: int) -> list[dict[str, Any]]:
    got = []
    for _ in range(count):
        async with asyncio.timeout(20):
            event = await stream.next_event()
        assert event is not None, "the feed ended"
        got.append(event)
    return got


def test_the_company_feed_shows_admins_every_quest_and_members_their_own_and_resumes(
    settings: Settings,
    tmp_path: Path,
    in_tenant: InTenant,
    tenant: Tenant,
    other_tenant: Tenant,
    events: WorkerEvents,
) -> None:
    mine = open_quest(in_tenant, tenant.id, tenant.member)
    theirs = open_quest(in_tenant, tenant.id, tenant.admin)
    elsewhere = open_quest(in_tenant, other_tenant.id, other_tenant.member)
    emit(events, tenant.id, mine, "before", n=0)  # before the feed opened: not replayed

    async def main(server: Server) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            admin = await SseStream.open(client, feed_url(tenant.id), tenant.headers(tenant.admin))
            member = await SseStream.open(
                client, feed_url(tenant.id), tenant.headers(tenant.member)
            )
            assert admin.response.status_code == 200 and member.response.status_code == 200
            await asyncio.sleep(1.0)  # both joined the reader
            for n, (company, quest) in enumerate(
                [(tenant.id, theirs), (other_tenant.id, elsewhere), (tenant.id, mine)] * 2
            ):
                await asyncio.to_thread(emit, events, company, quest, "note", n=n)
            seen = await take(admin, 4)
            assert [(e["data"]["quest_id"], e["data"]["data"]["n"]) for e in seen] == [
                (str(theirs), 0), (str(mine), 2), (str(theirs), 3), (str(mine), 5)
            ]  # fmt: skip
            own = await take(member, 2)
            assert [(e["data"]["quest_id"], e["data"]["data"]["n"]) for e in own] == [
                (str(mine), 2), (str(mine), 5)
            ]  # fmt: skip
            await admin.close()
            await member.close()

            # Resumed after the second event: the two after it, nothing before.
            resumed = await SseStream.open(
                client,
                feed_url(tenant.id),
                {**tenant.headers(tenant.admin), "Last-Event-ID": seen[1]["id"]},
            )
            assert [e["id"] for e in await take(resumed, 2)] == [seen[2]["id"], seen[3]["id"]]
            await resumed.close()

            outsider = await client.get(
                feed_url(tenant.id), headers=other_tenant.headers(other_tenant.admin)
            )
            assert outsider.status_code == 403

    with ingress_process(settings, tmp_path) as server:
        asyncio.run(main(server))


def test_a_busy_feed_ends_soon_after_its_caller_stops_being_an_admin(
    settings: Settings,
    tmp_path: Path,
    in_tenant: InTenant,
    tenant: Tenant,
    events: WorkerEvents,
    admin_conn: AdminConn,
) -> None:
    """Checked by the clock, not only when quiet: events arriving all the time do not keep a
    demoted admin's stream open."""
    quest = open_quest(in_tenant, tenant.id, tenant.member)

    async def main(server: Server) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            feed = await SseStream.open(client, feed_url(tenant.id), tenant.headers(tenant.admin))
            await asyncio.sleep(1.0)
            stop = asyncio.Event()

            async def busy() -> None:
                n = 0
                while not stop.is_set():
                    await asyncio.to_thread(emit, events, tenant.id, quest, "note", n=n)
                    n += 1
                    await asyncio.sleep(0.2)

            emitter = asyncio.create_task(busy())
            try:
                assert len(await take(feed, 3)) == 3
                admin_conn.execute(
                    "UPDATE memberships SET role = 'member' WHERE company_id = %s AND user_id = %s",
                    (tenant.id, tenant.admin),
                )
                demoted = asyncio.get_running_loop().time()
                async with asyncio.timeout(15):
                    while await feed.next_event() is not None:
                        pass
                assert asyncio.get_running_loop().time() - demoted < 10
            finally:
                stop.set()
                await emitter
                await feed.close()

    with ingress_process(settings, tmp_path) as server:
        asyncio.run(main(server))
