"""Tested restores: a dump is only a backup once it has been restored and checked.

``restore_test`` restores the newest dump into a scratch database on the same server and
verifies it against its manifest and this code: file checksum, ``pg_restore`` without a
single error, each table's row count, the activity log's rows, the schema version (and that
this code's migrations apply on top of it). It writes a dated report to
``S2_BACKUP_DIR/reports/`` whatever the outcome, drops the scratch database, and raises
``BackupError`` naming the first thing that failed.

``restore`` is the real thing: into a *new* database (never over a live one), owners and
grants included, verified the same way, left in place for the operator to switch to.

An age-encrypted dump (``….dump.age``) is decrypted with the private key in the file
``S2_BACKUP_AGE_IDENTITY`` (``age-keygen`` output), piped straight into ``pg_restore``: the
plaintext never touches a disk.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from system2.ops.backup import (
    MANIFEST_FORMAT,
    STAMP,
    BackupConfig,
    connect,
    dumps,
    file_digest,
    manifest_for,
    snapshot_stats,
)
from system2.ops.backup_tools import (
    TIMEOUT,
    BackupError,
    Ran,
    age_error,
    broken_pipe,
    last_line,
    need,
    pipe,
    run,
    split_password,
    url_with,
)
from system2.ops.private_files import private_dir, write_atomic

_AGE_MAGIC = b"age-encryption.org/"
_PGDMP = b"PGDMP"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class RestoreReport:
    started_at: datetime
    dump: Path | None = None
    database: str = ""
    checks: list[Check] = field(default_factory=list)
    tables: list[tuple[str, int | None, int | None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for c in self.checks)

    def fail(self, name: str, detail: str) -> BackupError:
        self.checks.append(Check(name, False, detail))
        self.error = f"{name}: {detail}"
        return BackupError(self.error)

    def passed(self, name: str, detail: str) -> None:
        self.checks.append(Check(name, True, detail))


def restore_test(
    cfg: BackupConfig, *, dump: Path | None = None, now: datetime | None = None
) -> tuple[RestoreReport, Path]:
    """Restore the newest dump into a scratch database, verify it, drop it. Returns the
    report and its path; raises BackupError (after writing the report) when a check fails."""
    report = RestoreReport(started_at=now or datetime.now(UTC))
    t0 = time.monotonic()
    scratch = f"s2_restoretest_{report.started_at.strftime('%Y%m%d%H%M%S')}_{secrets.token_hex(3)}"
    report.database = scratch
    # Before a byte is read from it: a dump in a directory someone else may write into could
    # be theirs, restored by a role that bypasses row-level security. (Refused, no report:
    # it would go there too.)
    report.notes.extend(private_dir(cfg.backup_dir))
    report.notes.extend(private_dir(cfg.backup_dir / "reports"))
    try:
        manifest = _verified_file(cfg, dump, report)
        with _scratch_database(cfg.database_url, scratch):
            target = url_with(cfg.database_url, dbname=scratch)
            _restore(report, cfg, target, faithful=False, encrypted=_encrypted(manifest))
            _verify(report, manifest, target, upgrade=True)
        report.notes.append(f"scratch database {scratch} dropped")
    except BackupError as exc:
        if report.error is None:
            report.fail("error", str(exc))
    except psycopg.Error as exc:
        report.fail("postgres", last_line(str(exc)) or type(exc).__name__)
    finally:
        report.seconds = time.monotonic() - t0
        path = write_report(cfg.backup_dir, report)
    if not report.ok:
        raise BackupError(f"{report.error} (report: {path})")
    return report, path


def restore(cfg: BackupConfig, dump: Path, into: str) -> RestoreReport:
    """Restore ``dump`` into the new database ``into`` (refused if it exists), with owners and
    grants, and verify it against its manifest. The database is left for the operator."""
    report = RestoreReport(started_at=datetime.now(UTC), database=into)
    t0 = time.monotonic()
    manifest = _verified_file(cfg, dump, report)
    maintenance = url_with(cfg.database_url, dbname="postgres")
    with connect(maintenance, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (into,)).fetchone():
            raise report.fail("target", f"database {into} exists: restore into a new one")
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(into)))
    target = url_with(cfg.database_url, dbname=into)
    _restore(report, cfg, target, faithful=True, encrypted=_encrypted(manifest))
    _verify(report, manifest, target, upgrade=False)
    report.seconds = time.monotonic() - t0
    return report


def _verified_file(cfg: BackupConfig, dump: Path | None, report: RestoreReport) -> dict[str, Any]:
    """The dump's manifest, once the file on disk matches it, decrypts (if encrypted) and is
    an archive pg_restore reads."""
    need("pg_restore")
    if dump is None:
        found = dumps(cfg.backup_dir) if cfg.backup_dir.exists() else []
        if not found:
            raise report.fail("dump", f"no dump in {cfg.backup_dir}")
        dump = found[-1][1]
    report.dump = dump
    if not dump.exists():
        raise report.fail("dump", f"{dump} does not exist")
    mpath = manifest_for(dump)
    try:
        manifest: dict[str, Any] = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise report.fail("manifest", f"{mpath.name} is missing") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise report.fail("manifest", f"{mpath.name} is unreadable: {exc}") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise report.fail("manifest", f"unknown manifest format {manifest.get('format')!r}")
    size, digest = file_digest(dump)
    if size != manifest.get("dump_bytes"):
        raise report.fail(
            "checksum",
            f"{dump.name} is {size} bytes, its manifest says {manifest.get('dump_bytes')}: "
            "truncated or damaged",
        )
    if digest != manifest.get("dump_sha256"):
        raise report.fail("checksum", f"{dump.name} does not match its manifest's SHA-256: damaged")
    report.passed("checksum", f"{size} bytes, sha256 {digest[:16]}… as in the manifest")
    identity = _identity_for(cfg, dump, manifest, report)
    listed = _pg_restore(report, ["pg_restore", "--list"], dict(os.environ), identity)
    if listed.returncode != 0:
        raise report.fail("archive", f"pg_restore cannot read it: {last_line(listed.stderr)}")
    report.passed("archive", f"{len(listed.stdout.splitlines())} table-of-contents lines")
    return manifest


def _identity_for(
    cfg: BackupConfig, dump: Path, manifest: dict[str, Any], report: RestoreReport
) -> Path | None:
    """None for a plaintext dump; for an age-encrypted one, the identity file that opens it,
    once the whole file has decrypted with it into a pg_dump archive (that also proves every
    encrypted chunk authentic)."""
    with dump.open("rb") as f:
        encrypted = f.read(len(_AGE_MAGIC)) == _AGE_MAGIC
    declared = manifest.get("encryption")
    if encrypted != bool(declared):
        says = "encrypted" if declared else "plaintext"
        raise report.fail(
            "manifest",
            f"says {dump.name} is {says}, the file is {'not ' if declared else ''}encrypted",
        )
    if not encrypted:
        return None
    to = ", ".join(declared.get("recipients") or []) if isinstance(declared, dict) else ""
    report.notes.append(f"{dump.name} is encrypted with age to {to or 'unknown recipients'}")
    need("age", "the age encryption tool: apt-get install age")
    identity = cfg.age_identity
    if identity is None:
        raise report.fail(
            "decrypt",
            f"{dump.name} is encrypted with age (to {to}): set S2_BACKUP_AGE_IDENTITY to the "
            "file holding its private key",
        )
    if not identity.is_file():
        raise report.fail(
            "decrypt", f"S2_BACKUP_AGE_IDENTITY: {identity} does not exist or is not a file"
        )
    argv = ["age", "--decrypt", "--identity", str(identity), str(dump)]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(  # noqa: S603 - argv built here
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
        )
        assert proc.stdout is not None
        with proc.stdout:
            head = proc.stdout.read(len(_PGDMP))
            total = len(head)
            while chunk := proc.stdout.read(1 << 20):  # read to the end: age authenticates
                total += len(chunk)  # each chunk as it goes, the last one included
        proc.wait(timeout=TIMEOUT)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise report.fail(
            "decrypt",
            f"cannot decrypt {dump.name} with S2_BACKUP_AGE_IDENTITY ({identity}): "
            f"{age_error(stderr)}",
        )
    if head != _PGDMP:
        raise report.fail("decrypt", f"{dump.name} decrypts to something not a pg_dump archive")
    report.passed("decrypt", f"{total} bytes decrypted with {identity.name}: a pg_dump archive")
    return identity


def _pg_restore(
    report: RestoreReport, argv: list[str], env: dict[str, str], identity: Path | None
) -> Ran:
    """``pg_restore argv… DUMP``, or for an encrypted dump ``age -d DUMP | pg_restore argv…``
    (the plaintext archive exists only in the pipe)."""
    assert report.dump is not None
    if identity is None:
        done = run([*argv, str(report.dump)], env)
        return Ran(done.returncode, done.stdout, done.stderr)
    decrypt = ["age", "--decrypt", "--identity", str(identity), str(report.dump)]
    decrypted, restored = pipe(decrypt, argv, dict(os.environ), env, None)
    if decrypted.returncode != 0 and not broken_pipe(decrypted):
        raise report.fail("decrypt", f"age failed: {age_error(decrypted.stderr)}")
    return restored


def _restore(
    report: RestoreReport, cfg: BackupConfig, target: str, *, faithful: bool, encrypted: bool
) -> None:
    conninfo, env = split_password(target)
    argv = ["pg_restore", "--exit-on-error", "--single-transaction", "--dbname", conninfo]
    if not faithful:
        argv += ["--no-owner", "--no-acl"]
    done = _pg_restore(report, argv, env, cfg.age_identity if encrypted else None)
    if done.returncode != 0:
        raise report.fail("pg_restore", last_line(done.stderr) or f"exit {done.returncode}")
    report.passed(
        "pg_restore", "restored without errors" + ("" if faithful else " (no owners/ACLs)")
    )


def _verify(report: RestoreReport, manifest: dict[str, Any], target: str, *, upgrade: bool) -> None:
    with connect(target) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        got = snapshot_stats(conn)
        conn.execute("COMMIT")
    want_tables: dict[str, int] = manifest.get("tables", {})
    got_tables: dict[str, int] = got["tables"]
    for name in sorted(set(want_tables) | set(got_tables)):
        report.tables.append((name, want_tables.get(name), got_tables.get(name)))
    wrong = [
        f"{n} {want_tables.get(n, 'absent')}→{got_tables.get(n, 'absent')}"
        for n in sorted(set(want_tables) | set(got_tables))
        if want_tables.get(n) != got_tables.get(n)
    ]
    if wrong:
        raise report.fail("row counts", "differ from the manifest: " + ", ".join(wrong))
    report.passed("row counts", f"{len(got_tables)} tables match the manifest")
    want_audit = manifest.get("activity_log")
    got_audit = got.get("activity_log")
    if want_audit != got_audit:
        raise report.fail(
            "activity_log",
            f"restored {_audit(got_audit)}, the manifest says {_audit(want_audit)}",
        )
    report.passed("activity_log", f"intact: {_audit(got_audit)}")
    _check_schema(report, manifest, got, target, upgrade=upgrade)


def _check_schema(
    report: RestoreReport,
    manifest: dict[str, Any],
    got: dict[str, Any],
    target: str,
    *,
    upgrade: bool,
) -> None:
    from store.migrate import load_migrations, migrate

    code = load_migrations()[-1].version
    dumped = int(manifest.get("schema_version", -1))
    restored = int(got["schema_version"])
    if restored != dumped:
        raise report.fail(
            "schema", f"schema_migrations is at {restored}, the manifest says {dumped}"
        )
    if restored > code:
        raise report.fail(
            "schema",
            f"the dump is at schema {restored}, newer than this code's {code}: test it with the "
            "release that made it",
        )
    if restored < code and not upgrade:
        report.passed("schema", f"at {restored}; this code is at {code}: run `system2 migrate`")
        return
    if restored < code:
        try:
            applied = migrate(target).applied
        except Exception as exc:
            raise report.fail("schema", f"this code's migrations do not apply: {exc}") from None
        report.notes.append(f"migrated the restored copy from {restored} to {code}: {applied}")
    with connect(target, autocommit=True) as conn:
        from store.migrate import current_version

        now_at = current_version(conn)
    if now_at != code:
        raise report.fail("schema", f"at {now_at} after migrating, this code is at {code}")
    report.passed("schema", f"at {dumped} as dumped; current with this code ({code})")


def _encrypted(manifest: dict[str, Any]) -> bool:
    return bool(manifest.get("encryption"))  # checked against the file by _identity_for


def _audit(a: Any) -> str:
    if not isinstance(a, dict):
        return "no activity_log"
    return (
        f"{a.get('rows')} rows, max id {a.get('max_id')}, sha256 {str(a.get('rows_sha256'))[:16]}…"
    )


@contextmanager
def _scratch_database(url: str, name: str) -> Iterator[None]:
    maintenance = url_with(url, dbname="postgres")
    with connect(maintenance, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield
    finally:
        with connect(maintenance, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# --- reports ---------------------------------------------------------------------------


def write_report(backup_dir: Path, report: RestoreReport) -> Path:
    reports = backup_dir / "reports"
    report.notes.extend(private_dir(backup_dir))
    report.notes.extend(private_dir(reports))
    stamp = report.started_at.strftime(STAMP)
    path = reports / f"restore-test-{stamp}.md"
    n = 1
    while path.exists():
        path = reports / f"restore-test-{stamp}-{n}.md"
        n += 1
    outcome = "PASS" if report.ok else f"FAIL — {report.error}"
    lines = [
        f"# Restore test {report.started_at.isoformat(timespec='seconds')}",
        "",
        f"**Outcome: {outcome}**",
        "",
        f"- dump: `{report.dump.name if report.dump else 'none'}`",
        f"- scratch database: `{report.database}` (dropped afterwards)",
        f"- took: {report.seconds:.1f} s",
        "",
        "| check | result | detail |",
        "| --- | --- | --- |",
        *[f"| {c.name} | {'ok' if c.ok else 'FAILED'} | {c.detail} |" for c in report.checks],
    ]
    if report.tables:
        lines += ["", "| table | rows at dump | rows restored |", "| --- | ---: | ---: |"]
        lines += [f"| {t} | {w} | {g} |" for t, w, g in report.tables]
    if report.notes:
        lines += ["", *[f"- {n}" for n in report.notes]]
    write_atomic(path, "\n".join(lines) + "\n")
    data = {
        "started_at": report.started_at.isoformat(timespec="seconds"),
        "ok": report.ok,
        "error": report.error,
        "dump": report.dump.name if report.dump else None,
        "database": report.database,
        "seconds": round(report.seconds, 2),
        "checks": [c.__dict__ for c in report.checks],
        "tables": [{"table": t, "dumped": w, "restored": g} for t, w, g in report.tables],
        "notes": report.notes,
    }
    write_atomic(path.with_suffix(".json"), json.dumps(data, indent=2) + "\n")
    return path
