"""`system2 privacy erase` and `system2 company delete`, run as an operator runs them, on real
Postgres as the app role and real Redis: a user's (or a company's) content is gone from the
raw rows, irreversibly; the audit skeleton stays and the erasure is an audit row; the app
role still cannot touch the audit trail, and the owner only through the erasure's redaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql
from psycopg.errors import InsufficientPrivilege, RaiseException

from messages.redis_keys import company_stream_key, quest_stream_key
from runtime.settings import Settings
from store import TenantTx
from store import activity as activity_store
from store.activity import NewActivity
from store.quests import Quest
from tests.conftest import Tenant
from tests.support import InTenant, ingress_client
from tests.test_cli import assert_one_line_error, run
from tests.test_privacy import quest_by

Conn = psycopg.Connection[tuple[Any, ...]]
PRIVACY = "system2_privacy"
ERASED = "[erased]"
SKELETON = (
    "id, company_id, occurred_at, recorded_at, actor_type, actor_id, action, target, "
    "originating_message_id, quest_id, idempotency_key"
)
USE = {"type": "tool_use", "id": "toolu_1", "name": "crm_find", "input": {"q": "Secret Co"}}
REPLY = [{"type": "text", "text": "Secret Co owes 1.2M."}, USE]
RESULTS = [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "secret numbers"}]
EVENTS = [{"idempotency_key": "k", "action": "note.added", "target": "note:1",
           "rationale": "secret why", "data": {"text": "secret", "n": 1}}]  # fmt: skip


def seed(in_tenant: InTenant, admin: Conn, tenant: Tenant, quest: Quest, user: str) -> None:
    """A step, a recorded tool call and audit rows (by ``user``, about ``quest``) holding
    content."""
    admin.execute(
        "INSERT INTO quest_steps (company_id, quest_id, step, status, model, content, "
        "tool_results, events, finished_at) VALUES (%s, %s, 1, 'done', 'm', %s, %s, %s, now())",
        (tenant.id, quest.id, json.dumps(REPLY), json.dumps(RESULTS), json.dumps(EVENTS)),
    )
    admin.execute(
        "INSERT INTO tool_calls (company_id, idempotency_key, quest_id, step, tool, status, "
        "result) VALUES (%s, %s, %s, 1, 'crm_find', 'done', %s)",
        (tenant.id, f"call:{quest.id}", quest.id,
         json.dumps({"content": "secret numbers", "is_error": False, "data": {"n": 2}})),
    )  # fmt: skip

    def row(actor_type: str, actor: str, quest_id: uuid.UUID | None) -> NewActivity:
        return NewActivity(
            idempotency_key=uuid.uuid4().hex,
            occurred_at=datetime.now(UTC),
            actor_type=actor_type,
            actor_id=actor,
            action="note.added",
            target="note:1",
            rationale="secret rationale",
            originating_message_id=uuid.uuid4(),
            quest_id=quest_id,
            payload={"text": "secret", "usd_micros": 42, "ok": True, "list": ["secret"]},
        )

    async def add(tx: TenantTx) -> None:
        await activity_store.append(tx, [row("user", user, None), row("ted", "ted", quest.id)])

    in_tenant(tenant.id, add)


def live_event(client: redis.Redis, company: uuid.UUID, quest: uuid.UUID) -> None:
    entry = json.dumps({"company_id": str(company), "payload": {"quest_id": str(quest)}})
    client.xadd(company_stream_key(company), {"e": entry})
    client.xadd(quest_stream_key(quest), {"e": entry})


def audit_of(admin: Conn, company: uuid.UUID) -> list[tuple[Any, ...]]:
    return admin.execute(
        f"SELECT {SKELETON}, rationale, payload FROM activity_log WHERE company_id = %s "
        "AND action = 'note.added' ORDER BY id",
        (company,),
    ).fetchall()


def content_of(admin: Conn, quest: Quest) -> tuple[Any, ...]:
    row = admin.execute(
        "SELECT q.goal, q.result, s.content, s.tool_results, s.events, t.result, "
        "(SELECT count(*) FROM notes n WHERE n.quest_id = q.id) FROM quests q "
        "JOIN quest_steps s ON s.quest_id = q.id JOIN tool_calls t ON t.quest_id = q.id "
        "WHERE q.id = %s",
        (quest.id,),
    ).fetchone()
    assert row is not None
    return tuple(row)


def erase(settings: Settings, tenant: Tenant, user: str) -> dict[str, int]:
    result = run(
        settings, "privacy", "erase", "--company", str(tenant.id), "--user", user,
        "--operator", "dpo",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    counts: dict[str, int] = json.loads(result.stdout)
    return counts


def test_erasing_a_user_removes_their_content_keeps_the_skeleton_and_is_audited(
    settings: Settings,
    in_tenant: InTenant,
    make_tenant: Callable[[str], Tenant],
    admin_conn: Conn,
    rds: redis.Redis,
) -> None:
    a, b = make_tenant("Acme"), make_tenant("Globex")
    mine = quest_by(in_tenant, a, a.member, "Find my invoices")
    theirs = quest_by(in_tenant, a, a.admin, "Plan the offsite")
    elsewhere = quest_by(in_tenant, b, a.member, "Globex's plan")  # same user id, company B
    for tenant, quest, user in (
        (a, mine, a.member),
        (a, theirs, a.admin),
        (b, elsewhere, a.member),
    ):
        seed(in_tenant, admin_conn, tenant, quest, user)
        live_event(rds, tenant.id, quest.id)
    admin_conn.execute("UPDATE quests SET status = 'succeeded', result = 'paid' WHERE id = %s",
                       (mine.id,))  # fmt: skip
    untouched = {q.id: content_of(admin_conn, q) for q in (theirs, elsewhere)}
    audit_b = audit_of(admin_conn, b.id)
    before = audit_of(admin_conn, a.id)
    incident = uuid.uuid4()  # the user was sent an incident notice, as was a colleague
    admin_conn.execute(
        "INSERT INTO incidents (id, summary, since, until, confirmed_at, opened_by) "
        "VALUES (%s, 's', now() - interval '2 hours', now() - interval '1 hour', now(), 'ops')",
        (incident,),
    )
    for user in (a.member, a.admin):
        admin_conn.execute(
            "INSERT INTO incident_notices (company_id, incident_id, user_id, email, status) "
            "VALUES (%s, %s, %s, %s, 'sent')",
            (a.id, incident, user, f"{user}@acme.test"),
        )

    counts = erase(settings, a, a.member)
    assert counts == {
        "quests": 1, "quests_cancelled": 0, "steps": 1, "notes": 1, "tool_calls": 1,
        "webhook_deliveries": 0, "audit_rows": 2, "memberships": 1, "live_events": 2,
        "incident_notices": 1, "support_grants": 0,
    }  # fmt: skip
    notices = admin_conn.execute(
        "SELECT user_id, email FROM incident_notices WHERE incident_id = %s ORDER BY email",
        (incident,),
    ).fetchall()  # who was told stays; the erased user's address goes
    assert notices == [(a.member, ERASED), (a.admin, f"{a.admin}@acme.test")]

    # the raw rows, as the owner reads them: the content is gone, not hidden
    goal, result, content, tool_results, events, tool_result, notes = content_of(admin_conn, mine)
    assert (goal, result, tool_results, notes) == (ERASED, ERASED, [], 0)
    assert content == [{"type": "text", "text": ERASED}, {**USE, "input": {}}]
    assert events == [{**EVENTS[0], "rationale": ERASED, "data": {"n": 1}}]
    assert tool_result == {"content": ERASED, "is_error": False, "data": {"n": 2}}
    after = audit_of(admin_conn, a.id)
    mine_rows = [r for r in after if r[5] == a.member or r[9] == mine.id]
    assert len(mine_rows) == 2
    for row in mine_rows:
        assert row[-2:] == (ERASED, {"usd_micros": 42, "ok": True})
    assert [r[:-2] for r in after] == [r[:-2] for r in before], "the skeleton is unchanged"
    erased_ids = {r[0] for r in mine_rows}
    assert [r for r in after if r[0] not in erased_ids] == [
        r for r in before if r[0] not in erased_ids
    ]
    # others' rows untouched, in this company and the other one
    assert {q.id: content_of(admin_conn, q) for q in (theirs, elsewhere)} == untouched
    assert audit_of(admin_conn, b.id) == audit_b
    members = admin_conn.execute(
        "SELECT company_id, user_id FROM memberships WHERE company_id IN (%s, %s) ORDER BY 1, 2",
        (a.id, b.id),
    ).fetchall()
    assert sorted(members) == sorted([(a.id, a.admin), (b.id, b.admin), (b.id, b.member)])
    # the erasure is a row of the trail: who and how much, not what
    erased = admin_conn.execute(
        "SELECT actor_type, actor_id, target, quest_id, rationale, payload FROM activity_log "
        "WHERE company_id = %s AND action = 'privacy.erased'",
        (a.id,),
    ).fetchall()
    assert erased == [("operator", "dpo", f"user:{a.member}", None, None,
                       {k: v for k, v in counts.items() if k != "live_events"})]  # fmt: skip
    # live events: the quest's stream and its entries in the company's are gone, others stay
    assert not rds.exists(quest_stream_key(mine.id))
    assert rds.exists(quest_stream_key(theirs.id))
    left = [json.loads(f[b"e"])["payload"]["quest_id"] for _, f in rds.xrange(
        company_stream_key(a.id))]  # fmt: skip
    assert left == [str(theirs.id)]

    # again: nothing left to change
    again = erase(settings, a, a.member)
    assert set(again.values()) == {0}, again
    assert audit_of(admin_conn, a.id) == after

    # an export after the erasure holds no content
    result = run(settings, "privacy", "export", "--company", str(a.id), "--user", a.member)
    assert result.returncode == 0, result.stderr
    for gone in ("Find my invoices", "note on", "secret", "Secret Co", "paid"):
        assert gone not in result.stdout, gone


def test_the_erasure_cancels_the_users_open_quests(
    settings: Settings, in_tenant: InTenant, tenant: Tenant, admin_conn: Conn, rds: redis.Redis
) -> None:
    quest = quest_by(in_tenant, tenant, tenant.member, "Still going")
    counts = erase(settings, tenant, tenant.member)
    assert (counts["quests"], counts["quests_cancelled"]) == (1, 1)
    row = admin_conn.execute(
        "SELECT status, goal, reason, finished_at IS NOT NULL FROM quests WHERE id = %s",
        (quest.id,),
    ).fetchone()
    assert row == ("cancelled", ERASED, ERASED, True)
    assert rds.get(f"s2:cancel:{quest.id}") == b"1", "a running step hears it at once"


def test_the_app_role_still_cannot_update_or_delete_audit_rows(
    settings: Settings, in_tenant: InTenant, tenant: Tenant, admin_conn: Conn
) -> None:
    quest = quest_by(in_tenant, tenant, tenant.member, "x")
    seed(in_tenant, admin_conn, tenant, quest, tenant.member)
    with psycopg.connect(settings.database_url, autocommit=True) as app:
        for statement in (
            "UPDATE activity_log SET rationale = NULL",
            "UPDATE activity_log SET rationale = '[erased]', payload = '{}'",
            "DELETE FROM activity_log",
        ):
            with app.transaction():
                app.execute("SELECT set_config('app.company_id', %s, true)", (str(tenant.id),))
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    app.execute(statement)
        # the functions act on the transaction's tenant only, and refuse without one
        for call in ("SELECT erase_user('u', 'dpo')", "SELECT erase_company('dpo')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="tenant"):
                app.execute(call)
        # nor may the app role call the shared body, which would run as itself anyway
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("SELECT privacy_erase(gen_random_uuid(), '{}', 'u', true)")


def test_the_trigger_admits_only_the_erasures_exact_redaction(
    in_tenant: InTenant, tenant: Tenant, admin_conn: Conn
) -> None:
    quest = quest_by(in_tenant, tenant, tenant.member, "x")
    seed(in_tenant, admin_conn, tenant, quest, tenant.member)
    # the owner, even a superuser, is refused by the trigger
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        admin_conn.execute(
            "UPDATE activity_log SET rationale = '[erased]', payload = erased_scalars(payload) "
            "WHERE company_id = %s",
            (tenant.id,),
        )
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        admin_conn.execute("DELETE FROM activity_log WHERE company_id = %s", (tenant.id,))
    # the privacy role may change the free text to the marker, nothing else
    where = "WHERE company_id = %s AND actor_type = 'ted'"
    for change, refused in (
        # the trigger: only the marker, only the payload's own numbers and booleans
        ("rationale = 'rewritten', payload = erased_scalars(payload)", RaiseException),
        ("rationale = NULL, payload = erased_scalars(payload)", RaiseException),
        ("rationale = '[erased]', payload = '{\"usd_micros\": 1}'", RaiseException),
        ("rationale = '[erased]', payload = payload", RaiseException),
        # column rights: none on the skeleton
        ("action = 'quest.succeeded', rationale = '[erased]'", InsufficientPrivilege),
        ("occurred_at = now()", InsufficientPrivilege),
    ):
        as_privacy(admin_conn, tenant)
        try:
            with pytest.raises(refused):
                admin_conn.execute(f"UPDATE activity_log SET {change} {where}", (tenant.id,))
        finally:
            admin_conn.execute("ROLLBACK")
    as_privacy(admin_conn, tenant)
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            admin_conn.execute(f"DELETE FROM activity_log {where}", (tenant.id,))
    finally:
        admin_conn.execute("ROLLBACK")
    as_privacy(admin_conn, tenant)
    try:  # the exact redaction passes
        cur = admin_conn.execute(
            "UPDATE activity_log SET rationale = '[erased]', payload = erased_scalars(payload) "
            + where,
            (tenant.id,),
        )
        assert cur.rowcount == 1
    finally:
        admin_conn.execute("ROLLBACK")


def as_privacy(admin: Conn, tenant: Tenant) -> None:
    """Open a transaction as the erasures' role, in ``tenant``."""
    admin.execute("BEGIN")
    admin.execute("SELECT set_config('app.company_id', %s, true)", (str(tenant.id),))
    admin.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(PRIVACY)))


def test_the_erasures_run_as_a_role_with_the_least_rights(admin_conn: Conn) -> None:
    functions = admin_conn.execute(
        "SELECT p.proname, pg_get_userbyid(p.proowner), p.proconfig, p.proacl::text[] "
        "FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace "
        "AND p.proname IN ('erase_user', 'erase_company', 'privacy_erase') ORDER BY p.proname"
    ).fetchall()
    assert [f[0] for f in functions] == ["erase_company", "erase_user", "privacy_erase"]
    for name, owner, config, acl in functions:
        assert owner == PRIVACY, name
        assert config == ["search_path=pg_catalog, pg_temp"], name
        grantees = {entry.split("=", 1)[0] for entry in acl}
        expected = {PRIVACY} if name == "privacy_erase" else {"system2_app", PRIVACY}
        assert grantees == expected, (name, acl)  # '' would be PUBLIC
    role = admin_conn.execute(
        "SELECT rolcanlogin, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolinherit "
        "FROM pg_roles WHERE rolname = %s",
        (PRIVACY,),
    ).fetchone()
    assert role == (False, False, False, False, False, False)
    members = admin_conn.execute(
        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
        "WHERE r.rolname = %s",
        (PRIVACY,),
    ).fetchone()
    assert members == (0,)
    whole_tables = admin_conn.execute(
        "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
        "WHERE grantee = %s AND table_catalog = current_database() "
        "AND privilege_type <> 'DELETE' ORDER BY 1",
        (PRIVACY,),
    ).fetchall()
    assert whole_tables == [], "column rights only (and DELETE where rows go)"
    deletes = admin_conn.execute(
        "SELECT table_name FROM information_schema.role_table_grants "
        "WHERE grantee = %s AND table_catalog = current_database() ORDER BY 1",
        (PRIVACY,),
    ).fetchall()
    assert [d[0] for d in deletes] == [
        "integration_credentials", "memberships", "notes", "webhook_deliveries",
        "webhook_endpoints",
    ]  # fmt: skip


def test_deleting_a_company_removes_its_content_credentials_and_members(
    settings: Settings,
    in_tenant: InTenant,
    make_tenant: Callable[[str], Tenant],
    admin_conn: Conn,
    rds: redis.Redis,
) -> None:
    a, b = make_tenant("Acme Deletable"), make_tenant("Globex")
    done = quest_by(in_tenant, a, a.member, "Secret merger")
    seed(in_tenant, admin_conn, a, done, a.member)
    admin_conn.execute("UPDATE quests SET status = 'succeeded' WHERE id = %s", (done.id,))
    running = quest_by(in_tenant, a, a.admin, "Still going")
    other = quest_by(in_tenant, b, b.member, "Globex's own")
    for cid in (a.id, b.id):
        admin_conn.execute(
            "INSERT INTO integration_credentials (id, company_id, integration, key_id, "
            "access_token, refresh_token, connected_by) "
            "VALUES (%s, %s, 'github', 'k1', 'sealed-a', 'sealed-r', 'user:x')",
            (uuid.uuid4(), cid),
        )
    endpoint = uuid.uuid4()
    admin_conn.execute(
        "INSERT INTO webhook_endpoints (id, company_id, url, event_types, key_id, secret, "
        "created_by) VALUES (%s, %s, 'https://hooks.example/x', '{quest.succeeded}', 'k1', "
        "'sealed-secret', 'user:x')",
        (endpoint, a.id),
    )
    admin_conn.execute(
        "INSERT INTO webhook_deliveries (company_id, endpoint_id, activity_id, event_type, "
        "quest_id, occurred_at, data) VALUES (%s, %s, 1, 'quest.succeeded', %s, now(), %s)",
        (a.id, endpoint, done.id, json.dumps({"reason": "secret"})),
    )
    live_event(rds, a.id, done.id)
    before = audit_of(admin_conn, a.id)

    line = assert_one_line_error(run(settings, "company", "delete", str(a.id), "--confirm", "Acme"))
    assert "does not match" in line and "nothing deleted" in line
    assert admin_conn.execute("SELECT name FROM companies WHERE id = %s", (a.id,)).fetchone() == (
        "Acme Deletable",
    )

    result = run(
        settings, "company", "delete", str(a.id), "--confirm", "Acme Deletable",
        "--operator", "dpo",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert counts == {
        "quests": 2, "quests_cancelled": 1, "steps": 1, "notes": 2, "tool_calls": 1,
        "webhook_deliveries": 1, "audit_rows": 2, "memberships": 2, "credentials": 1,
        "webhook_endpoints": 1, "company": 1, "live_events": 2, "incident_notices": 0,
        "support_grants": 0,
    }, counts  # fmt: skip

    def count(table: str, cid: uuid.UUID) -> int:
        query = sql.SQL("SELECT count(*) FROM {} WHERE company_id = %s").format(
            sql.Identifier(table)
        )
        row = admin_conn.execute(query, (cid,)).fetchone()
        assert row is not None
        return int(row[0])

    for table in ("integration_credentials", "webhook_endpoints", "webhook_deliveries",
                  "memberships", "notes"):  # fmt: skip
        assert (count(table, a.id), table) == (0, table)
    assert count("integration_credentials", b.id) == 1 and count("memberships", b.id) == 2
    quests = admin_conn.execute(
        "SELECT id, status, goal FROM quests WHERE company_id = %s ORDER BY created_at", (a.id,)
    ).fetchall()
    assert quests == [(done.id, "succeeded", ERASED), (running.id, "cancelled", ERASED)]
    assert content_of(admin_conn, done)[:2] == (ERASED, None)
    other_goal = admin_conn.execute("SELECT goal FROM quests WHERE id = %s", (other.id,))
    assert other_goal.fetchone() == ("Globex's own",)
    name, deleted = admin_conn.execute(
        "SELECT name, deleted_at IS NOT NULL FROM companies WHERE id = %s", (a.id,)
    ).fetchone() or (None, None)
    assert (name, deleted) == ("deleted company", True)
    after = audit_of(admin_conn, a.id)
    assert [r[:-2] for r in after] == [r[:-2] for r in before]
    assert all(r[-2] == ERASED and "text" not in r[-1] for r in after)
    deletion = admin_conn.execute(
        "SELECT actor_id, target, payload FROM activity_log "
        "WHERE company_id = %s AND action = 'company.deleted'",
        (a.id,),
    ).fetchall()
    assert deletion == [("dpo", f"company:{a.id}",
                         {k: v for k, v in counts.items() if k != "live_events"})]  # fmt: skip
    assert not rds.exists(company_stream_key(a.id)) and not rds.exists(quest_stream_key(done.id))

    # the company is gone for its former members, and for the CLI
    with ingress_client(settings, rds) as client:
        resp = client.get(f"/v1/companies/{a.id}/quests", headers=a.headers(a.admin))
        assert resp.status_code == 403, resp.text
        listed = client.get("/v1/companies", headers=a.headers(a.admin))
        assert listed.status_code == 200 and str(a.id) not in listed.text
    # run again (say Redis failed the first time): nothing left but to finish, and say so
    rds.xadd(quest_stream_key(done.id), {"e": "{}"})  # what the first run could not remove
    again = run(settings, "company", "delete", str(a.id), "--confirm", "deleted company")
    assert again.returncode == 0, again.stderr
    rerun = json.loads(again.stdout)
    assert rerun["live_events"] == 1 and rerun["company"] == 0 and rerun["credentials"] == 0
    assert not rds.exists(quest_stream_key(done.id))
