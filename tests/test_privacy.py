"""`system2 privacy export`, run as an operator runs it, on real Postgres as the app role: a
company's or one user's data in one JSON archive, nothing of another company's or user's,
never a token, and the export recorded in the company's audit trail."""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from ingress.submit import QuestSpec, create_quest
from messages import Actor, ActorType
from runtime.settings import Settings
from store import TenantTx
from store import notes as notes_store
from store.quests import Quest
from tests.conftest import Tenant
from tests.support import InTenant
from tests.test_cli import assert_one_line_error, run


def quest_by(in_tenant: InTenant, tenant: Tenant, user: str, goal: str) -> Quest:
    async def create(tx: TenantTx) -> Quest:
        who = Actor(type=ActorType.user, id=user)
        quest, _ = await create_quest(tx, who, QuestSpec(goal=goal, model="claude-sonnet-5-5"))
        await notes_store.add(tx, quest.id, f"note on {goal}", f"note:{quest.id}")
        return quest

    return in_tenant(tenant.id, create)


def test_a_users_export_holds_their_quests_notes_and_audit_rows_and_nothing_else(
    settings: Settings,
    in_tenant: InTenant,
    make_tenant: Callable[[str], Tenant],
    admin_conn: psycopg.Connection[Any],
    tmp_path: Path,
) -> None:
    a, b = make_tenant("Acme"), make_tenant("Globex")
    mine = quest_by(in_tenant, a, a.member, "Find my invoices")
    theirs = quest_by(in_tenant, a, a.admin, "Plan the offsite")
    elsewhere = quest_by(in_tenant, b, a.member, "Globex's secret plan")  # same user id, B
    admin_conn.execute(
        "INSERT INTO integration_credentials (id, company_id, integration, key_id, access_token, "
        "refresh_token, connected_by) VALUES (%s, %s, 'github', 'k1', %s, %s, 'user:x')",
        (uuid.uuid4(), a.id, b"sealed-access-bytes", b"sealed-refresh-bytes"),
    )
    out = tmp_path / "export.json"
    result = run(
        settings, "privacy", "export", "--company", str(a.id), "--user", a.member,
        "--out", str(out), "--operator", "dpo",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    text = out.read_text()
    archive = json.loads(text)
    assert archive["format"] == "system2-export/1"
    assert (archive["company_id"], archive["user_id"]) == (str(a.id), a.member)
    assert [q["id"] for q in archive["quests"]] == [str(mine.id)]
    assert archive["quests"][0]["goal"] == "Find my invoices"
    assert [n["text"] for n in archive["notes"]] == ["note on Find my invoices"]
    assert [m["user_id"] for m in archive["memberships"]] == [a.member]
    assert [i["integration"] for i in archive["integrations"]] == ["github"]
    for absent in (str(theirs.id), "Plan the offsite", str(elsewhere.id), "Globex", "sealed"):
        assert absent not in text, absent
    assert "access_token" not in text and "refresh_token" not in text
    # the export is a row of the company's audit trail, saying who and how much, not what
    rows = admin_conn.execute(
        "SELECT actor_type, actor_id, target, payload FROM activity_log "
        "WHERE company_id = %s AND action = 'privacy.exported'",
        (a.id,),
    ).fetchall()
    assert rows == [("operator", "dpo", f"user:{a.member}", {"counts": {
        "quests": 1, "notes": 1, "audit": 0, "memberships": 1, "integrations": 1}})]  # fmt: skip


def test_a_company_export_holds_every_users_quests(
    settings: Settings, in_tenant: InTenant, tenant: Tenant, tmp_path: Path
) -> None:
    first = quest_by(in_tenant, tenant, tenant.member, "One")
    second = quest_by(in_tenant, tenant, tenant.admin, "Two")
    result = run(settings, "privacy", "export", "--company", str(tenant.id))
    assert result.returncode == 0, result.stderr
    archive = json.loads(result.stdout)
    assert archive["user_id"] is None
    assert {q["id"] for q in archive["quests"]} == {str(first.id), str(second.id)}
    assert {m["user_id"] for m in archive["memberships"]} == {tenant.admin, tenant.member}


def test_an_export_never_overwrites_a_file_and_names_a_missing_company(
    settings: Settings, tenant: Tenant, tmp_path: Path
) -> None:
    out = tmp_path / "taken.json"
    out.write_text("keep me")
    line = assert_one_line_error(
        run(settings, "privacy", "export", "--company", str(tenant.id), "--out", str(out))
    )
    assert "already exists" in line and out.read_text() == "keep me"
    missing = str(uuid.uuid4())
    line = assert_one_line_error(run(settings, "privacy", "export", "--company", missing))
    assert line == f"error: no company {missing}"
