"""Backups and tested restores against this machine's Postgres: deploy/backup, then
deploy/restore-test passes and writes a report; a damaged dump fails loudly; retention."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from store import Database
from store import activity as activity_store
from store.activity import NewActivity
from system2.ops.backup import BackupConfig, BackupError, backup, restore_test
from system2.settings import Settings
from tests.conftest import Tenant, settings_env

ROOT = Path(__file__).resolve().parent.parent
AdminConn = psycopg.Connection[tuple[Any, ...]]


def run(
    settings: Settings, script: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """A deploy/ script, as cron or an operator runs it."""
    return subprocess.run(
        [str(ROOT / "deploy" / script), *args],
        env=settings_env(settings, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def backup_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return {
        "S2_BACKUP_DATABASE_URL": settings.admin_database_url,  # the owner: a superuser here
        "S2_BACKUP_DIR": str(tmp_path / "backups"),
    }


@pytest.fixture
def with_audit_rows(db: Database, make_tenant: Callable[[str], Tenant]) -> Tenant:
    tenant = make_tenant("Backed Up Inc")
    rows = [
        NewActivity(
            idempotency_key=f"backup-test-{uuid.uuid4().hex}",
            occurred_at=datetime.now(UTC),
            actor_type="ted",
            actor_id="ted",
            action="note.added",
            target=f"note:{n}",
            rationale="so the backup has audit rows",
            originating_message_id=uuid.uuid4(),
            quest_id=None,
            payload={"n": n, "nested": {"ok": True}},
        )
        for n in range(5)
    ]
    with db.tenant(tenant.id) as tx:
        activity_store.append(tx, rows)
    return tenant


def config(env: dict[str, str], keep_days: int = 30) -> BackupConfig:
    return BackupConfig(env["S2_BACKUP_DATABASE_URL"], Path(env["S2_BACKUP_DIR"]), keep_days)


def take_backup(settings: Settings, env: dict[str, str]) -> tuple[Path, dict[str, Any]]:
    """A backup the way cron takes it: the deploy/backup script."""
    done = run(settings, "backup", **env)
    assert done.returncode == 0, done.stderr
    dump = Path(done.stdout.strip())
    return dump, manifest_of(dump)


def quick_backup(env: dict[str, str]) -> tuple[Path, dict[str, Any]]:
    """The same backup, in process (the script costs a second of interpreter start)."""
    dump = backup(config(env)).dump
    return dump, manifest_of(dump)


def manifest_of(dump: Path) -> dict[str, Any]:
    return dict(
        json.loads(dump.with_name(dump.name.replace(".dump", ".manifest.json")).read_text())
    )


def test_backup_then_restore_test_passes_and_writes_a_report(
    settings: Settings,
    admin_conn: AdminConn,
    backup_env: dict[str, str],
    with_audit_rows: Tenant,
) -> None:
    dump, manifest = take_backup(settings, backup_env)

    # The manifest holds what the database held: every table's rows, the audit fingerprint.
    for table, count in manifest["tables"].items():
        row = admin_conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        assert row is not None and row[0] == count, table
    assert manifest["tables"]["activity_log"] >= 5
    assert manifest["activity_log"]["rows"] == manifest["tables"]["activity_log"]
    version = admin_conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    assert version is not None and manifest["schema_version"] == version[0]
    assert manifest["dump_bytes"] == dump.stat().st_size

    done = run(settings, "restore-test", **backup_env)
    assert done.returncode == 0, done.stderr
    report = Path(done.stdout.strip())
    assert report.parent == Path(backup_env["S2_BACKUP_DIR"]) / "reports"
    assert report.name.startswith("restore-test-") and report.suffix == ".md"
    text = report.read_text()
    assert "**Outcome: PASS**" in text
    assert f"`{dump.name}`" in text
    assert f"| activity_log | {manifest['tables']['activity_log']} |" in text
    details = json.loads(report.with_suffix(".json").read_text())
    assert details["ok"] is True
    assert {c["name"] for c in details["checks"]} >= {
        "checksum",
        "pg_restore",
        "row counts",
        "activity_log",
        "schema",
    }
    scratch = details["database"]
    gone = admin_conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (scratch,))
    assert gone.fetchone() is None, f"{scratch} was not dropped"


def copy_as_newest(dump: Path, directory: Path, hours: int = 1) -> Path:
    """A copy of ``dump`` and its manifest, named an hour later so restore-test picks it."""
    stamp = (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y%m%dT%H%M%SZ")
    target = directory / f"system2-copy-{stamp}.dump"
    shutil.copyfile(dump, target)
    manifest = json.loads(dump.with_name(dump.name.replace(".dump", ".manifest.json")).read_text())
    manifest["dump"] = target.name
    write_manifest(target, manifest)
    return target


def write_manifest(dump: Path, manifest: dict[str, Any]) -> None:
    dump.with_name(dump.name.replace(".dump", ".manifest.json")).write_text(json.dumps(manifest))


def resign(dump: Path) -> None:
    """Make the manifest agree with the (damaged) file, as if it had been damaged before the
    manifest was written: the restore itself must then catch it."""
    import hashlib

    path = dump.with_name(dump.name.replace(".dump", ".manifest.json"))
    manifest = json.loads(path.read_text())
    data = dump.read_bytes()
    manifest["dump_bytes"] = len(data)
    manifest["dump_sha256"] = hashlib.sha256(data).hexdigest()
    path.write_text(json.dumps(manifest))


def last_report(env: dict[str, str]) -> str:
    reports = sorted((Path(env["S2_BACKUP_DIR"]) / "reports").glob("*.md"))
    return reports[-1].read_text()


def test_restore_test_fails_loudly_on_a_truncated_dump(
    settings: Settings, backup_env: dict[str, str], with_audit_rows: Tenant
) -> None:
    dump, _ = take_backup(settings, backup_env)
    bad = copy_as_newest(dump, dump.parent)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])

    line = one_line_error(run(settings, "restore-test", **backup_env))
    assert line.startswith("error: checksum:")
    assert bad.name in line and "truncated" in line
    assert "Outcome: FAIL — checksum" in last_report(backup_env)

    resign(bad)  # the manifest no longer gives it away: pg_restore must fail on it
    line = one_line_error(run(settings, "restore-test", **backup_env))
    assert line.startswith(("error: archive: pg_restore cannot read", "error: pg_restore:")), line
    assert "Outcome: FAIL — " in last_report(backup_env)


def test_restore_test_fails_loudly_on_flipped_bytes(
    settings: Settings, backup_env: dict[str, str], with_audit_rows: Tenant
) -> None:
    dump, _ = quick_backup(backup_env)
    bad = copy_as_newest(dump, dump.parent)
    data = bytearray(bad.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    bad.write_bytes(bytes(data))

    with pytest.raises(
        BackupError, match=r"^checksum: .* does not match its manifest's SHA-256: damaged"
    ):
        restore_test(config(backup_env))
    assert "Outcome: FAIL — checksum" in last_report(backup_env)


def test_restore_test_fails_when_the_restored_rows_differ_from_the_manifest(
    settings: Settings, backup_env: dict[str, str], with_audit_rows: Tenant
) -> None:
    dump, manifest = quick_backup(backup_env)
    miscounted = copy_as_newest(dump, dump.parent, hours=1)
    manifest["dump"] = miscounted.name
    write_manifest(miscounted, {**manifest, "tables": {**manifest["tables"], "quests": 10**6}})
    with pytest.raises(
        BackupError, match=r"^row counts: differ from the manifest: quests 1000000→"
    ):
        restore_test(config(backup_env))

    tampered = copy_as_newest(dump, dump.parent, hours=2)
    audit = {**manifest["activity_log"], "rows_sha256": "0" * 64}
    write_manifest(tampered, {**manifest, "dump": tampered.name, "activity_log": audit})
    with pytest.raises(
        BackupError, match=r"^activity_log: restored \d+ rows, .* the manifest says"
    ):
        restore_test(config(backup_env))


def test_backup_refuses_a_role_bound_by_row_level_security(
    settings: Settings, backup_env: dict[str, str]
) -> None:
    env = {**backup_env, "S2_BACKUP_DATABASE_URL": settings.database_url}  # the app role
    line = one_line_error(run(settings, "backup", **env))
    assert "may not read every tenant's rows" in line and "BYPASSRLS" in line
    assert not list(Path(backup_env["S2_BACKUP_DIR"]).glob("*.dump"))


def test_restore_test_without_any_dump_says_so(backup_env: dict[str, str]) -> None:
    with pytest.raises(BackupError, match=r"^dump: no dump in "):
        restore_test(config(backup_env))


def test_retention_deletes_dumps_older_than_the_keep_window(
    settings: Settings, backup_env: dict[str, str]
) -> None:
    directory = Path(backup_env["S2_BACKUP_DIR"])
    directory.mkdir(parents=True)
    now = datetime.now(UTC)

    def fake(days: float) -> Path:
        stamp = (now - timedelta(days=days)).strftime("%Y%m%dT%H%M%SZ")
        dump = directory / f"system2-old-{stamp}.dump"
        dump.write_bytes(b"old")
        write_manifest(dump, {"format": 1})
        return dump

    expired, also_expired, kept = fake(45), fake(8.5), fake(6.5)
    unrelated = directory / "notes.txt"
    unrelated.write_text("not a dump")

    result = backup(config(backup_env, keep_days=7))
    dump = result.dump
    assert sorted(result.deleted) == sorted([expired, also_expired])
    assert not expired.exists() and not also_expired.exists()
    assert not expired.with_name(expired.name.replace(".dump", ".manifest.json")).exists()
    assert kept.exists() and dump.exists() and unrelated.exists()


def test_restore_into_a_new_database_keeps_grants_and_row_level_security(
    settings: Settings,
    admin_conn: AdminConn,
    backup_env: dict[str, str],
    with_audit_rows: Tenant,
) -> None:
    dump, _ = quick_backup(backup_env)
    target = f"s2_restored_{uuid.uuid4().hex[:8]}"
    try:
        done = run(settings, "restore", "--dump", str(dump), "--into", target, **backup_env)
        assert done.returncode == 0, done.stderr
        assert "row counts: " in done.stderr
        # The app role works on the restored copy, through its grants and policies.
        app_url = make_conninfo(settings.database_url, dbname=target)
        with psycopg.connect(app_url) as conn:
            conn.execute(
                "SELECT set_config('app.company_id', %s, true)", (str(with_audit_rows.id),)
            )
            row = conn.execute("SELECT count(*) FROM activity_log").fetchone()
            assert row is not None and row[0] == 5
            conn.rollback()
            row = conn.execute("SELECT count(*) FROM activity_log").fetchone()
            assert row is not None and row[0] == 0  # no tenant, no rows
        again = run(settings, "restore", "--dump", str(dump), "--into", target, **backup_env)
        assert "exists: restore into a new one" in one_line_error(again)
    finally:
        admin_conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
