"""Backups and tested restores.

``backup`` dumps the database of ``S2_BACKUP_DATABASE_URL`` with ``pg_dump -Fc`` into
``S2_BACKUP_DIR`` as ``system2-<db>-<UTC time>.dump``, beside a manifest
(``….manifest.json``) written from the *same snapshot* the dump reads: per-table row counts,
the schema version, and a SHA-256 over every ``activity_log`` row in id order — plus the
dump file's own size and SHA-256. The role must read every tenant's rows despite row-level
security (BYPASSRLS or superuser); it is checked before anything is dumped. Dumps older than
``S2_BACKUP_KEEP_DAYS`` (30) are deleted, never the newest.

``restore_test`` restores the newest dump into a scratch database on the same server and
verifies it against its manifest and this code: file checksum, ``pg_restore`` without a
single error, each table's row count, the activity log's rows, the schema version (and that
this code's migrations apply on top of it). It writes a dated report to
``S2_BACKUP_DIR/reports/`` whatever the outcome, drops the scratch database, and raises
``BackupError`` naming the first thing that failed.

``restore`` is the real thing: into a *new* database (never over a live one), owners and
grants included, verified the same way, left in place for the operator to switch to.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from system2.errors import System2Error

MANIFEST_FORMAT = 1
_STAMP = "%Y%m%dT%H%M%SZ"
_DUMP = re.compile(r"^system2-(?P<db>.+)-(?P<at>\d{8}T\d{6}Z)(?:-(?P<n>\d+))?\.dump$")
_AUDIT_ROWS = "SELECT md5(a::text) FROM activity_log a ORDER BY a.id"


class BackupError(System2Error):
    """A backup or a restore check failed; one line says what."""


@dataclass(frozen=True)
class BackupConfig:
    database_url: str
    backup_dir: Path
    keep_days: int = 30

    @classmethod
    def from_env(cls) -> BackupConfig:
        url = os.environ.get("S2_BACKUP_DATABASE_URL")
        directory = os.environ.get("S2_BACKUP_DIR")
        if not url:
            raise BackupError("set S2_BACKUP_DATABASE_URL (a BYPASSRLS or superuser role)")
        if not directory:
            raise BackupError("set S2_BACKUP_DIR (where dumps, manifests and reports live)")
        try:
            keep = int(os.environ.get("S2_BACKUP_KEEP_DAYS", "30"))
        except ValueError:
            raise BackupError("S2_BACKUP_KEEP_DAYS must be a whole number of days") from None
        if keep < 1:
            raise BackupError("S2_BACKUP_KEEP_DAYS must be at least 1")
        return cls(url, Path(directory), keep)


@dataclass
class BackupResult:
    dump: Path
    manifest: Path
    stats: dict[str, Any]
    deleted: list[Path]


# --- what a snapshot holds -------------------------------------------------------------


def snapshot_stats(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Row counts of every table in ``public``, the schema version and the activity log's
    fingerprint, read in the connection's current transaction (repeatable read)."""
    conn.execute("SET LOCAL row_security = off")  # an error, not a silent filter, under RLS
    conn.execute("SET LOCAL TimeZone = 'UTC'")
    conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
    conn.execute("SET LOCAL IntervalStyle = 'postgres'")
    conn.execute("SET LOCAL extra_float_digits = 3")
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname"
        )
    ]
    counts = {}
    for t in tables:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()
        counts[t] = int(row[0]) if row else 0
    stats: dict[str, Any] = {"tables": counts, "schema_version": 0, "migrations": []}
    if "schema_migrations" in counts:
        stats["migrations"] = [
            f"{v:04d}_{n}"
            for v, n in conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        ]
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        stats["schema_version"] = int(row[0]) if row else 0
    if "activity_log" in counts:
        digest = hashlib.sha256()
        n = 0
        with conn.cursor(name="s2_audit_fingerprint") as cur:
            cur.itersize = 5000
            cur.execute(_AUDIT_ROWS)
            for (h,) in cur:
                digest.update(h.encode())
                n += 1
        row = conn.execute("SELECT coalesce(max(id), 0) FROM activity_log").fetchone()
        stats["activity_log"] = {
            "rows": n,
            "max_id": int(row[0]) if row else 0,
            "rows_sha256": digest.hexdigest(),
        }
    return stats


def check_backup_role(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute(
        "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    if row is None or not (row[1] or row[2]):
        who = row[0] if row else "?"
        raise BackupError(
            f"role {who} may not read every tenant's rows (row-level security): back up as a "
            "role with BYPASSRLS (or a superuser)"
        )


# --- backup ----------------------------------------------------------------------------


def backup(cfg: BackupConfig, *, now: datetime | None = None) -> BackupResult:
    now = now or datetime.now(UTC)
    _need("pg_dump")
    cfg.backup_dir.mkdir(parents=True, exist_ok=True)
    dbname = str(conninfo_to_dict(cfg.database_url).get("dbname") or "postgres")
    dump = _free_name(cfg.backup_dir, dbname, now)
    partial = dump.with_name(dump.name + ".partial")
    with _connect(cfg.database_url) as conn:
        check_backup_role(conn)
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snap_row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        snapshot = str(snap_row[0]) if snap_row else ""
        stats = snapshot_stats(conn)
        server = conn.info.parameter_status("server_version") or "?"
        conninfo, env = _split_password(cfg.database_url)
        done = _run(
            [
                "pg_dump",
                "--format=custom",
                f"--snapshot={snapshot}",
                "--file",
                str(partial),
                "--dbname",
                conninfo,
            ],
            env,
        )
        conn.execute("COMMIT")
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {_last_line(done.stderr)}")
    with partial.open("rb") as f:
        os.fsync(f.fileno())
    size, digest = file_digest(partial)
    partial.rename(dump)
    manifest = {
        "format": MANIFEST_FORMAT,
        "created_at": now.isoformat(timespec="seconds"),
        "dump": dump.name,
        "dump_bytes": size,
        "dump_sha256": digest,
        "database": dbname,
        "server_version": server,
        "pg_dump_version": _version("pg_dump"),
        **stats,
    }
    manifest_path = manifest_for(dump)
    _write_atomic(manifest_path, json.dumps(manifest, indent=2) + "\n")
    deleted = prune(cfg.backup_dir, cfg.keep_days, now=now)
    return BackupResult(dump, manifest_path, manifest, deleted)


def dumps(directory: Path) -> list[tuple[datetime, Path]]:
    """The dumps in ``directory``, oldest first, by the time in their names."""
    found = []
    for p in directory.glob("system2-*.dump"):
        m = _DUMP.match(p.name)
        if m:
            at = datetime.strptime(m["at"], _STAMP).replace(tzinfo=UTC)
            found.append((at, int(m["n"] or 0), p))
    found.sort()
    return [(at, p) for at, _, p in found]


def prune(directory: Path, keep_days: int, *, now: datetime | None = None) -> list[Path]:
    """Delete dumps (and their manifests) older than ``keep_days``; never the newest."""
    now = now or datetime.now(UTC)
    all_dumps = dumps(directory)
    cutoff = now - timedelta(days=keep_days)
    deleted = []
    for at, path in all_dumps[:-1]:
        if at < cutoff:
            path.unlink(missing_ok=True)
            manifest_for(path).unlink(missing_ok=True)
            deleted.append(path)
    return deleted


def manifest_for(dump: Path) -> Path:
    return dump.with_name(dump.name.removesuffix(".dump") + ".manifest.json")


def _free_name(directory: Path, dbname: str, now: datetime) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_]+", "_", dbname)
    base = f"system2-{safe}-{now.strftime(_STAMP)}"
    path = directory / f"{base}.dump"
    n = 1
    while path.exists():
        path = directory / f"{base}-{n}.dump"
        n += 1
    return path


# --- restore ---------------------------------------------------------------------------


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
    try:
        manifest = _verified_file(cfg, dump, report)
        with _scratch_database(cfg.database_url, scratch):
            target = make_conninfo(cfg.database_url, dbname=scratch)
            _restore(report, manifest, target, faithful=False)
            _verify(report, manifest, target, upgrade=True)
        report.notes.append(f"scratch database {scratch} dropped")
    except BackupError as exc:
        if report.error is None:
            report.fail("error", str(exc))
    except psycopg.Error as exc:
        report.fail("postgres", _last_line(str(exc)) or type(exc).__name__)
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
    maintenance = make_conninfo(cfg.database_url, dbname="postgres")
    with _connect(maintenance, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (into,)).fetchone():
            raise report.fail("target", f"database {into} exists: restore into a new one")
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(into)))
    target = make_conninfo(cfg.database_url, dbname=into)
    _restore(report, manifest, target, faithful=True)
    _verify(report, manifest, target, upgrade=False)
    report.seconds = time.monotonic() - t0
    return report


def _verified_file(cfg: BackupConfig, dump: Path | None, report: RestoreReport) -> dict[str, Any]:
    _need("pg_restore")
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
    listed = _run(["pg_restore", "--list", str(dump)], dict(os.environ))
    if listed.returncode != 0:
        raise report.fail("archive", f"pg_restore cannot read it: {_last_line(listed.stderr)}")
    report.passed("archive", f"{len(listed.stdout.splitlines())} table-of-contents lines")
    return manifest


def _restore(
    report: RestoreReport, manifest: dict[str, Any], target: str, *, faithful: bool
) -> None:
    assert report.dump is not None
    conninfo, env = _split_password(target)
    argv = ["pg_restore", "--exit-on-error", "--single-transaction", "--dbname", conninfo]
    if not faithful:
        argv += ["--no-owner", "--no-acl"]
    done = _run([*argv, str(report.dump)], env)
    if done.returncode != 0:
        raise report.fail("pg_restore", _last_line(done.stderr) or f"exit {done.returncode}")
    report.passed(
        "pg_restore", "restored without errors" + ("" if faithful else " (no owners/ACLs)")
    )


def _verify(report: RestoreReport, manifest: dict[str, Any], target: str, *, upgrade: bool) -> None:
    with _connect(target) as conn:
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
    with _connect(target, autocommit=True) as conn:
        from store.migrate import current_version

        now_at = current_version(conn)
    if now_at != code:
        raise report.fail("schema", f"at {now_at} after migrating, this code is at {code}")
    report.passed("schema", f"at {dumped} as dumped; current with this code ({code})")


def _audit(a: Any) -> str:
    if not isinstance(a, dict):
        return "no activity_log"
    return (
        f"{a.get('rows')} rows, max id {a.get('max_id')}, sha256 {str(a.get('rows_sha256'))[:16]}…"
    )


@contextmanager
def _scratch_database(url: str, name: str) -> Iterator[None]:
    maintenance = make_conninfo(url, dbname="postgres")
    with _connect(maintenance, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield
    finally:
        with _connect(maintenance, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


# --- reports ---------------------------------------------------------------------------


def write_report(backup_dir: Path, report: RestoreReport) -> Path:
    reports = backup_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    stamp = report.started_at.strftime(_STAMP)
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
    _write_atomic(path, "\n".join(lines) + "\n")
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
    _write_atomic(path.with_suffix(".json"), json.dumps(data, indent=2) + "\n")
    return path


# --- helpers ---------------------------------------------------------------------------


def file_digest(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def _connect(url: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise BackupError(f"cannot connect to Postgres: {_last_line(str(exc))}") from None


def _split_password(url: str) -> tuple[str, dict[str, str]]:
    """The conninfo without its password, and an environment carrying it (so the password
    never shows in a process list)."""
    params = conninfo_to_dict(url)
    env = dict(os.environ)
    password = params.pop("password", None)
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **params), env


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - argv built here
        argv, env=env, capture_output=True, text=True, check=False, timeout=6 * 3600
    )


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        raise BackupError(f"{tool} is not installed (the PostgreSQL client tools, same major)")


def _version(tool: str) -> str:
    done = _run([tool, "--version"], dict(os.environ))
    return done.stdout.strip()


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
