"""The release check of migrations: breaking changes are refused unless they are the contract
step of an earlier expand; the project's own migrations pass."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from store.migrate import load_migrations
from store.migration_check import check_directory, project_migrations_dir, split_statements
from system2 import cli

EXPAND = "-- kind: expand\n"
BASE = {
    "0001_initial.sql": EXPAND
    + """
CREATE TABLE quests (id uuid PRIMARY KEY, goal text NOT NULL, result text, legacy text);
CREATE VIEW quest_goals AS SELECT id, goal FROM quests;
CREATE FUNCTION quest_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM quests $$;
GRANT SELECT ON quests TO system2_app;
"""
}


def write(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {**BASE, **files}.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def problems(tmp_path: Path, files: dict[str, str]) -> list[str]:
    return [str(p) for p in check_directory(write(tmp_path, files)).problems]


def test_the_projects_migrations_pass_and_each_states_its_kind() -> None:
    report = check_directory(project_migrations_dir())
    assert report.ok, "\n".join(map(str, report.problems))
    assert report.checked == [f"{m.version:04d}_{m.name}.sql" for m in load_migrations()]
    assert all(m.kind in ("expand", "contract") for m in load_migrations())


def test_the_cli_passes_the_project_and_refuses_a_breaking_directory(tmp_path: Path) -> None:
    ok = CliRunner().invoke(cli.app, ["ops", "check-migrations"])
    assert ok.exit_code == 0, ok.output
    assert f"ok: {len(load_migrations())} migrations are safe" in ok.stderr
    write(tmp_path, {"0002_drop.sql": EXPAND + "ALTER TABLE quests DROP COLUMN legacy;\n"})
    bad = CliRunner().invoke(cli.app, ["ops", "check-migrations", "--dir", str(tmp_path)])
    assert bad.exit_code == 1
    assert "0002_drop.sql:2: drops column legacy (table quests)" in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("refused: 1 problem(s)")


BREAKING = {
    "drop column": ("ALTER TABLE quests DROP COLUMN legacy;", "drops column legacy"),
    "drop column if exists": (
        "ALTER TABLE public.quests DROP COLUMN IF EXISTS legacy CASCADE;",
        "drops column legacy",
    ),
    "rename column": ("ALTER TABLE quests RENAME COLUMN goal TO objective;", "renames"),
    "rename table": ("ALTER TABLE quests RENAME TO missions;", "renames"),
    "drop table": ("DROP TABLE quests;", "drops table quests"),
    "drop table quoted": ('DROP TABLE IF EXISTS "quests" CASCADE;', "drops table quests"),
    "drop view": ("DROP VIEW quest_goals;", "drops view quest_goals"),
    "drop function": ("DROP FUNCTION quest_count();", "drops function quest_count"),
    "not null without default": (
        "ALTER TABLE quests ADD COLUMN owner text NOT NULL;",
        "adds NOT NULL column owner without a DEFAULT",
    ),
    "type in place": (
        "ALTER TABLE quests ALTER COLUMN result TYPE jsonb USING result::jsonb;",
        "changes the type of column result in place",
    ),
    "set data type": (
        "ALTER TABLE quests ALTER result SET DATA TYPE varchar(10);",
        "changes the type of column result",
    ),
    "set not null": (
        "ALTER TABLE quests ALTER COLUMN result SET NOT NULL;",
        "makes column result NOT NULL",
    ),
    "second action of several": (
        "ALTER TABLE quests ADD COLUMN note text, DROP COLUMN legacy;",
        "drops column legacy",
    ),
    "truncate": ("TRUNCATE quests;", "TRUNCATE"),
    "revoke": ("REVOKE SELECT ON quests FROM system2_app;", "REVOKE"),
    "revoke a membership in an existing role": ("REVOKE system2_app FROM s2_app;", "REVOKE"),
    "force rls on an existing table": (
        "ALTER TABLE quests FORCE ROW LEVEL SECURITY;",
        "row-level security",
    ),
    "a drop inside a DO block": (
        "DO $$ BEGIN EXECUTE 'ALTER TABLE quests DROP COLUMN legacy'; END $$;",
        "a DO block runs DROP COLUMN",
    ),
    "a revoke inside a DO block on an existing table": (
        "DO $$ BEGIN EXECUTE format('REVOKE ALL ON TABLE public.labels, quests FROM %I', "
        "'anon'); END $$;",
        "a DO block runs REVOKE",
    ),
    "a revoke of membership in an existing role": (
        "DO $$ BEGIN EXECUTE format('REVOKE system2_app FROM %I', 's2_app'); END $$;",
        "a DO block runs REVOKE",
    ),
    "a revoke from an existing role": (
        "REVOKE CREATE ON SCHEMA public FROM system2_app;",
        "REVOKE",
    ),
    "rename a function": (
        "ALTER FUNCTION quest_count() RENAME TO quests_total;",
        "renames function quest_count",
    ),
}


@pytest.mark.parametrize("case", sorted(BREAKING))
def test_a_breaking_expand_is_refused_with_its_line_and_reason(tmp_path: Path, case: str) -> None:
    statement, reason = BREAKING[case]
    found = problems(tmp_path, {"0002_change.sql": EXPAND + "-- a comment line\n\n" + statement})
    assert len(found) == 1, found
    assert found[0].startswith("0002_change.sql:4: "), found
    assert reason in found[0]
    assert "kind: contract" in found[0]  # says how to ship it


def test_expand_safe_changes_pass(tmp_path: Path) -> None:
    safe = (
        EXPAND
        + """
-- Nullable columns, columns with defaults, new tables and what is done to them.
ALTER TABLE quests ADD COLUMN cancel_requested_at timestamptz;
ALTER TABLE quests ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE quests ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE quests ALTER COLUMN goal DROP NOT NULL, ALTER COLUMN result SET DEFAULT '';
ALTER TABLE quests NO FORCE ROW LEVEL SECURITY;
ALTER TABLE quests ALTER COLUMN goal SET STATISTICS 500;
CREATE TABLE labels (id uuid PRIMARY KEY, name text NOT NULL, old text);
ALTER TABLE labels ENABLE ROW LEVEL SECURITY;
ALTER TABLE labels FORCE ROW LEVEL SECURITY;
ALTER TABLE labels DROP COLUMN old;
CREATE INDEX labels_name ON labels (name);
CREATE FUNCTION label_ids() RETURNS SETOF uuid LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $fn$ SELECT id FROM labels; DROP TABLE quests; $fn$;
REVOKE EXECUTE ON FUNCTION label_ids() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION label_ids() TO system2_app;
DO $$ BEGIN EXECUTE format('REVOKE ALL ON TABLE public.labels FROM %I', 'anon'); END $$;
COMMENT ON TABLE labels IS 'not a DROP TABLE quests; at all';
-- A role of its own for the function: joined for the hand-over, left after (as 0006 does).
DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'labeller') THEN
    CREATE ROLE labeller NOLOGIN; END IF; END $$;
DO $$ BEGIN EXECUTE format('GRANT labeller TO %I', current_user); END $$;
GRANT USAGE, CREATE ON SCHEMA public TO labeller;
ALTER FUNCTION label_ids() OWNER TO labeller;
REVOKE CREATE ON SCHEMA public FROM labeller;
DO $$ BEGIN EXECUTE format('REVOKE labeller FROM %I', current_user); END $$;
CREATE POLICY tenant ON labels USING (true);
DROP POLICY tenant ON labels;
"""
    )
    assert problems(tmp_path, {"0002_labels.sql": safe}) == []


def test_a_role_an_earlier_migration_created_is_not_new_again(tmp_path: Path) -> None:
    """``CREATE ROLE`` under ``IF NOT EXISTS`` does nothing when the role exists: revoking from
    it is still taking rights from what old code runs as."""
    first = EXPAND + (
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'system2_app') THEN\n"
        "    CREATE ROLE system2_app NOLOGIN; END IF; END $$;\n"
    )
    again = first + "REVOKE SELECT ON quests FROM system2_app;\n"
    found = problems(tmp_path, {"0002_app.sql": first, "0003_again.sql": again})
    assert [p for p in found if p.startswith("0003_again.sql")], found
    assert not [p for p in found if p.startswith("0002_app.sql")], found


def test_a_contract_naming_an_earlier_expand_may_break(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        {
            "0002_objective.sql": EXPAND + "ALTER TABLE quests ADD COLUMN objective text;\n",
            "0003_drop_legacy.sql": "-- kind: contract\n-- contracts: 0002_objective\n"
            "ALTER TABLE quests DROP COLUMN legacy;\nDROP VIEW quest_goals;\n",
        },
    )
    assert found == []


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("-- kind: contract\n", "must name the expand it completes"),
        ("-- kind: contract\n-- contracts: 0009_future\n", "0009_future, which does not exist"),
        ("-- kind: contract\n-- contracts: 0004_later\n", "which does not come before it"),
        ("-- kind: contract\n-- contracts: 0002_other\n", "which is not an expand"),
    ],
)
def test_a_contract_without_a_valid_expand_is_refused(
    tmp_path: Path, header: str, reason: str
) -> None:
    found = problems(
        tmp_path,
        {
            "0002_other.sql": "-- kind: contract\n-- contracts: 0001_initial\nSELECT 1;\n",
            "0003_drop.sql": header + "ALTER TABLE quests DROP COLUMN legacy;\n",
            "0004_later.sql": EXPAND + "SELECT 1;\n",
        },
    )
    mine = [p for p in found if p.startswith("0003_drop.sql")]
    assert any(reason in p for p in mine), found
    assert any("drops column legacy" in p for p in mine), found


def test_a_migration_without_a_kind_or_with_a_bad_name_is_refused(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        {
            "0002_nokind.sql": "ALTER TABLE quests ADD COLUMN x text;\n",
            "3_badname.sql": EXPAND + "SELECT 1;\n",
        },
    )
    assert any(p.startswith("0002_nokind.sql:1: does not state its kind") for p in found)
    assert any(p.startswith("3_badname.sql:1: not named NNNN_") for p in found)


def test_the_splitter_keeps_quotes_bodies_and_comments_apart() -> None:
    sql = (
        "-- kind: expand\n"
        "SELECT ';' AS a, \"we;ird\" FROM t; /* ; */\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\n"
        "BEGIN RETURN 1; END $body$;\n"
        "SELECT $$x;y$$;\n"
    )
    statements = split_statements(sql)
    assert [s.line for s in statements] == [2, 3, 5]
    assert statements[0].text == "SELECT '' AS a, \"we;ird\" FROM t"
    assert statements[1].bodies == ("\nBEGIN RETURN 1; END ",)
    assert statements[2].bodies == ("x;y",)


DEFINER = "CREATE FUNCTION quest_ids() RETURNS SETOF uuid LANGUAGE sql STABLE SECURITY DEFINER {opts} AS $$ SELECT id FROM quests $$;\n"
UNPINNED = {
    "no search_path": "",
    "public only": "SET search_path = public",
    "pg_temp first": "SET search_path TO pg_temp, public",
    "pg_temp first and last (its first place counts)": "SET search_path = pg_temp, pg_catalog, pg_temp",
    "one literal naming 'pg_catalog, pg_temp'": "SET search_path = 'pg_catalog, pg_temp'",
    "empty": "SET search_path = ''",
    "from current": "SET search_path FROM CURRENT",
}


@pytest.mark.parametrize("case", sorted(UNPINNED))
def test_an_owner_rights_function_must_search_pg_temp_last(tmp_path: Path, case: str) -> None:
    """Whatever the kind: a contract step may break schema, never this."""
    contract = "-- kind: contract\n-- contracts: 0001_initial\n"
    found = problems(tmp_path, {"0002_f.sql": contract + DEFINER.format(opts=UNPINNED[case])})
    assert len(found) == 1, found
    assert found[0].startswith("0002_f.sql:3: SECURITY DEFINER quest_ids runs with its owner's")
    assert "does not search pg_temp last" in found[0]


def test_an_owner_rights_function_pinned_with_pg_temp_last_passes(tmp_path: Path) -> None:
    for i, opts in enumerate(
        (
            "SET search_path = pg_catalog, pg_temp",
            "SET search_path TO public, 'pg_temp'",
            'SET search_path = "pg_catalog" , pg_temp',
        )
    ):
        (tmp_path / str(i)).mkdir()
        found = problems(tmp_path / str(i), {"0002_f.sql": EXPAND + DEFINER.format(opts=opts)})
        assert found == [], (opts, found)


def test_a_later_migration_may_pin_or_unpin_an_earlier_owner_rights_function(
    tmp_path: Path,
) -> None:
    open_one = {"0002_f.sql": EXPAND + DEFINER.format(opts="SET search_path = public")}
    contract = "-- kind: contract\n-- contracts: 0002_f\n"
    pinned_later = {
        "ALTER": "ALTER FUNCTION public.quest_ids() SET search_path = pg_catalog, pg_temp;",
        "CREATE OR REPLACE": DEFINER.replace("CREATE", "CREATE OR REPLACE").format(
            opts="SET search_path = pg_catalog, pg_temp"
        ),
        "made SECURITY INVOKER": "ALTER FUNCTION quest_ids() SECURITY INVOKER;",
        "dropped": "DROP FUNCTION quest_ids();",
    }
    for how, stmt in pinned_later.items():
        (tmp_path / how).mkdir()
        found = problems(tmp_path / how, {**open_one, "0003_fix.sql": contract + stmt + "\n"})
        assert found == [], (how, found)
    (tmp_path / "undone").mkdir()
    unpinned = problems(
        tmp_path / "undone",
        {
            **open_one,
            "0003_fix.sql": contract + pinned_later["ALTER"] + "\n",
            "0004_undo.sql": EXPAND + "ALTER FUNCTION quest_ids() RESET search_path;\n",
        },
    )
    assert [p.split(": ", 1)[0] for p in unpinned] == ["0004_undo.sql:2"]


def test_the_projects_first_definer_functions_would_be_refused_without_their_fix(
    tmp_path: Path,
) -> None:
    """0003 and 0004 shipped company_ids() and quest_company() with search_path = public;
    the check sees them, and sees that a later migration pins both."""
    for path in project_migrations_dir().glob("000[1-5]_*.sql"):
        (tmp_path / path.name).write_text(path.read_text())
    found = [str(p) for p in check_directory(tmp_path).problems]
    assert len(found) == 2, found
    assert found[0].startswith("0003_integrations.sql:49: SECURITY DEFINER company_ids")
    assert found[1].startswith("0004_cancel.sql:13: SECURITY DEFINER quest_company")
