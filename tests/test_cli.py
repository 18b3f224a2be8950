"""The ``system2`` console script, run as a subprocess the way an operator runs it."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
import redis
from dramatiq import Message
from redis.asyncio import Redis as AsyncRedis

from messages.redis_keys import FAIR_WEIGHTS
from messages.transport import build_broker
from runtime.settings import Settings
from store import activity as activity_store
from store.activity import NewActivity
from tests.conftest import Tenant, settings_env
from tests.consumer_support import FAIR_PREFIX
from tests.support import InTenant, grant_support
from vault import new_key_entry
from workers.fair_queue import FairQueue

SYSTEM2 = Path(sys.executable).parent / "system2"
AdminConn = psycopg.Connection[tuple[Any, ...]]


def run(
    settings: Settings, *args: str, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SYSTEM2), *args],
        env=settings_env(settings, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def lines(text: str) -> list[str]:
    return text.splitlines()


def assert_one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(lines(result.stderr)) == 1, result.stderr
    (line,) = lines(result.stderr)
    assert line.startswith("error:"), line
    return line


def create_company(settings: Settings, name: str = "Initech") -> uuid.UUID:
    result = run(settings, "company", "create", name)
    assert result.returncode == 0, result.stderr
    out = lines(result.stdout)
    assert len(out) == 1, result.stdout
    return uuid.UUID(out[0])


# --- companies --------------------------------------------------------------------------


def test_company_create_prints_one_uuid(settings: Settings, admin_conn: AdminConn) -> None:
    result = run(settings, "company", "create", "Initech Ltd")
    assert result.returncode == 0, result.stderr
    out = lines(result.stdout)
    assert len(out) == 1
    company_id = uuid.UUID(out[0])
    assert out[0] == str(company_id)
    row = admin_conn.execute("SELECT name FROM companies WHERE id = %s", (company_id,)).fetchone()
    assert row == ("Initech Ltd",)


def test_company_add_member_as_admin(settings: Settings, admin_conn: AdminConn) -> None:
    company_id = create_company(settings)
    result = run(settings, "company", "add-member", str(company_id), "ada", "--role", "admin")
    assert result.returncode == 0, result.stderr
    row = admin_conn.execute(
        "SELECT role FROM memberships WHERE company_id = %s AND user_id = 'ada'", (company_id,)
    ).fetchone()
    assert row == ("admin",)


def test_company_add_member_with_an_unknown_role_fails_in_one_line(
    settings: Settings, admin_conn: AdminConn
) -> None:
    company_id = create_company(settings)
    result = run(settings, "company", "add-member", str(company_id), "bob", "--role", "owner")
    line = assert_one_line_error(result)
    assert "role" in line
    assert result.stdout == ""
    row = admin_conn.execute(
        "SELECT count(*) FROM memberships WHERE company_id = %s", (company_id,)
    ).fetchone()
    assert row == (0,)


def test_company_add_member_to_a_missing_company_fails_in_one_line(settings: Settings) -> None:
    result = run(settings, "company", "add-member", str(uuid.uuid4()), "bob", "--role", "member")
    assert_one_line_error(result)


def test_every_command_naming_a_missing_company_says_so_in_one_line(settings: Settings) -> None:
    missing = str(uuid.uuid4())
    for args in (
        ("company", "add-member", missing, "bob"),
        ("guard", "status", "--company", missing),
        ("guard", "set", "--company", missing, "--daily-usd", "5"),
        ("guard", "set", "--company", missing, "--weight", "2"),
        ("quest", "submit", "--company", missing, "--goal", "hello"),
    ):
        assert assert_one_line_error(run(settings, *args)) == f"error: no company {missing}", args
    assert redis.Redis.from_url(settings.redis_url).hget(FAIR_WEIGHTS, missing) is None


def test_an_unknown_integration_fails_in_one_line(settings: Settings) -> None:
    for args in (("integration", "connect", str(uuid.uuid4())), ("ops", "provider", "pause")):
        line = assert_one_line_error(run(settings, *args, "nope"))
        assert line == "error: no integration named 'nope'; known: demo, github, slack"


# --- quests -----------------------------------------------------------------------------


def test_quest_submit_prints_the_id_and_queues_the_first_step(
    settings: Settings, tenant: Tenant, rds: redis.Redis, in_tenant: InTenant
) -> None:
    rds.flushdb()
    result = run(
        settings, "quest", "submit", "--company", str(tenant.id), "--goal", "Tidy the backlog"
    )
    assert result.returncode == 0, result.stderr
    out = lines(result.stdout)
    assert len(out) == 1
    quest_id = str(uuid.UUID(out[0]))

    assert rds.llen("dramatiq:quests") == 1
    (raw,) = rds.hvals("dramatiq:quests.msgs")
    envelope = json.loads(raw)["args"][0]
    assert envelope["company_id"] == str(tenant.id)
    assert envelope["payload"] == {"quest_id": quest_id, "step": 1}
    assert envelope["actor"]["type"] == "operator"

    refused = run(settings, "quest", "show", quest_id)
    assert "live support grant" in assert_one_line_error(refused)
    grant_support(in_tenant, tenant.id)
    shown = run(settings, "quest", "show", quest_id)
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["quest_id"] == quest_id
    assert view["status"] == "queued"
    assert view["goal"] == "Tidy the backlog"
    assert view["steps"] == []
    assert view["cost_usd_micros"] == 0


def test_quest_submit_with_a_bad_cap_fails_in_one_line_and_queues_nothing(
    settings: Settings, tenant: Tenant, rds: redis.Redis, admin_conn: AdminConn
) -> None:
    rds.flushdb()
    result = run(
        settings, "quest", "submit", "--company", str(tenant.id), "--goal", "g", "--max-usd", "-1"
    )
    line = assert_one_line_error(result)
    assert "max-usd" in line
    assert rds.llen("dramatiq:quests") == 0
    row = admin_conn.execute(
        "SELECT count(*) FROM quests WHERE company_id = %s", (tenant.id,)
    ).fetchone()
    assert row == (0,)


def test_quest_show_of_another_companys_quest_fails_like_a_missing_one(
    settings: Settings, tenant: Tenant, other_tenant: Tenant, in_tenant: InTenant
) -> None:
    submitted = run(settings, "quest", "submit", "--company", str(other_tenant.id), "--goal", "g")
    assert submitted.returncode == 0, submitted.stderr
    quest_id = submitted.stdout.strip()
    grant_support(in_tenant, tenant.id)  # a grant for one company reads no other's quest
    result = run(settings, "quest", "show", quest_id, "--company", str(tenant.id))
    assert_one_line_error(result)
    assert result.stdout == ""


# --- the guard --------------------------------------------------------------------------


def guard(settings: Settings, *args: str, **env: str) -> dict[str, Any]:
    result = run(settings, "guard", *args, **env)
    assert result.returncode == 0, result.stderr
    shown: dict[str, Any] = json.loads(result.stdout)
    return shown


def test_guard_set_weight_is_kept_shown_and_followed_by_fair_dispatch(
    settings: Settings, tenant: Tenant, rds: redis.Redis, admin_conn: AdminConn
) -> None:
    company = str(tenant.id)
    status = guard(settings, "status", "--company", company, S2_FAIR_DEFAULT_WEIGHT="2")
    assert (status["weight"], status["queued_steps"]) == (2, 0)  # none of its own: the default

    shown = guard(settings, "set", "--company", company, "--weight", "3")
    assert shown["weight"] == 3 and "fair_weight" not in shown  # a weight, no budget limit
    assert rds.hget(FAIR_WEIGHTS, company) == b"3"  # where the dispatch script reads it
    kept = admin_conn.execute(
        "SELECT fair_weight FROM company_limits WHERE company_id = %s", (tenant.id,)
    ).fetchone()
    assert kept == (3,)
    # A limit set afterwards keeps the weight, and the guard's limits still hold together.
    shown = guard(settings, "set", "--company", company, "--daily-usd", "5", "--running", "4")
    assert shown["weight"] == 3
    assert (shown["daily_budget"], shown["max_running_quests"]) == (5_000_000, 4)
    status = guard(settings, "status", "--company", company, S2_FAIR_DEFAULT_WEIGHT="2")
    assert status["weight"] == 3 and status["limits"]["daily_budget"] == 5_000_000

    # Backlogged beside a company of the default weight, it takes three turns to the other's one.
    queue, other = f"{FAIR_PREFIX}{uuid.uuid4().hex[:12]}", str(uuid.uuid4())
    broker = build_broker(settings.redis_url, middleware=[])
    for who in (other, company):
        for _ in range(40):
            envelope = {"company_id": who, "payload": {"quest_id": str(uuid.uuid4()), "step": 1}}
            broker.enqueue(Message(queue, "quest_step", (envelope,), {}, {}))
    broker.close()

    async def fetch(n: int) -> list[bytes | None]:
        async with AsyncRedis.from_url(settings.redis_url) as client:
            return await FairQueue(client, queue, "tests", heartbeat_timeout_ms=60_000).fetch(n)

    taken = [json.loads(b or "{}")["args"][0]["company_id"] for b in asyncio.run(fetch(20))]
    assert 14 <= taken.count(company) <= 16, taken


@pytest.mark.parametrize("weight", ["0", "1001", "heavy"])
def test_guard_set_refuses_a_weight_out_of_range_and_keeps_none(
    settings: Settings, tenant: Tenant, rds: redis.Redis, admin_conn: AdminConn, weight: str
) -> None:
    result = run(settings, "guard", "set", "--company", str(tenant.id), "--weight", weight)
    assert result.returncode == 2 and "--weight" in result.stderr, result.stderr
    assert rds.hget(FAIR_WEIGHTS, str(tenant.id)) is None
    kept = admin_conn.execute(
        "SELECT fair_weight FROM company_limits WHERE company_id = %s", (tenant.id,)
    ).fetchone()
    assert kept is None


# --- audit ------------------------------------------------------------------------------


def test_audit_list_prints_the_trail_as_json(
    settings: Settings, tenant: Tenant, other_tenant: Tenant, in_tenant: InTenant
) -> None:
    for company, target in ((tenant.id, "note:mine"), (other_tenant.id, "note:theirs")):
        row = NewActivity(
            idempotency_key=f"k-{uuid.uuid4().hex}",
            occurred_at=datetime.now(UTC),
            actor_type="ted",
            actor_id="ted",
            action="note.added",
            target=target,
            rationale="asked to",
            originating_message_id=uuid.uuid4(),
            quest_id=None,
            payload={"n": 1},
        )
        in_tenant(company, lambda tx, row=row: activity_store.append(tx, [row]))

    grant_support(in_tenant, tenant.id)
    result = run(
        settings,
        "audit",
        "list",
        "--company",
        str(tenant.id),
        "--action",
        "note.added",
    )
    assert result.returncode == 0, result.stderr
    trail = json.loads(result.stdout)
    assert [i["target"] for i in trail["items"]] == ["note:mine"]
    assert trail["items"][0]["action"] == "note.added"
    assert trail["next_cursor"] is None


# --- failures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("company", "create", "Nowhere Inc"),
        ("quest", "show", str(uuid.uuid4()), "--company", str(uuid.uuid4())),
    ],
)
def test_unreachable_database_is_one_line_and_non_zero(
    settings: Settings, args: tuple[str, ...]
) -> None:
    started = time.monotonic()
    result = run(
        settings,
        *args,
        S2_DATABASE_URL="postgresql://s2_app@127.0.0.1:1/system2",
        S2_OPERATOR_DATABASE_URL="postgresql://s2_operator@127.0.0.1:1/system2",
        timeout=90,
    )
    assert time.monotonic() - started < 60
    line = assert_one_line_error(result)
    assert "Postgres" in line
    assert result.stdout == ""


def test_unreachable_redis_on_submit_is_one_line_and_leaves_no_quest(
    settings: Settings, tenant: Tenant, admin_conn: AdminConn
) -> None:
    result = run(
        settings,
        "quest",
        "submit",
        "--company",
        str(tenant.id),
        "--goal",
        "g",
        S2_REDIS_URL="redis://127.0.0.1:1/0",
    )
    assert_one_line_error(result)
    assert result.stdout == ""
    row = admin_conn.execute(
        "SELECT count(*) FROM quests WHERE company_id = %s", (tenant.id,)
    ).fetchone()
    assert row == (0,)


# --- tokens and help --------------------------------------------------------------------


def test_token_mint_prints_a_jwt_the_secret_verifies(settings: Settings) -> None:
    result = run(settings, "token", "mint", "--user", "u")
    assert result.returncode == 0, result.stderr
    out = lines(result.stdout)
    assert len(out) == 1
    claims = jwt.decode(
        out[0],
        settings.jwt_secret.get_secret_value(),
        algorithms=["HS256"],
        audience="authenticated",
    )
    assert claims["sub"] == "u"
    assert 0 < claims["exp"] - time.time() <= 900 + 5


def test_token_mint_is_refused_in_production(settings: Settings) -> None:
    safe = {  # what production must have, so that the refusal is the command's own
        "S2_VAULT_KEYS": new_key_entry(datetime.now(UTC)),
        "S2_REDIS_URL": "rediss://redis.internal:6380/0",
        "S2_DATABASE_URL": "postgresql://s2_app@db.internal/system2?sslmode=verify-full",
        "S2_ADMIN_DATABASE_URL": "postgresql://postgres@db.internal/system2?sslmode=verify-full",
        "S2_OPERATOR_DATABASE_URL": "postgresql://s2_operator@db/system2?sslmode=verify-full",
        "S2_PUBLIC_URL": "https://system2.example",
        "S2_OAUTH_STATE_SECRET": "s" * 40,
    }
    result = run(settings, "token", "mint", "--user", "u", S2_ENV="production", **safe)
    assert assert_one_line_error(result) == (
        "error: refusing to mint tokens in production; use Supabase Auth"
    )
    assert result.stdout == ""


REQUIRED_COMMANDS = (
    "migrate",
    "ingress",
    "worker",
    "offline-claude",
    "company",
    "quest",
    "audit",
    "demo",
)
# A row of the help's command table: "│ name  help…" (rich) or "  name  help…" (plain click).
COMMAND_ROW = re.compile(r"^(?:\u2502 | {2})([a-z][a-z0-9-]*)(?: {2,}|\s*$)")


def listed_commands(help_text: str) -> set[str]:
    return {m[1] for line in lines(help_text) if (m := COMMAND_ROW.match(line))}


def test_help_lists_every_command(settings: Settings) -> None:
    result = run(settings, "--help", COLUMNS="200")
    assert result.returncode == 0, result.stderr
    listed = listed_commands(result.stdout)
    missing = [c for c in REQUIRED_COMMANDS if c not in listed]
    assert missing == [], f"missing from --help: {missing}; listed: {sorted(listed)}"


@pytest.mark.parametrize(
    ("group", "commands"),
    [
        ("company", ("create", "add-member")),
        ("quest", ("submit", "show")),
        ("audit", ("list",)),
        ("ingress", ("--host", "--port")),
        ("worker", ("--processes", "--in-flight", "--queues")),
        ("offline-claude", ("--port",)),
    ],
)
def test_help_of_each_group_lists_its_commands_and_options(
    settings: Settings, group: str, commands: tuple[str, ...]
) -> None:
    result = run(settings, group, "--help")
    assert result.returncode == 0, result.stderr
    for command in commands:
        assert command in result.stdout, (group, command)


def test_a_bad_setting_is_one_line_naming_the_variable_not_its_value(settings: Settings) -> None:
    result = run(settings, "company", "create", "X", S2_MAX_STEPS="plenty-s3cr3t")
    line = assert_one_line_error(result)
    assert "S2_MAX_STEPS" in line and "plenty-s3cr3t" not in line
