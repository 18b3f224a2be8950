"""Tenancy in the store: row-level security in the catalog, through the access API, through
raw SQL as the app role, across pooled connections, and the migrations that set it up."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from runtime.settings import Settings
from store import Database, MigrationError, NoTenantContext, TenantTx
from store import activity as activity_store
from store import quests as quests_store
from store.activity import ActivityFilter, NewActivity
from store.migrate import migrate
from store.quests import NewQuest
from tests.conftest import Tenant
from tests.support import InTenant

AdminConn = psycopg.Connection[tuple[Any, ...]]
TENANT_TABLES = {
    "companies",
    "memberships",
    "quests",
    "quest_steps",
    "integration_credentials",
    "notes",
    "activity_log",
    "company_limits",
    "charges",
    "credential_uses",
    "tool_calls",
    "webhook_endpoints",
    "webhook_deliveries",
}


def new_quest(in_tenant: InTenant, company_id: uuid.UUID, goal: str = "a goal") -> uuid.UUID:
    quest_id = uuid.uuid4()
    new = NewQuest(
        id=quest_id,
        goal=goal,
        model="claude-sonnet-5-5",
        max_usd_micros=None,
        created_by="user:test",
        correlation_id=uuid.uuid4(),
        origin_message_id=uuid.uuid4(),
    )
    in_tenant(company_id, lambda tx: quests_store.create(tx, new))
    return quest_id


def new_activity(in_tenant: InTenant, company_id: uuid.UUID, count: int = 2) -> None:
    rows = [
        NewActivity(
            idempotency_key=f"k-{uuid.uuid4().hex}",
            occurred_at=datetime.now(UTC),
            actor_type="ted",
            actor_id="ted",
            action="note.added",
            target=f"note:{i}",
            rationale=None,
            originating_message_id=None,
            quest_id=None,
            payload={},
        )
        for i in range(count)
    ]
    in_tenant(company_id, lambda tx: activity_store.append(tx, rows))


def app_user(settings: Settings) -> str:
    return str(conninfo_to_dict(settings.database_url)["user"])


@pytest.fixture
def two(
    in_tenant: InTenant, tenant: Tenant, other_tenant: Tenant
) -> tuple[Tenant, Tenant, uuid.UUID, uuid.UUID]:
    """Tenants A and B with one quest and some activity each: (A, B, A's quest, B's quest)."""
    a_quest = new_quest(in_tenant, tenant.id, "Acme's plan")
    b_quest = new_quest(in_tenant, other_tenant.id, "Globex's plan")
    new_activity(in_tenant, tenant.id)
    new_activity(in_tenant, other_tenant.id)
    return tenant, other_tenant, a_quest, b_quest


@pytest.fixture
def app_conn(settings: Settings) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """A raw connection as the app role, in a transaction (psycopg's default)."""
    with psycopg.connect(settings.database_url) as conn:
        yield conn
        conn.rollback()


# --- the catalog ------------------------------------------------------------------------


def test_every_tenant_table_has_rls_enabled_forced_and_a_policy(admin_conn: AdminConn) -> None:
    tables = {
        r[0]
        for r in admin_conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') "
            "AND a.attname = 'company_id' AND NOT a.attisdropped"
        ).fetchall()
    }
    tables.add("companies")
    assert tables >= TENANT_TABLES, "the catalog query found fewer tables than the schema has"

    rows = admin_conn.execute(
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
        "(SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relname = ANY(%s)",
        (sorted(tables),),
    ).fetchall()
    assert {r[0] for r in rows} == tables
    state = {name: (enabled, forced, policies > 0) for name, enabled, forced, policies in rows}
    weak = {k: v for k, v in state.items() if v != (True, True, True)}
    assert weak == {}, f"(enabled, forced, has a policy) of tables without full RLS: {weak}"


def test_every_policy_reads_the_transaction_tenant(admin_conn: AdminConn) -> None:
    """A policy that fails closed compares with app_company_id() (NULL when none is set)."""
    rows = admin_conn.execute(
        "SELECT c.relname, p.polname, pg_get_expr(p.polqual, p.polrelid), "
        "pg_get_expr(p.polwithcheck, p.polrelid) "
        "FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE p.polpermissive"
    ).fetchall()
    assert rows
    for table, name, using, check in rows:
        for expr in (using, check):
            if expr is None or name in ("directory", "incidents"):  # see the next test
                continue
            if name == "own_grants":  # migration 0013: an engineer's own grants, read only
                assert expr == "(engineer = (SESSION_USER)::text)", expr
            elif name == "member_directory":  # migration 0010: a member's own rows, read only
                assert "NULLIF(current_setting('app.member_id'::text, true), ''::text)" in expr, (
                    expr
                )
            else:
                assert "app_company_id()" in expr, (table, name, expr)


def test_the_only_policies_not_bound_to_the_tenant_let_the_directory_role_read(
    admin_conn: AdminConn,
) -> None:
    """company_ids() and quest_company() run as system2_directory, whose policies read every
    row of two tables (and its grants, two id columns): SELECT only, that role only; the
    incident functions (0014) likewise as system2_incidents, on the columns they count. The app
    role's member_directory policies (a transaction naming a member sees its memberships and
    their companies) are SELECT only too."""
    rows = admin_conn.execute(
        "SELECT c.relname, p.polcmd, array(SELECT pg_get_userbyid(r) FROM unnest(p.polroles) r) "
        "FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE p.polpermissive AND ("
        "pg_get_expr(p.polqual, p.polrelid) NOT LIKE '%%app_company_id()%%' "
        "OR pg_get_expr(p.polwithcheck, p.polrelid) NOT LIKE '%%app_company_id()%%') "
        "ORDER BY 1"
    ).fetchall()
    assert sorted(rows) == [
        ("activity_log", "r", ["system2_incidents"]),
        ("companies", "r", ["system2_app"]),
        ("companies", "r", ["system2_directory"]),
        ("companies", "r", ["system2_incidents"]),
        ("credential_uses", "r", ["system2_incidents"]),
        ("memberships", "r", ["system2_app"]),
        ("memberships", "r", ["system2_incidents"]),
        ("quests", "r", ["system2_directory"]),
        ("quests", "r", ["system2_incidents"]),
        ("support_grants", "r", ["system2_operator"]),
    ]


def test_the_only_restrictive_policies_hold_the_operator_role_to_a_live_grant(
    admin_conn: AdminConn,
) -> None:
    """Restrictive policies only narrow what the permissive ones admit: each is the operator
    role's (engineers, migration 0013), and each asks for a live support grant."""
    rows = admin_conn.execute(
        "SELECT c.relname, p.polcmd, array(SELECT pg_get_userbyid(r) FROM unnest(p.polroles) r), "
        "coalesce(pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)) "
        "FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE NOT p.polpermissive "
        "ORDER BY 1, 2"
    ).fetchall()
    assert [(t, cmd) for t, cmd, _, _ in rows] == [
        ("activity_log", "a"),
        ("activity_log", "r"),
        ("companies", "r"),
        ("memberships", "r"),
        ("notes", "r"),
        ("quest_steps", "r"),
        ("quests", "r"),
        ("tool_calls", "r"),
    ]
    for table, _, roles, expr in rows:
        assert roles == ["system2_operator"], table
        assert expr.lstrip("(").startswith("support_live(company_id)") or expr == (
            "support_live(id)"
        ), (table, expr)


def test_app_role_is_not_superuser_nor_bypassrls_and_owns_nothing(
    admin_conn: AdminConn, settings: Settings
) -> None:
    user = app_user(settings)
    role = admin_conn.execute(
        "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = %s",
        (user,),
    ).fetchone()
    assert role == (False, False, False, False)

    # Nothing owned directly or through a role it belongs to (ownership skips RLS unless forced).
    owned = admin_conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND pg_has_role(%s, c.relowner, 'MEMBER')",
        (user,),
    ).fetchall()
    assert owned == []

    # No role it can become is a superuser or BYPASSRLS either.
    inherited = admin_conn.execute(
        "SELECT rolname FROM pg_roles WHERE pg_has_role(%s, oid, 'MEMBER') "
        "AND (rolsuper OR rolbypassrls)",
        (user,),
    ).fetchall()
    assert inherited == []


# --- cross-tenant denial through the store API ------------------------------------------


def test_store_api_under_a_does_not_find_bs_quest(
    in_tenant: InTenant, two: tuple[Tenant, Tenant, uuid.UUID, uuid.UUID]
) -> None:
    a, b, a_quest, b_quest = two

    async def under_a(tx: TenantTx) -> None:
        assert await quests_store.get(tx, b_quest) is None
        assert await quests_store.steps(tx, b_quest) == []
        found = await quests_store.get(tx, a_quest)
        assert found is not None
        assert found.goal == "Acme's plan"

    in_tenant(a.id, under_a)
    found = in_tenant(b.id, lambda tx: quests_store.get(tx, b_quest))
    assert found is not None
    assert found.goal == "Globex's plan"


def test_store_api_finish_under_a_leaves_bs_quest_alone(
    in_tenant: InTenant, two: tuple[Tenant, Tenant, uuid.UUID, uuid.UUID]
) -> None:
    a, b, _, b_quest = two
    as_b_sees_it = in_tenant(b.id, lambda tx: quests_store.get(tx, b_quest))

    async def under_a(tx: TenantTx) -> None:
        await quests_store.finish(tx, b_quest, "cancelled", reason="a tried")
        assert await quests_store.claim_step(tx, as_b_sees_it, 1, "a-holder") is None

    in_tenant(a.id, under_a)
    quest = in_tenant(b.id, lambda tx: quests_store.get(tx, b_quest))
    assert quest is not None
    assert quest.status == "queued"
    assert quest.step_holder is None


def test_activity_page_under_a_sees_none_of_bs_rows(
    in_tenant: InTenant,
    two: tuple[Tenant, Tenant, uuid.UUID, uuid.UUID],
    admin_conn: AdminConn,
) -> None:
    a, b, _, _ = two
    b_ids = {
        r[0]
        for r in admin_conn.execute(
            "SELECT id FROM activity_log WHERE company_id = %s", (b.id,)
        ).fetchall()
    }
    assert b_ids
    rows, _ = in_tenant(a.id, lambda tx: activity_store.page(tx, ActivityFilter(), limit=200))
    assert rows
    assert not {r.id for r in rows} & b_ids


# --- cross-tenant denial through raw SQL as the app role --------------------------------


def set_tenant(conn: psycopg.Connection[Any], company_id: uuid.UUID) -> None:
    conn.execute("SELECT set_config('app.company_id', %s, true)", (str(company_id),))


def test_raw_sql_under_a_cannot_read_change_or_delete_bs_rows(
    app_conn: psycopg.Connection[Any],
    admin_conn: AdminConn,
    two: tuple[Tenant, Tenant, uuid.UUID, uuid.UUID],
) -> None:
    a, b, a_quest, b_quest = two
    set_tenant(app_conn, a.id)

    # No filter on company_id at all: only row-level security stands in the way.
    assert app_conn.execute("SELECT id FROM quests WHERE id = %s", (b_quest,)).fetchall() == []
    visible = {r[0] for r in app_conn.execute("SELECT company_id FROM quests").fetchall()}
    assert visible == {a.id}
    for table in ("memberships", "activity_log"):
        seen = app_conn.execute(
            sql.SQL("SELECT DISTINCT company_id FROM {}").format(sql.Identifier(table))
        ).fetchall()
        assert seen == [(a.id,)], table
    assert app_conn.execute("SELECT id FROM companies").fetchall() == [(a.id,)]

    attacks = [
        ("UPDATE quests SET goal = 'pwned' WHERE id = %s", (b_quest,)),
        ("UPDATE quests SET company_id = %s WHERE id = %s", (a.id, b_quest)),
        ("UPDATE companies SET name = 'pwned' WHERE id = %s", (b.id,)),
        ("UPDATE memberships SET role = 'admin' WHERE company_id = %s", (b.id,)),
        ("DELETE FROM quests WHERE id = %s", (b_quest,)),
    ]
    for statement, params in attacks:
        assert app_conn.execute(statement, params).rowcount == 0, statement
    app_conn.commit()

    row = admin_conn.execute(
        "SELECT company_id, goal FROM quests WHERE id = %s", (b_quest,)
    ).fetchone()
    assert row == (b.id, "Globex's plan")
    assert a_quest != b_quest


def test_raw_sql_under_a_cannot_move_its_own_row_to_b(
    app_conn: psycopg.Connection[Any], two: tuple[Tenant, Tenant, uuid.UUID, uuid.UUID]
) -> None:
    a, b, a_quest, _ = two
    set_tenant(app_conn, a.id)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        app_conn.execute("UPDATE quests SET company_id = %s WHERE id = %s", (b.id, a_quest))


INSERTS_FOR_B: dict[str, str] = {
    "quests": "INSERT INTO quests (id, company_id, goal, model, created_by, correlation_id, "
    "origin_message_id) VALUES (gen_random_uuid(), %(b)s, 'x', 'm', 'u', gen_random_uuid(), "
    "gen_random_uuid())",
    "memberships": "INSERT INTO memberships (company_id, user_id, role) VALUES (%(b)s, 'mole', 'admin')",
    "activity_log": "INSERT INTO activity_log (company_id, occurred_at, actor_type, actor_id, "
    "action, target, idempotency_key) VALUES (%(b)s, now(), 'ted', 'ted', 'x', 'y', 'forged')",
    "notes": "INSERT INTO notes (id, company_id, text, idempotency_key) "
    "VALUES (gen_random_uuid(), %(b)s, 'x', 'forged')",
    "companies": "INSERT INTO companies (id, name) VALUES (%(b)s, 'forged')",
}


@pytest.mark.parametrize("table", list(INSERTS_FOR_B))
def test_raw_sql_under_a_cannot_insert_rows_for_b(
    table: str,
    app_conn: psycopg.Connection[Any],
    two: tuple[Tenant, Tenant, uuid.UUID, uuid.UUID],
) -> None:
    a, b, _, _ = two
    set_tenant(app_conn, a.id)
    target = uuid.uuid4() if table == "companies" else b.id
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        app_conn.execute(INSERTS_FOR_B[table], {"b": target})


def test_no_tenant_set_sees_nothing_and_writes_nothing(
    app_conn: psycopg.Connection[Any],
    admin_conn: AdminConn,
    two: tuple[Tenant, Tenant, uuid.UUID, uuid.UUID],
) -> None:
    a, _, _, _ = two
    total = admin_conn.execute("SELECT count(*) FROM quests").fetchone()
    assert total is not None
    assert total[0] > 0
    for table in sorted(TENANT_TABLES):
        count = app_conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        ).fetchone()
        assert count == (0,), table

    # An empty setting is no tenant either (what a finished transaction leaves behind).
    app_conn.execute("SELECT set_config('app.company_id', '', true)")
    assert app_conn.execute("SELECT count(*) FROM quests").fetchone() == (0,)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        app_conn.execute(INSERTS_FOR_B["quests"], {"b": a.id})


def test_app_role_cannot_switch_off_row_level_security(
    app_conn: psycopg.Connection[Any], two: tuple[Tenant, Tenant, uuid.UUID, uuid.UUID]
) -> None:
    a, _, _, _ = two
    set_tenant(app_conn, a.id)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app_conn.execute("ALTER TABLE quests NO FORCE ROW LEVEL SECURITY")


# --- pooled connections -----------------------------------------------------------------


def test_pooled_connection_used_by_a_then_b_sees_only_b(
    settings: Settings, in_tenant: InTenant, two: tuple[Tenant, Tenant, uuid.UUID, uuid.UUID]
) -> None:
    a, b, a_quest, b_quest = two

    async def check() -> None:
        async with Database(settings.database_url, min_size=1, max_size=1, name="one") as pool:
            async with pool.tenant(a.id) as tx:
                pid_a = await tx.one("SELECT pg_backend_pid()")
                assert await tx.all("SELECT id FROM quests") == [(a_quest,)]

            async with pool.pool.connection() as conn:
                row = await (
                    await conn.execute(
                        "SELECT pg_backend_pid(), current_setting('app.company_id', true)"
                    )
                ).fetchone()
                assert row is not None
                assert (row[0],) == pid_a, "the pool of one must hand back the same connection"
                assert row[1] in ("", None), "the tenant outlived its transaction"
                count = await (await conn.execute("SELECT count(*) FROM quests")).fetchone()
                assert count == (0,)

            async with pool.tenant(b.id) as tx:
                assert await tx.one("SELECT pg_backend_pid()") == pid_a
                assert await tx.all("SELECT id FROM quests") == [(b_quest,)]
                assert await tx.all("SELECT DISTINCT company_id FROM activity_log") == [(b.id,)]

    in_tenant.run(check())


def test_tenant_does_not_survive_a_failed_transaction_on_a_pooled_connection(
    settings: Settings, in_tenant: InTenant, two: tuple[Tenant, Tenant, uuid.UUID, uuid.UUID]
) -> None:
    a, b, _, b_quest = two

    class Boom(Exception):
        pass

    async def check() -> None:
        async with Database(settings.database_url, min_size=1, max_size=1, name="one") as pool:
            with pytest.raises(Boom):
                async with pool.tenant(a.id) as tx:
                    await tx.execute("SELECT 1")
                    raise Boom
            async with pool.pool.connection() as conn:
                setting = await (
                    await conn.execute("SELECT current_setting('app.company_id', true)")
                ).fetchone()
                assert setting is not None
                assert setting[0] in ("", None)
            async with pool.tenant(b.id) as tx:
                assert await tx.all("SELECT id FROM quests") == [(b_quest,)]

    in_tenant.run(check())


# --- the access API refuses to run without a tenant -------------------------------------


@pytest.mark.parametrize("bad", ["not-a-uuid", "", None, 42])
def test_tenant_tx_without_a_company_uuid_raises(
    bad: Any, in_tenant: InTenant, app_conn: psycopg.Connection[Any]
) -> None:
    with pytest.raises(NoTenantContext):
        TenantTx(app_conn, bad)

    async def enter() -> None:
        with pytest.raises(NoTenantContext):
            async with in_tenant.db.tenant(bad):
                pass
        with pytest.raises(NoTenantContext):
            async with in_tenant.db.batch() as batch:
                await batch.tenant(bad)

    in_tenant.run(enter())


# --- the audit trail is append-only -----------------------------------------------------


def test_activity_log_is_append_only_for_the_app_role(
    settings: Settings, tenant: Tenant, in_tenant: InTenant
) -> None:
    new_activity(in_tenant, tenant.id, 1)
    for statement in (
        "UPDATE activity_log SET action = 'rewritten'",
        "DELETE FROM activity_log",
        "TRUNCATE activity_log",
    ):
        with psycopg.connect(settings.database_url) as conn:
            set_tenant(conn, tenant.id)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    rows = in_tenant(tenant.id, lambda tx: tx.all("SELECT action FROM activity_log"))
    assert rows == [("note.added",)]


def test_activity_log_is_append_only_even_for_the_owner(
    admin_conn: AdminConn, tenant: Tenant, in_tenant: InTenant
) -> None:
    new_activity(in_tenant, tenant.id, 1)
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        admin_conn.execute(
            "UPDATE activity_log SET action = 'rewritten' WHERE company_id = %s", (tenant.id,)
        )
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        admin_conn.execute("DELETE FROM activity_log WHERE company_id = %s", (tenant.id,))
    rows = admin_conn.execute(
        "SELECT action FROM activity_log WHERE company_id = %s", (tenant.id,)
    ).fetchall()
    assert rows == [("note.added",)]


# --- migrations -------------------------------------------------------------------------


def test_migrate_again_applies_nothing(settings: Settings, admin_conn: AdminConn) -> None:
    before = admin_conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    first = migrate(settings.admin_database_url, settings.database_url)
    second = migrate(settings.admin_database_url, settings.database_url)
    assert first.applied == []
    assert second.applied == []
    assert second.current == max(v for v, _ in before)
    after = admin_conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
    assert sorted(after) == sorted(before)


def test_migrate_refuses_an_app_url_that_is_the_admin_user(settings: Settings) -> None:
    admin_user = conninfo_to_dict(settings.admin_database_url)["user"]
    app_url = make_conninfo(settings.database_url, user=admin_user)
    with pytest.raises(MigrationError, match="separate role"):
        migrate(settings.admin_database_url, app_url)


@pytest.fixture
def throwaway_role(admin_conn: AdminConn, settings: Settings) -> Iterator[Callable[[str], str]]:
    """Creates roles with the given attributes; drops them (and anything granted) after."""
    made: list[str] = []

    def create(attributes: str) -> str:
        name = f"s2_test_super_{uuid.uuid4().hex[:10]}"
        admin_conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN " + attributes).format(sql.Identifier(name))
        )
        made.append(name)
        return name

    yield create
    dbname = conninfo_to_dict(settings.admin_database_url)["dbname"]
    for name in made:
        admin_conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        admin_conn.execute(
            sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(
                sql.Identifier(str(dbname)), sql.Identifier(name)
            )
        )
        admin_conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.mark.parametrize("attributes", ["SUPERUSER", "BYPASSRLS"])
def test_migrate_refuses_an_app_role_that_would_skip_rls(
    attributes: str,
    throwaway_role: Callable[[str], str],
    settings: Settings,
    admin_conn: AdminConn,
) -> None:
    role = throwaway_role(attributes)
    app_url = make_conninfo(settings.database_url, user=role)
    with pytest.raises(MigrationError, match="superuser or BYPASSRLS"):
        migrate(settings.admin_database_url, app_url)
    # pg_has_role is always true for a superuser: read the grants themselves.
    granted = admin_conn.execute(
        "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member "
        "WHERE r.rolname = %s",
        (role,),
    ).fetchone()
    assert granted == (0,), "a refused role must not be granted the app's rights"


def test_migrate_refuses_a_changed_migration(settings: Settings, admin_conn: AdminConn) -> None:
    row = admin_conn.execute(
        "SELECT version, checksum FROM schema_migrations ORDER BY version LIMIT 1"
    ).fetchone()
    assert row is not None
    version, checksum = row
    admin_conn.execute(
        "UPDATE schema_migrations SET checksum = %s WHERE version = %s", ("0" * 64, version)
    )
    try:
        with pytest.raises(MigrationError, match="changed after it was applied"):
            migrate(settings.admin_database_url, settings.database_url)
    finally:
        admin_conn.execute(
            "UPDATE schema_migrations SET checksum = %s WHERE version = %s", (checksum, version)
        )
    assert migrate(settings.admin_database_url, settings.database_url).applied == []


def test_the_company_directory_gives_ids_and_nothing_more(settings: Any, make_tenant: Any) -> None:
    a, b = make_tenant("A"), make_tenant("B")
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        ids = {row[0] for row in conn.execute("SELECT company_ids()").fetchall()}
        assert {a.id, b.id} <= ids
        assert conn.execute("SELECT count(*) FROM companies").fetchone() == (0,), (
            "no names without a tenant"
        )
        assert conn.execute("SELECT count(*) FROM memberships").fetchone() == (0,)
