"""No path from the app role to the owner's rights: the directory lookups (company_ids(),
quest_company()) resist a caller's temporary objects, run as a role that may read two id
columns and nothing else, and row-level security is forced on every tenant table again.

The attack is run as the app role, as an attacker holding the app's credentials would: on a
database at migration 0005 it runs as the owner; after ``system2 migrate`` it does not.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from store import MigrationError
from store.migrate import migrate
from system2.scratch import scratch_postgres
from tests.conftest import _base_admin_url

Conn = psycopg.Connection[tuple[Any, ...]]
DIRECTORY = "system2_directory"

# Run as the app role. A temporary function that records who runs it and, with whatever
# rights it has, empties every tenant's audit trail; temporary views named like the tables
# the directory functions read, over that function.
ATTACK = """
CREATE TEMP TABLE seen (who text, activity bigint);
CREATE FUNCTION pg_temp.evil() RETURNS uuid LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pg_temp.seen SELECT current_user::text, count(*) FROM public.activity_log;
    BEGIN
        ALTER TABLE public.activity_log DISABLE TRIGGER USER;
        DELETE FROM public.activity_log;
        ALTER TABLE public.activity_log ENABLE TRIGGER USER;
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN gen_random_uuid();
END
$$;
CREATE TEMP VIEW companies AS SELECT pg_temp.evil() AS id;
CREATE TEMP VIEW quests AS SELECT pg_temp.evil() AS id, pg_temp.evil() AS company_id;
"""


@pytest.fixture
def old_database() -> Iterator[tuple[str, str]]:
    """(admin url, app url) of a scratch database at migration 0005, with two companies, a
    quest and audit rows."""
    with scratch_postgres(_base_admin_url(), prefix="s2old", upto=5) as (admin_url, app_url):
        with psycopg.connect(admin_url, autocommit=True) as conn:
            seed(conn)
        yield admin_url, app_url


def seed(conn: Conn) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    a, b, quest = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for cid, name in ((a, "Acme"), (b, "Globex")):
        conn.execute("INSERT INTO companies (id, name) VALUES (%s, %s)", (cid, name))
        conn.execute(
            "INSERT INTO activity_log (company_id, occurred_at, actor_type, actor_id, action, "
            "target, idempotency_key) VALUES (%s, now(), 'ted', 'ted', 'note.added', 'n', %s)",
            (cid, uuid.uuid4().hex),
        )
    conn.execute(
        "INSERT INTO quests (id, company_id, goal, model, created_by, correlation_id, "
        "origin_message_id) VALUES (%s, %s, 'g', 'm', 'u', %s, %s)",
        (quest, b, uuid.uuid4(), uuid.uuid4()),
    )
    return a, b, quest


def attack(app_url: str) -> tuple[set[uuid.UUID], list[tuple[str, int]]]:
    """As the app role: plant the temporary objects, call both directory functions. Returns
    the company ids company_ids() answered and what the planted function saw."""
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute(ATTACK)
        ids = {row[0] for row in conn.execute("SELECT company_ids()").fetchall()}
        conn.execute("SELECT quest_company(gen_random_uuid())")
        seen = conn.execute("SELECT who, activity FROM pg_temp.seen").fetchall()
    return ids, seen


def activity_rows(admin_url: str) -> int:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM activity_log").fetchone()
    assert row is not None
    return int(row[0])


def forced(admin_url: str) -> dict[str, bool]:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT relname, relforcerowsecurity FROM pg_class "
            "WHERE relname IN ('companies', 'quests') AND relnamespace = 'public'::regnamespace"
        ).fetchall()
    return dict(rows)


@pytest.mark.slow
def test_the_temp_view_attack_ran_as_the_owner_at_0005_and_migrate_ends_it(
    old_database: tuple[str, str],
) -> None:
    admin_url, app_url = old_database
    owner = str(conninfo_to_dict(admin_url)["user"])
    assert activity_rows(admin_url) == 2
    assert forced(admin_url) == {"companies": False, "quests": False}

    _, seen = attack(app_url)
    assert seen and {who for who, _ in seen} == {owner}, "at 0005 the planted code ran as owner"
    assert seen[0][1] == 2, "and read every tenant's audit rows"
    assert activity_rows(admin_url) == 0, "and emptied the append-only log"

    report = migrate(admin_url, app_url)
    assert "0006_directory_role" in report.applied
    assert forced(admin_url) == {"companies": True, "quests": True}
    with psycopg.connect(admin_url, autocommit=True) as conn:
        a, b, quest = seed(conn)

    ids, seen = attack(app_url)
    assert seen == [], "the planted function never runs: pg_temp is searched last"
    assert {a, b} <= ids, "company_ids() reads the real table"
    assert activity_rows(admin_url) == 2
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute(ATTACK)
        assert conn.execute("SELECT quest_company(%s)", (quest,)).fetchone() == (b,)
        assert conn.execute("SELECT * FROM pg_temp.seen").fetchall() == []


def test_the_attack_fails_as_the_app_role_on_the_current_schema(
    settings: Any, admin_conn: Conn, make_tenant: Any
) -> None:
    a, b = make_tenant("A"), make_tenant("B")
    before = activity_rows(settings.admin_database_url)
    ids, seen = attack(settings.database_url)
    assert seen == []
    assert {a.id, b.id} <= ids
    assert activity_rows(settings.admin_database_url) == before


def test_directory_functions_are_owned_by_a_role_with_the_least_rights(admin_conn: Conn) -> None:
    functions = (
        admin_conn.execute(
            "SELECT p.proname, pg_get_userbyid(p.proowner), p.proconfig, p.proacl::text[] "
            "FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef "
            "AND p.proname IN ('company_ids', 'quest_company') ORDER BY p.proname"
        ).fetchall()
    )  # the erasures' (test_erasure.py) and incidents' (test_incidents.py) have roles of their own
    assert [f[0] for f in functions] == ["company_ids", "quest_company"]
    for name, owner, config, acl in functions:
        assert owner == DIRECTORY, name
        assert config == ["search_path=pg_catalog, pg_temp"], name
        grantees = {entry.split("=", 1)[0] for entry in acl}
        assert grantees == {"system2_app", DIRECTORY}, (name, acl)  # '' would be PUBLIC

    role = admin_conn.execute(
        "SELECT rolcanlogin, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolinherit, "
        "rolreplication FROM pg_roles WHERE rolname = %s",
        (DIRECTORY,),
    ).fetchone()
    assert role == (False, False, False, False, False, False, False)
    member_of = admin_conn.execute(
        "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
        "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s",
        (DIRECTORY,),
    ).fetchall()
    assert member_of == [], "it inherits no one's rights"

    tables = admin_conn.execute(
        "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
        "WHERE grantee = %s AND table_catalog = current_database()",
        (DIRECTORY,),
    ).fetchall()
    assert tables == [], "no right on a whole table"
    columns = admin_conn.execute(
        "SELECT table_name, column_name, privilege_type FROM information_schema.column_privileges "
        "WHERE grantee = %s AND table_catalog = current_database() ORDER BY 1, 2",
        (DIRECTORY,),
    ).fetchall()
    assert columns == [
        ("companies", "id", "SELECT"),
        ("quests", "company_id", "SELECT"),
        ("quests", "id", "SELECT"),
    ]
    may_create = admin_conn.execute(
        "SELECT has_schema_privilege(%s, 'public', 'CREATE')", (DIRECTORY,)
    ).fetchone()
    assert may_create == (False,)


def test_the_directory_role_reads_ids_only_even_as_itself(
    admin_conn: Conn, make_tenant: Any
) -> None:
    """Were its function's body ever subverted, the role it runs as could read no content."""
    tenant = make_tenant("A")
    admin_conn.execute("BEGIN")
    try:
        admin_conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(DIRECTORY)))
        ids = {r[0] for r in admin_conn.execute("SELECT id FROM companies").fetchall()}
        assert tenant.id in ids
        for query in (
            "SELECT name FROM companies",
            "SELECT goal FROM quests",
            "SELECT count(*) FROM memberships",
            "SELECT count(*) FROM activity_log",
            "UPDATE companies SET id = id",
        ):
            admin_conn.execute("SAVEPOINT s")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                admin_conn.execute(query)
            admin_conn.execute("ROLLBACK TO SAVEPOINT s")
    finally:
        admin_conn.execute("ROLLBACK")


@pytest.fixture
def supabase_roles() -> Iterator[str]:
    """The base admin URL on a server with Supabase's `anon` and `authenticated` roles, which
    Supabase grants every right on new objects in public (default privileges). Roles this
    fixture made are dropped afterwards."""
    base = _base_admin_url()
    made = []
    with psycopg.connect(make_conninfo(base, dbname="postgres"), autocommit=True) as conn:
        for role in ("anon", "authenticated"):
            if not conn.execute("SELECT FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
                made.append(role)
    yield base
    with psycopg.connect(make_conninfo(base, dbname="postgres"), autocommit=True) as conn:
        for role in made:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


# Rights granted to anon or authenticated by name on our tables and functions (what PUBLIC may
# do, such as run a function that reads a setting, is the same for every role).
GRANTED_TO_SUPABASE_ROLES = """
    SELECT a.grantee::regrole::text, c.relname, a.privilege_type
    FROM pg_class c, aclexplode(c.relacl) a
    WHERE c.relnamespace = 'public'::regnamespace
      AND a.grantee IN (SELECT oid FROM pg_roles WHERE rolname IN ('anon', 'authenticated'))
    UNION ALL
    SELECT a.grantee::regrole::text, p.proname, a.privilege_type
    FROM pg_proc p, aclexplode(p.proacl) a
    WHERE p.pronamespace = 'public'::regnamespace
      AND a.grantee IN (SELECT oid FROM pg_roles WHERE rolname IN ('anon', 'authenticated'))
"""


@pytest.mark.slow
def test_supabases_default_grants_to_anon_and_authenticated_are_taken_back(
    supabase_roles: str,
) -> None:
    name = f"s2supa_{uuid.uuid4().hex[:10]}"
    admin_url = make_conninfo(supabase_roles, dbname=name)
    app_url = make_conninfo(admin_url, user="s2_app")
    maintenance = make_conninfo(supabase_roles, dbname="postgres")
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
                "GRANT ALL ON TABLES TO anon, authenticated"
            )
            conn.execute(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
                "GRANT ALL ON FUNCTIONS TO anon, authenticated"
            )
            conn.execute(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
                "GRANT ALL ON SEQUENCES TO anon, authenticated"
            )
        migrate(admin_url, app_url, upto=5)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            before = conn.execute(
                "SELECT has_function_privilege('anon', 'public.company_ids()', 'EXECUTE'), "
                "has_table_privilege('authenticated', 'public.activity_log', 'SELECT')"
            ).fetchone()
        assert before == (True, True), "the set-up grants what Supabase grants"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            assert len(conn.execute(GRANTED_TO_SUPABASE_ROLES).fetchall()) > 20

        migrate(admin_url, app_url)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            leftover = conn.execute(GRANTED_TO_SUPABASE_ROLES).fetchall()
            assert leftover == []
            # A later grant (a hand-run one, a new table under Supabase's defaults) is refused.
            conn.execute("GRANT UPDATE ON SEQUENCE activity_log_id_seq TO anon")
            conn.execute("GRANT SELECT ON memberships TO authenticated")
        with pytest.raises(MigrationError) as refused:
            migrate(admin_url, app_url)
        assert str(refused.value) == (
            "the schema is unsafe: anon holds rights on activity_log_id_seq; "
            "authenticated holds rights on memberships"
        )
    finally:
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.mark.slow
def test_migrate_refuses_a_catalog_that_lost_forced_rls_or_a_pinned_search_path() -> None:
    """However it happened (a hand-run ALTER, a restored old dump), `system2 migrate` — the
    release command of every deploy — fails rather than serve on such a schema."""
    with scratch_postgres(_base_admin_url(), prefix="s2unsafe") as (admin_url, app_url):
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE quests NO FORCE ROW LEVEL SECURITY")
            conn.execute("ALTER FUNCTION company_ids() SET search_path = public")
        with pytest.raises(MigrationError) as refused:
            migrate(admin_url, app_url)
        assert str(refused.value) == (
            "the schema is unsafe: table quests has row-level security not forced; "
            "SECURITY DEFINER company_ids() does not search pg_temp last"
        )
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE quests FORCE ROW LEVEL SECURITY")
            conn.execute(
                "ALTER FUNCTION company_ids() SET search_path = pg_temp, pg_catalog, pg_temp"
            )
            owner = conn.execute("SELECT current_user").fetchone()
            conn.execute("ALTER FUNCTION quest_company(uuid) OWNER TO CURRENT_USER")
        with pytest.raises(MigrationError) as refused:
            migrate(admin_url, app_url)
        assert owner is not None
        assert str(refused.value) == (
            "the schema is unsafe: "
            "SECURITY DEFINER company_ids() does not search pg_temp last; "
            "SECURITY DEFINER quest_company() is owned by a superuser or BYPASSRLS role; "
            f"SECURITY DEFINER quest_company() is owned by {owner[0]}, who owns tables"
        )
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("ALTER FUNCTION company_ids() SET search_path = pg_catalog, pg_temp")
            conn.execute(f"ALTER FUNCTION quest_company(uuid) OWNER TO {DIRECTORY}")
        assert migrate(admin_url, app_url).applied == []


@pytest.fixture
def owner_not_superuser() -> Iterator[tuple[str, str]]:
    """(admin url, app url) of an empty database owned by a role that is not a superuser, as
    Supabase's `postgres` is not: CREATEROLE and CREATEDB, nothing more."""
    base = _base_admin_url()
    owner = f"s2_owner_{uuid.uuid4().hex[:10]}"
    name = f"s2owned_{uuid.uuid4().hex[:10]}"
    maintenance = make_conninfo(base, dbname="postgres")
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB NOSUPERUSER").format(
                sql.Identifier(owner)
            )
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(owner)
            )
        )
    with psycopg.connect(make_conninfo(base, dbname=name), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(owner)))
    try:
        yield (
            make_conninfo(base, dbname=name, user=owner),
            make_conninfo(base, dbname=name, user="s2_app"),
        )
    finally:
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(owner)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(owner)))


@pytest.mark.slow
def test_an_owner_that_is_not_a_superuser_is_bound_by_forced_rls_after_0006(
    owner_not_superuser: tuple[str, str],
) -> None:
    """On Supabase the owner is not a superuser: it joins system2_directory only to hand the
    functions over, and leaves it — or it would inherit the directory's read-every-row
    policies and see every company and quest despite FORCE."""
    admin_url, app_url = owner_not_superuser
    migrate(admin_url, app_url)
    owner = str(conninfo_to_dict(admin_url)["user"])
    a = uuid.uuid4()
    with psycopg.connect(admin_url) as conn:
        conn.execute("SELECT set_config('app.company_id', %s, true)", (str(a),))
        conn.execute("INSERT INTO companies (id, name) VALUES (%s, 'Acme')", (a,))
        conn.execute(
            "INSERT INTO quests (id, company_id, goal, model, created_by, correlation_id, "
            "origin_message_id) VALUES (%s, %s, 'secret plan', 'm', 'u', %s, %s)",
            (uuid.uuid4(), a, uuid.uuid4(), uuid.uuid4()),
        )
    with psycopg.connect(admin_url, autocommit=True) as conn:
        member = conn.execute(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = %s AND u.rolname = %s",
            (DIRECTORY, owner),
        ).fetchone()
        assert member == (0,), "the owner left the directory role"
        assert conn.execute("SELECT count(*) FROM companies").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM quests").fetchone() == (0,)
    ids, seen = attack(app_url)
    assert seen == [] and a in ids
    assert migrate(admin_url, app_url).applied == []
