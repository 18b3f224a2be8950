"""Support access: engineers read a company's content only under a live, logged grant.

Enforced by Postgres (the operator role's policies, migration 0013), checked here by
connecting as that role the way a hand-run psql would; and through the CLI, as an engineer
runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from datetime import datetime
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql

from runtime.settings import Settings
from store import Database, MigrationError, TenantTx
from store import activity as activity_store
from store import notes as notes_store
from store import support as support_store
from store.activity import ActivityFilter
from store.engineers import enroll
from store.migrate import migrate
from system2.scratch import operator_url, scratch_postgres
from tests.conftest import Tenant, settings_env, system2
from tests.support import ENGINEER, InTenant, grant_support, ingress_client, submit
from tests.test_cli import assert_one_line_error, run
from workers.support_expiry import SupportExpiry

Conn = psycopg.Connection[tuple[Any, ...]]
AdminConn = Conn
CONTENT_TABLES = ("companies", "memberships", "quests", "quest_steps", "notes", "activity_log")


MALLORY = "mallory@support.test"


def operator_conn(settings: Settings, engineer: str = ENGINEER) -> Conn:
    """A session as ``engineer``'s own login, as a hand-run psql would open it."""
    return psycopg.connect(operator_url(settings.database_url, engineer), autocommit=True)


@pytest.fixture(scope="module")
def mallory(admin_conn: Conn) -> str:
    """A second engineer, enrolled: a login of their own, no grant."""
    enroll(admin_conn, MALLORY)
    return MALLORY


def visible(conn: Conn, company: uuid.UUID, operator: str | None = None) -> dict[str, int]:
    """How many rows of each content table the session sees for ``company`` (``operator``:
    what a session may claim about itself, which changes nothing)."""
    with conn.transaction():
        conn.execute("SELECT set_config('app.company_id', %s, true)", (str(company),))
        if operator is not None:
            conn.execute("SELECT set_config('app.operator', %s, true)", (operator,))
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


def test_an_engineer_sees_nothing_without_a_live_grant_of_their_own(
    settings: Settings,
    in_tenant: InTenant,
    tenant: Tenant,
    other_tenant: Tenant,
    admin_conn: AdminConn,
    mallory: str,
) -> None:
    seed(in_tenant, settings, tenant.id, admin_conn)
    seed(in_tenant, settings, other_tenant.id, admin_conn)
    nothing = dict.fromkeys(CONTENT_TABLES, 0)
    with operator_conn(settings) as conn, operator_conn(settings, mallory) as other:
        assert visible(conn, tenant.id) == nothing  # no grant at all

        grant_support(in_tenant, tenant.id)
        seen = visible(conn, tenant.id)
        assert all(seen[t] >= 1 for t in CONTENT_TABLES), seen
        assert visible(conn, other_tenant.id) == nothing  # another company
        assert visible(other, tenant.id) == nothing  # another engineer ...
        assert visible(other, tenant.id, operator=ENGINEER) == nothing  # ... claiming to be her
        with pytest.raises(psycopg.errors.InsufficientPrivilege), other.transaction():
            other.execute("SET ROLE system2_app")  # nor can she become the app

        # Without a tenant the grant admits nothing either (the tenant policy still applies).
        assert conn.execute("SELECT count(*) FROM quests").fetchone() == (0,)


def backdate(admin: AdminConn, grant_id: uuid.UUID, hours: int) -> datetime:
    """Move a grant into the past (as the owner: the app role cannot), so that it has expired
    ``hours`` ago less its length; returns its new ``expires_at``."""
    row = admin.execute(
        "UPDATE support_grants SET granted_at = granted_at - make_interval(hours => %s), "
        "expires_at = expires_at - make_interval(hours => %s) WHERE id = %s RETURNING expires_at",
        (hours, hours, grant_id),
    ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def test_a_revoked_or_expired_grant_admits_nothing(
    settings: Settings, in_tenant: InTenant, tenant: Tenant, admin_conn: AdminConn
) -> None:
    seed(in_tenant, settings, tenant.id)
    nothing = dict.fromkeys(CONTENT_TABLES, 0)
    backdate(admin_conn, grant_support(in_tenant, tenant.id), hours=3)
    with operator_conn(settings) as conn:
        assert visible(conn, tenant.id) == nothing
        grant_id = grant_support(in_tenant, tenant.id)
        assert visible(conn, tenant.id)["quests"] == 1

        async def revoke(tx: TenantTx) -> None:
            await support_store.revoke(tx, grant_id, by="lead@x.test")

        in_tenant(tenant.id, revoke)
        assert visible(conn, tenant.id) == nothing


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
            "INSERT INTO activity_log (company_id, action) VALUES (app_company_id(), 'x.y')",
            psycopg.errors.InsufficientPrivilege,
        ),
        (  # nor choose an id (the identity is every company's: a taken id blocks their rows)
            "INSERT INTO activity_log (id, company_id, action) OVERRIDING SYSTEM VALUE "
            "VALUES (9223372036854775000, app_company_id(), 'support.read')",
            psycopg.errors.InsufficientPrivilege,
        ),
        (  # nor when it was recorded
            "INSERT INTO activity_log (company_id, action, recorded_at) "
            "VALUES (app_company_id(), 'support.read', '2001-01-01')",
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
        conn.execute(statement)  # type: ignore[arg-type]


def test_an_engineer_sees_only_their_own_grants(
    settings: Settings, in_tenant: InTenant, tenant: Tenant, mallory: str
) -> None:
    theirs = grant_support(in_tenant, tenant.id, mallory)
    mine = grant_support(in_tenant, tenant.id)
    with operator_conn(settings) as conn, conn.transaction():
        conn.execute("SELECT set_config('app.operator', %s, true)", (mallory,))  # no matter
        seen = conn.execute("SELECT id, engineer FROM support_grants").fetchall()
        assert (mine, ENGINEER) in seen and {e for _, e in seen} == {ENGINEER}
    with operator_conn(settings, mallory) as conn:
        assert conn.execute("SELECT id FROM support_grants").fetchall() == [(theirs,)]


def trail(in_tenant: InTenant, company: uuid.UUID, action: str) -> list[Any]:
    """The company's audit rows of ``action``, as its admins read them (the app role)."""

    async def page(tx: TenantTx) -> list[Any]:
        rows, _ = await activity_store.page(tx, ActivityFilter(action=action), limit=100)
        return rows

    return in_tenant(company, page)


def test_grant_read_revoke_through_the_cli_each_leave_a_row_admins_see(
    settings: Settings, in_tenant: InTenant, tenant: Tenant, rds: redis.Redis
) -> None:
    quest_id = seed(in_tenant, settings, tenant.id)
    as_lead = {"S2_OPERATOR": "lead@support.test"}
    granted = run(
        settings, "support", "grant", "--company", str(tenant.id), "--engineer",
        ENGINEER.upper(), "--reason", "ticket 4711: quest stuck", "--ttl", "2h", **as_lead,
    )  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    grant_id = uuid.UUID(granted.stdout.strip())
    (row,) = trail(in_tenant, tenant.id, "support.granted")
    assert (row.actor_id, row.target) == ("lead@support.test", f"engineer:{ENGINEER}")
    assert row.payload["reason"] == "ticket 4711: quest stuck" and row.payload["ttl_s"] == 7_200

    listed = run(settings, "support", "list", "--company", str(tenant.id))
    assert listed.returncode == 0, listed.stderr
    assert '"state": "live"' in listed.stdout and str(grant_id) in listed.stdout

    shown = run(settings, "quest", "show", str(quest_id))
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
    after = run(settings, "quest", "show", str(quest_id))
    assert "live support grant" in assert_one_line_error(after)
    assert "confidential" not in after.stdout + after.stderr

    # what the company's admin reads in the product: the API's audit trail
    with ingress_client(settings, rds) as client:
        page = client.get(
            f"/v1/companies/{tenant.id}/activity", headers=tenant.headers(tenant.admin)
        )
    assert page.status_code == 200, page.text
    actions = [i["action"] for i in page.json()["items"]]
    assert {"support.granted", "support.read", "support.revoked"} <= set(actions), actions
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
        (("--ttl", "1h", "--engineer", "not an email"), "not an engineer's email address"),
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
    nameless = run(settings, "support", "revoke", str(uuid.uuid4()), "--company", str(uuid.uuid4()))
    assert "--as EMAIL or S2_OPERATOR" in assert_one_line_error(nameless)


def test_expiries_are_recorded_once_by_the_elected_worker(
    settings: Settings,
    db: Database,
    in_tenant: InTenant,
    tenant: Tenant,
    call_loop: Any,
    admin_conn: AdminConn,
) -> None:
    old = grant_support(in_tenant, tenant.id, ttl_s=600)
    ended = backdate(admin_conn, old, hours=2)
    live = grant_support(in_tenant, tenant.id)  # not expired

    async def too_soon(tx: TenantTx) -> None:  # a live grant's expiry cannot be noted early
        await tx.execute(
            "UPDATE support_grants SET expiry_logged_at = now() WHERE id = %s", (live,)
        )

    with pytest.raises(psycopg.errors.RaiseException, match="once and in time"):
        in_tenant(tenant.id, too_soon)
    expiry = SupportExpiry(db, None)  # type: ignore[arg-type] - record() needs no Redis
    assert call_loop.run(expiry.record()) >= 1
    assert call_loop.run(expiry.record()) == 0
    (row,) = trail(in_tenant, tenant.id, "support.expired")
    assert (row.actor_type, row.payload["grant_id"]) == ("system", str(old))
    assert row.occurred_at == ended


def test_a_watch_stops_when_its_grant_is_revoked(
    settings: Settings, in_tenant: InTenant, tenant: Tenant
) -> None:
    quest = submit(in_tenant, settings.redis_url, tenant.id, "wait here")  # no workers: waits
    grant_id = grant_support(in_tenant, tenant.id)
    proc = subprocess.Popen(
        system2("quest", "watch", str(quest.id)),
        env=settings_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        assert proc.poll() is None, proc.communicate()  # watching

        async def revoke(tx: TenantTx) -> None:
            await support_store.revoke(tx, grant_id, by="lead@x.test")

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
    found = run(settings, "quest", "show", str(mine.id))
    assert found.returncode == 0, found.stderr
    hidden = run(settings, "quest", "show", str(theirs.id))
    line = assert_one_line_error(hidden)
    assert "holds a live support grant for" in line and str(other_tenant.id) not in line
    assert "another company" not in hidden.stdout


def test_deleting_a_company_ends_its_live_grants_and_erases_their_reasons(
    settings: Settings, in_tenant: InTenant, make_tenant: Any, admin_conn: AdminConn
) -> None:
    doomed = make_tenant("Doomed Ltd")
    quest_id = seed(in_tenant, settings, doomed.id)
    grant_support(in_tenant, doomed.id)
    deleted = run(settings, "company", "delete", str(doomed.id), "--confirm", "Doomed Ltd")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout)["support_grants"] == 1
    reasons = admin_conn.execute(
        "SELECT reason, revoked_at IS NOT NULL FROM support_grants WHERE company_id = %s",
        (doomed.id,),
    ).fetchall()
    assert reasons == [("[erased]", True)]
    (row,) = trail(in_tenant, doomed.id, "support.revoked")
    assert row.target == f"engineer:{ENGINEER}"
    after = run(settings, "quest", "show", str(quest_id))
    assert "live support grant" in assert_one_line_error(after)


def test_a_support_read_row_is_written_from_the_session_whatever_the_insert_says(
    settings: Settings, in_tenant: InTenant, tenant: Tenant, admin_conn: AdminConn
) -> None:
    """An engineer's hand-written INSERT can neither backdate a read, name someone else, take a
    key the app will need (here: the revocation's of their own grant) nor point at a quest
    they cannot see."""
    grant_id = grant_support(in_tenant, tenant.id)
    with operator_conn(settings) as conn, conn.transaction():
        conn.execute("SELECT set_config('app.company_id', %s, true)", (str(tenant.id),))
        for column, value in (
            ("occurred_at", "2001-01-01"),
            ("actor_id", "someone@else.test"),
            ("target", "company:x"),
            ("rationale", "all good, nothing read"),
            ("idempotency_key", f"support.revoked:{grant_id}"),
        ):  # none of these may be named
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(
                    sql.SQL(
                        "INSERT INTO activity_log (company_id, action, {}) "
                        "VALUES (app_company_id(), 'support.read', %s)"
                    ).format(sql.Identifier(column)),
                    (value,),
                )
        conn.execute(  # what may be named is rewritten: a quest they cannot see is dropped
            "INSERT INTO activity_log (company_id, action, quest_id, payload) "
            "VALUES (app_company_id(), 'support.read', gen_random_uuid(), %s)",
            (json.dumps({"read": "nothing", "grant_id": "forged"}),),
        )
    row = admin_conn.execute(
        "SELECT occurred_at > now() - interval '1 minute', actor_type, actor_id, rationale, "
        "payload, idempotency_key LIKE 'support.read:%%', target, quest_id FROM activity_log "
        "WHERE company_id = %s AND action = 'support.read'",
        (tenant.id,),
    ).fetchone()
    assert row == (
        True, "operator", ENGINEER, None, {"grant_id": str(grant_id), "read": "nothing"}, True,
        f"company:{tenant.id}", None,
    )  # fmt: skip

    async def revoke(tx: TenantTx) -> None:
        await support_store.revoke(tx, grant_id, by="lead@x.test")

    in_tenant(tenant.id, revoke)
    assert len(trail(in_tenant, tenant.id, "support.revoked")) == 1


def test_a_grant_ends_inside_a_transaction_that_began_before_its_end(
    settings: Settings, in_tenant: InTenant, tenant: Tenant
) -> None:
    seed(in_tenant, settings, tenant.id)

    grant_support(in_tenant, tenant.id, ttl_s=2)
    with operator_conn(settings) as conn, conn.transaction():
        conn.execute("SELECT set_config('app.company_id', %s, true)", (str(tenant.id),))
        assert conn.execute("SELECT count(*) FROM quests").fetchone() == (1,)
        time.sleep(2.5)
        assert conn.execute("SELECT count(*) FROM quests").fetchone() == (0,)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE support_grants SET expires_at = expires_at + interval '1 year'",
        "UPDATE support_grants SET engineer = 'mallory@support.test'",
        "UPDATE support_grants SET revoked_at = NULL, revoked_by = NULL",  # un-revoke
        "DELETE FROM support_grants",
        "INSERT INTO support_grants (id, company_id, engineer, reason, granted_by, expires_at) "
        "VALUES (gen_random_uuid(), app_company_id(), 'eve@x.test', 'r', 'me', "
        "now() + interval '2 days')",  # longer than a day
        "INSERT INTO support_grants (id, company_id, engineer, reason, granted_by, granted_at, "
        "expires_at) VALUES (gen_random_uuid(), app_company_id(), 'eve@x.test', 'r', 'me', "
        "now() + interval '10 years', now() + interval '10 years 1 day')",  # made "later"
    ],
)
def test_the_app_role_cannot_stretch_move_or_revive_a_grant(
    settings: Settings, in_tenant: InTenant, tenant: Tenant, statement: str
) -> None:
    grant_id = grant_support(in_tenant, tenant.id)

    async def revoke(tx: TenantTx) -> None:
        await support_store.revoke(tx, grant_id, by="lead@x.test")

    in_tenant(tenant.id, revoke)
    app = psycopg.connect(settings.database_url, autocommit=True)
    with app as conn, pytest.raises(psycopg.Error), conn.transaction():
        conn.execute("SELECT set_config('app.company_id', %s, true)", (str(tenant.id),))
        conn.execute(statement)  # type: ignore[arg-type]


def test_enroll_gives_an_engineer_a_login_of_their_own_once(
    settings: Settings, admin_conn: AdminConn
) -> None:
    name = f"new-{uuid.uuid4().hex[:8]}@support.test"
    first = run(settings, "support", "enroll", name.upper())
    assert first.returncode == 0, first.stderr
    password = first.stdout.strip()
    assert len(password) >= 24 and password not in first.stderr
    stored, operator, app = admin_conn.execute(
        "SELECT rolpassword, pg_has_role(rolname, 'system2_operator', 'MEMBER'), "
        "pg_has_role(rolname, 'system2_app', 'MEMBER') FROM pg_authid WHERE rolname = %s",
        (name,),
    ).fetchone() or (None, None, None)
    assert str(stored).startswith("SCRAM-SHA-256$") and password not in str(stored)
    assert (operator, app) == (True, False)
    again = run(settings, "support", "enroll", name)
    assert again.returncode == 0 and again.stdout == "" and "enrolled already" in again.stderr
    bad = run(settings, "support", "enroll", "not-an-email")
    assert "not an engineer's email address" in assert_one_line_error(bad)


def test_enroll_refuses_a_login_that_also_holds_the_apps_rights(admin_conn: AdminConn) -> None:
    name = f"both-{uuid.uuid4().hex[:8]}@support.test"
    admin_conn.execute(f'CREATE ROLE "{name}" LOGIN IN ROLE system2_app')
    try:
        with pytest.raises(MigrationError, match="also a member of system2_app"):
            enroll(admin_conn, name)
        member = admin_conn.execute(
            "SELECT pg_has_role(%s, 'system2_operator', 'MEMBER')", (name,)
        ).fetchone()
        assert member == (False,)  # refused before it joined
    finally:
        admin_conn.execute(f'DROP ROLE "{name}"')


def test_migrate_refuses_a_table_engineers_read_without_a_grant() -> None:
    """A hand-run DROP POLICY (or a new table granted to engineers and forgotten) would let
    them read it freely: the release command refuses to finish on it."""
    base = os.environ.get("S2_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    with scratch_postgres(base, prefix="s2support") as (admin_url, app_url):
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("DROP POLICY support_grant ON notes")
        with pytest.raises(MigrationError) as refused:
            migrate(admin_url, app_url)
        assert str(refused.value) == (
            "the schema is unsafe: system2_operator reads notes with no restrictive policy "
            "holding it to a grant"
        )


def test_audited_commands_name_s2_operator_unless_told_otherwise(
    settings: Settings, in_tenant: InTenant, tenant: Tenant
) -> None:
    exported = run(
        settings, "privacy", "export", "--company", str(tenant.id), S2_OPERATOR="dpo@support.test"
    )
    assert exported.returncode == 0, exported.stderr
    told = run(settings, "privacy", "export", "--company", str(tenant.id), "--operator", "legal")
    assert told.returncode == 0, told.stderr
    rows = trail(in_tenant, tenant.id, "privacy.exported")
    assert sorted(r.actor_id for r in rows) == ["dpo@support.test", "legal"]


def test_enroll_refuses_a_login_that_could_hand_itself_rights(admin_conn: AdminConn) -> None:
    name = f"boss-{uuid.uuid4().hex[:8]}@support.test"
    admin_conn.execute(f'CREATE ROLE "{name}" LOGIN CREATEROLE')
    try:
        with pytest.raises(MigrationError, match="CREATEROLE"):
            enroll(admin_conn, name)
    finally:
        admin_conn.execute(f'DROP ROLE "{name}"')
