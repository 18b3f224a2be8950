"""Support access: engineers read a company's content only under a live, logged grant.

Enforced by Postgres (the operator role's policies, migration 0013), checked here by
connecting as that role the way a hand-run psql would; and through the CLI, as an engineer
runs it.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from runtime.settings import Settings
from store import Database, TenantTx
from store import activity as activity_store
from store import notes as notes_store
from store import support as support_store
from store.activity import ActivityFilter
from tests.conftest import Tenant, settings_env, system2
from tests.support import ENGINEER, InTenant, grant_support, submit
from tests.test_cli import assert_one_line_error, run
from workers.support_expiry import SupportExpiry

AdminConn = psycopg.Connection[tuple[Any, ...]]
CONTENT_TABLES = ("companies", "memberships", "quests", "quest_steps", "notes", "activity_log")


def operator_conn(settings: Settings) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(settings.operator_database_url, autocommit=True)


def visible(
    conn: psycopg.Connection[tuple[Any, ...]], company: uuid.UUID, engineer: str
) -> dict[str, int]:
    """How many rows of each content table the operator role sees for ``company`` as
    ``engineer``."""
    with conn.transaction():
        conn.execute("SELECT set_config('app.company_id', %s, true)", (str(company),))
        conn.execute("SELECT set_config('app.operator', %s, true)", (engineer,))
        counts = {}
        for table in CONTENT_TABLES:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            counts[table] = row[0] if row else 0
        return counts


def seed(
    in_tenant: InTenant, settings: Settings, company: uuid.UUID, admin: AdminConn | None = None
) -> uuid.UUID:
    """A company with a member, a quest (with a step, given the owner's connection), a note
    and audit rows."""
    from store import companies as companies_store

    in_tenant(company, lambda tx: companies_store.add_member(tx, "alice", "admin"))
    quest = submit(in_tenant, settings.redis_url, company, "a confidential goal")

    async def note(tx: TenantTx) -> None:
        await notes_store.add(tx, quest.id, "a confidential note", f"k-{uuid.uuid4()}")

    in_tenant(company, note)
    if admin is not None:
        admin.execute(
            "INSERT INTO quest_steps (company_id, quest_id, step, status, model, content) "
            'VALUES (%s, %s, 1, \'replied\', \'m\', \'[{"type": "text", "text": "hi"}]\')',
            (company, quest.id),
        )
    return quest.id


def test_the_operator_role_sees_nothing_without_a_live_grant_of_its_own(
    settings: Settings,
    in_tenant: InTenant,
    tenant: Tenant,
    other_tenant: Tenant,
    admin_conn: AdminConn,
) -> None:
    seed(in_tenant, settings, tenant.id, admin_conn)
    seed(in_tenant, settings, other_tenant.id, admin_conn)
    with operator_conn(settings) as conn:
        nothing = dict.fromkeys(CONTENT_TABLES, 0)
        assert visible(conn, tenant.id, ENGINEER) == nothing  # no grant at all

        grant_support(in_tenant, tenant.id)
        seen = visible(conn, tenant.id, ENGINEER)
        assert all(seen[t] >= 1 for t in CONTENT_TABLES), seen
        assert visible(conn, other_tenant.id, ENGINEER) == nothing  # another company
        assert visible(conn, tenant.id, "mallory@support.test") == nothing  # another engineer
        assert visible(conn, tenant.id, "") == nothing  # no engineer named

        # Without a tenant the grant admits nothing either (the tenant policy still applies).
        with conn.transaction():
            conn.execute("SELECT set_config('app.operator', %s, true)", (ENGINEER,))
            assert conn.execute("SELECT count(*) FROM quests").fetchone() == (0,)


def test_a_revoked_or_expired_grant_admits_nothing(
    settings: Settings, in_tenant: InTenant, tenant: Tenant
) -> None:
    seed(in_tenant, settings, tenant.id)
    nothing = dict.fromkeys(CONTENT_TABLES, 0)
    past = datetime.now(UTC) - timedelta(hours=3)

    async def expired(tx: TenantTx) -> None:
        await support_store.grant(tx, ENGINEER, "old", by="lead@x.test", now=past, ttl_s=3_600)

    in_tenant(tenant.id, expired)
    with operator_conn(settings) as conn:
        assert visible(conn, tenant.id, ENGINEER) == nothing
        grant_id = grant_support(in_tenant, tenant.id)
        assert visible(conn, tenant.id, ENGINEER)["quests"] == 1

        async def revoke(tx: TenantTx) -> None:
            await support_store.revoke(tx, grant_id, by="lead@x.test", now=datetime.now(UTC))

        in_tenant(tenant.id, revoke)
        assert visible(conn, tenant.id, ENGINEER) == nothing


@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        ("SELECT access_token FROM integration_credentials", psycopg.errors.InsufficientPrivilege),
        ("SELECT count(*) FROM webhook_endpoints", psycopg.errors.InsufficientPrivilege),
        ("SELECT count(*) FROM company_limits", psycopg.errors.InsufficientPrivilege),
        ("UPDATE quests SET goal = 'x'", psycopg.errors.InsufficientPrivilege),
        ("DELETE FROM activity_log", psycopg.errors.InsufficientPrivilege),
        (
            "INSERT INTO support_grants (id, company_id, engineer, reason, granted_by, expires_at) "
            "VALUES (gen_random_uuid(), app_company_id(), 'eve@support.test', 'me', 'me', "
            "now() + interval '8 hours')",
            psycopg.errors.InsufficientPrivilege,
        ),
        (
            "UPDATE support_grants SET expires_at = now() + interval '1 year'",
            psycopg.errors.InsufficientPrivilege,
        ),
        (  # only its own support.read rows
            "INSERT INTO activity_log (company_id, occurred_at, actor_type, actor_id, action, "
            "target, idempotency_key) VALUES (app_company_id(), now(), 'ted', 'ted', "
            "'note.added', 'x', gen_random_uuid()::text)",
            psycopg.errors.InsufficientPrivilege,
        ),
    ],
)
def test_the_operator_role_cannot_write_or_reach_secrets_even_under_a_grant(
    settings: Settings,
    in_tenant: InTenant,
    tenant: Tenant,
    statement: str,
    refusal: type[Exception],
) -> None:
    grant_support(in_tenant, tenant.id)
    with operator_conn(settings) as conn, pytest.raises(refusal), conn.transaction():
        conn.execute("SELECT set_config('app.company_id', %s, true)", (str(tenant.id),))
        conn.execute("SELECT set_config('app.operator', %s, true)", (ENGINEER,))
        conn.execute(statement)  # type: ignore[arg-type]


def test_an_engineer_sees_only_their_own_grants(
    settings: Settings, in_tenant: InTenant, tenant: Tenant
) -> None:
    grant_support(in_tenant, tenant.id, "someone@support.test")
    mine = grant_support(in_tenant, tenant.id)
    with operator_conn(settings) as conn, conn.transaction():
        conn.execute("SELECT set_config('app.operator', %s, true)", (ENGINEER,))
        seen = conn.execute("SELECT id, engineer FROM support_grants").fetchall()
        assert (mine, ENGINEER) in seen and {e for _, e in seen} == {ENGINEER}
        conn.execute("SELECT set_config('app.operator', '', true)")
        assert conn.execute("SELECT id FROM support_grants").fetchall() == []


def trail(in_tenant: InTenant, company: uuid.UUID, action: str) -> list[Any]:
    """The company's audit rows of ``action``, as its admins read them (the app role)."""

    async def page(tx: TenantTx) -> list[Any]:
        rows, _ = await activity_store.page(tx, ActivityFilter(action=action), limit=100)
        return rows

    return in_tenant(company, page)


def test_grant_read_revoke_through_the_cli_each_leave_a_row_admins_see(
    settings: Settings, in_tenant: InTenant, tenant: Tenant
) -> None:
    quest_id = seed(in_tenant, settings, tenant.id)
    as_lead = {"S2_OPERATOR": "lead@support.test"}
    granted = run(
        settings, "support", "grant", "--company", str(tenant.id), "--engineer",
        "Eve@Support.test", "--reason", "ticket 4711: quest stuck", "--ttl", "2h", **as_lead,
    )  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    grant_id = uuid.UUID(granted.stdout.strip())
    (row,) = trail(in_tenant, tenant.id, "support.granted")
    assert (row.actor_id, row.target) == ("lead@support.test", f"engineer:{ENGINEER}")
    assert row.payload["reason"] == "ticket 4711: quest stuck" and row.payload["ttl_s"] == 7_200

    listed = run(settings, "support", "list", "--company", str(tenant.id))
    assert listed.returncode == 0, listed.stderr
    assert '"state": "live"' in listed.stdout and str(grant_id) in listed.stdout

    shown = run(settings, "quest", "show", str(quest_id), "--as", ENGINEER)
    assert shown.returncode == 0, shown.stderr
    assert "a confidential goal" in shown.stdout
    (read,) = trail(in_tenant, tenant.id, "support.read")
    assert (read.actor_id, read.quest_id, read.target) == (ENGINEER, quest_id, f"quest:{quest_id}")
    assert read.payload == {"grant_id": str(grant_id), "read": "quest show"}

    revoked = run(
        settings, "support", "revoke", str(grant_id), "--company", str(tenant.id), **as_lead
    )
    assert revoked.returncode == 0, revoked.stderr
    assert [r.actor_id for r in trail(in_tenant, tenant.id, "support.revoked")] == [
        "lead@support.test"
    ]
    after = run(settings, "quest", "show", str(quest_id), "--as", ENGINEER)
    assert "live support grant" in assert_one_line_error(after)
    assert "confidential" not in after.stdout + after.stderr
    again = run(
        settings, "support", "revoke", str(grant_id), "--company", str(tenant.id), **as_lead
    )
    assert "no live support grant" in assert_one_line_error(again)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--ttl", "9h"), "--ttl must be from 1m to 8h"),
        (("--ttl", "soon"), "--ttl: a duration is"),
        (("--ttl", "10s"), "--ttl must be from 1m"),
        (("--ttl", "1h", "--engineer", "not an email"), "must be an email address"),
        (("--ttl", "1h", "--reason", " "), "--reason must say why"),
    ],
)
def test_a_bad_grant_is_refused_in_one_line_and_grants_nothing(
    settings: Settings, in_tenant: InTenant, tenant: Tenant, args: tuple[str, ...], says: str
) -> None:
    base = {"--engineer": ENGINEER, "--reason": "ticket 1"}
    given = dict(zip(args[::2], args[1::2], strict=True))
    flat = [x for k, v in {**base, **given}.items() for x in (k, v)]
    result = run(
        settings, "support", "grant", "--company", str(tenant.id), *flat, S2_OPERATOR="l@x.test"
    )
    assert says in assert_one_line_error(result)
    assert trail(in_tenant, tenant.id, "support.granted") == []


def test_the_longest_grant_follows_the_setting(
    settings: Settings, in_tenant: InTenant, tenant: Tenant
) -> None:
    args = ("support", "grant", "--company", str(tenant.id), "--engineer", ENGINEER)
    more = ("--reason", "r", "--ttl", "3h", "--as", "lead@support.test")
    short = run(settings, *args, *more, S2_SUPPORT_MAX_TTL="2h")
    assert "at most" not in short.stderr and "from 1m to 2h" in assert_one_line_error(short)
    assert run(settings, *args, *more, S2_SUPPORT_MAX_TTL="12h").returncode == 0


def test_a_grant_for_an_unknown_company_or_without_a_name_is_refused(settings: Settings) -> None:
    unknown = run(
        settings, "support", "grant", "--company", str(uuid.uuid4()), "--engineer", ENGINEER,
        "--reason", "r", "--ttl", "1h", "--as", "lead@support.test",
    )  # fmt: skip
    assert "no company" in assert_one_line_error(unknown)
    nameless = run(settings, "audit", "list", "--company", str(uuid.uuid4()))
    assert "--as EMAIL or S2_OPERATOR" in assert_one_line_error(nameless)


def test_expiries_are_recorded_once_by_the_elected_worker(
    settings: Settings, db: Database, in_tenant: InTenant, tenant: Tenant, call_loop: Any
) -> None:
    past = datetime.now(UTC) - timedelta(hours=2)

    async def lapsed(tx: TenantTx) -> support_store.SupportGrant:
        return await support_store.grant(
            tx, ENGINEER, "old ticket", by="lead@x.test", now=past, ttl_s=600
        )

    old = in_tenant(tenant.id, lapsed)
    grant_support(in_tenant, tenant.id)  # live: not expired
    expiry = SupportExpiry(db, None)  # type: ignore[arg-type] - record() needs no Redis
    assert call_loop.run(expiry.record()) >= 1
    assert call_loop.run(expiry.record()) == 0
    (row,) = trail(in_tenant, tenant.id, "support.expired")
    assert (row.actor_type, row.payload["grant_id"]) == ("system", str(old.id))
    assert row.occurred_at == old.expires_at


def test_a_watch_stops_when_its_grant_is_revoked(
    settings: Settings, in_tenant: InTenant, tenant: Tenant
) -> None:
    quest = submit(in_tenant, settings.redis_url, tenant.id, "wait here")  # no workers: waits
    grant_id = grant_support(in_tenant, tenant.id)
    proc = subprocess.Popen(
        system2("quest", "watch", str(quest.id)),
        env=settings_env(settings, S2_OPERATOR=ENGINEER),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        assert proc.poll() is None, proc.communicate()  # watching

        async def revoke(tx: TenantTx) -> None:
            await support_store.revoke(tx, grant_id, by="lead@x.test", now=datetime.now(UTC))

        in_tenant(tenant.id, revoke)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert "the support grant ended" in err


def test_a_quest_is_found_only_in_the_companies_the_engineer_is_granted(
    settings: Settings, in_tenant: InTenant, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = submit(in_tenant, settings.redis_url, other_tenant.id, "another company's goal")
    mine = submit(in_tenant, settings.redis_url, tenant.id, "my company's goal")
    grant_support(in_tenant, tenant.id)
    found = run(settings, "quest", "show", str(mine.id), "--as", ENGINEER)
    assert found.returncode == 0, found.stderr
    hidden = run(settings, "quest", "show", str(theirs.id), "--as", ENGINEER)
    line = assert_one_line_error(hidden)
    assert "holds a live support grant for" in line and str(other_tenant.id) not in line
    assert "another company" not in hidden.stdout


def test_deleting_a_company_ends_its_live_grants(
    settings: Settings, in_tenant: InTenant, make_tenant: Any
) -> None:
    doomed = make_tenant("Doomed Ltd")
    quest_id = seed(in_tenant, settings, doomed.id)
    grant_support(in_tenant, doomed.id)
    deleted = run(settings, "company", "delete", str(doomed.id), "--confirm", "Doomed Ltd")
    assert deleted.returncode == 0, deleted.stderr
    (row,) = trail(in_tenant, doomed.id, "support.revoked")
    assert row.target == f"engineer:{ENGINEER}"
    after = run(settings, "quest", "show", str(quest_id), "--as", ENGINEER)
    assert "live support grant" in assert_one_line_error(after)
