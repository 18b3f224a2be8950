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

A dump holds every tenant's content, so nothing here is ever readable by anyone but the
backup user: ``S2_BACKUP_DIR`` (and ``reports/``) is created 0700 — an existing one open to
group or others is made private, or refused if this user may not — and every dump, manifest,
report and temporary file is *created* 0600 (``os.open`` with that mode, whatever the
umask), never loosened and tightened afterwards.

With ``S2_BACKUP_AGE_RECIPIENTS`` (``age1…`` public keys) each dump is encrypted with
`age <https://age-encryption.org>`_: ``pg_dump``'s output is piped straight into ``age``, so
the plaintext never touches a disk, and the file is ``….dump.age``. The manifest's size and
SHA-256 are those of the file on disk (the ciphertext); its row counts and fingerprints carry
no tenant content. ``restore`` and ``restore-test`` decrypt with the private key in the file
``S2_BACKUP_AGE_IDENTITY`` (``age-keygen`` output), again piped straight into
``pg_restore``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
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
from system2.settings import DEPLOYED, TLS_SSLMODES

MANIFEST_FORMAT = 1
_STAMP = "%Y%m%dT%H%M%SZ"
_DUMP = re.compile(
    r"^system2-(?P<db>.+)-(?P<at>\d{8}T\d{6}Z)(?:-(?P<n>\d+))?\.dump(?P<age>\.age)?$"
)
# What this module writes into S2_BACKUP_DIR and reports/ (and so may make private).
_OURS = re.compile(
    r"^(system2-.+\.(dump|dump\.age|manifest\.json)|restore-test-.+\.(md|json))"
    r"(\.partial|\.tmp)?$"
)
_AUDIT_ROWS = "SELECT md5(a::text) FROM activity_log a ORDER BY a.id"
_AGE_MAGIC = b"age-encryption.org/"
_PGDMP = b"PGDMP"
_TIMEOUT = 6 * 3600
# Files and directories holding tenant data: the owner only, from the moment they exist.
FILE_MODE = 0o600
DIR_MODE = 0o700
_CHILD_UMASK = 0o077


class BackupError(System2Error):
    """A backup or a restore check failed; one line says what."""


@dataclass(frozen=True)
class BackupConfig:
    database_url: str
    backup_dir: Path
    keep_days: int = 30
    # age public keys (``age1…``) every new dump is encrypted to; none: dumps are plaintext.
    age_recipients: tuple[str, ...] = ()
    # The age identity (private key) file that decrypts dumps, for restore and restore-test.
    age_identity: Path | None = None
    # Staging and production: no dump of every tenant's content is written in plain text.
    require_encryption: bool = False

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
        recipients = tuple(re.split(r"[\s,]+", os.environ.get("S2_BACKUP_AGE_RECIPIENTS", "")))
        identity = os.environ.get("S2_BACKUP_AGE_IDENTITY", "").strip()
        env = os.environ.get("S2_ENV", "dev")
        if env in DEPLOYED and conninfo_to_dict(url).get("sslmode") not in TLS_SSLMODES:
            raise BackupError(
                f"S2_ENV={env}: S2_BACKUP_DATABASE_URL must set sslmode=verify-full "
                "(or verify-ca, require): TLS"
            )
        return cls(
            url,
            Path(directory),
            keep,
            age_recipients=tuple(r for r in recipients if r),
            age_identity=Path(identity) if identity else None,
            require_encryption=env in DEPLOYED,
        )


@dataclass
class BackupResult:
    dump: Path
    manifest: Path
    stats: dict[str, Any]
    deleted: list[Path]
    notes: list[str] = field(default_factory=list)


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
    if cfg.require_encryption and not cfg.age_recipients:
        raise BackupError(
            "set S2_BACKUP_AGE_RECIPIENTS: staging and production write no dump in plain text"
        )
    if cfg.age_recipients:
        _need("age", "the age encryption tool: apt-get install age")
        _check_recipients(cfg.age_recipients)
    notes = private_dir(cfg.backup_dir)
    dbname = str(conninfo_to_dict(cfg.database_url).get("dbname") or "postgres")
    dump = _free_name(cfg.backup_dir, dbname, now, encrypted=bool(cfg.age_recipients))
    partial = dump.with_name(dump.name + ".partial")
    with _connect(cfg.database_url) as conn:
        check_backup_role(conn)
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snap_row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        snapshot = str(snap_row[0]) if snap_row else ""
        stats = snapshot_stats(conn)
        server = conn.info.parameter_status("server_version") or "?"
        conninfo, env = _split_password(cfg.database_url)
        argv = ["pg_dump", "--format=custom", f"--snapshot={snapshot}", "--dbname", conninfo]
        with _private_file(partial) as fd:
            try:
                if cfg.age_recipients:
                    _dump_encrypted(argv, env, fd, cfg.age_recipients)
                else:
                    # pg_dump reopens the 0600 file we made (writing to a file, not a pipe,
                    # keeps the archive's data offsets: pg_restore can then seek and run -j).
                    done = _run([*argv, "--file", str(partial)], env)
                    if done.returncode != 0:
                        raise BackupError(f"pg_dump failed: {_last_line(done.stderr)}")
                os.fsync(fd)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        conn.execute("COMMIT")
    size, digest = file_digest(partial)
    partial.rename(dump)
    manifest = {
        "format": MANIFEST_FORMAT,
        "created_at": now.isoformat(timespec="seconds"),
        "dump": dump.name,
        # Size and SHA-256 of the file as it is on disk (the ciphertext when encrypted).
        "dump_bytes": size,
        "dump_sha256": digest,
        "encryption": (
            {"tool": "age", "recipients": list(cfg.age_recipients)} if cfg.age_recipients else None
        ),
        "database": dbname,
        "server_version": server,
        "pg_dump_version": _version("pg_dump"),
        **stats,
    }
    manifest_path = manifest_for(dump)
    _write_atomic(manifest_path, json.dumps(manifest, indent=2) + "\n")
    deleted = prune(cfg.backup_dir, cfg.keep_days, now=now)
    return BackupResult(dump, manifest_path, manifest, deleted, notes)


def _dump_encrypted(
    argv: list[str], env: dict[str, str], fd: int, recipients: tuple[str, ...]
) -> None:
    """``pg_dump | age -r …`` into ``fd``: the plaintext archive exists only in the pipe."""
    flags = [arg for r in recipients for arg in ("--recipient", r)]
    dumped, encrypted = _pipe(argv, ["age", "--encrypt", *flags], env, dict(os.environ), fd)
    # age failing first leaves pg_dump writing into a closed pipe: age's error is the cause.
    # pg_dump failing first leaves age encrypting a short stream, and exiting 0.
    if encrypted.returncode != 0:
        raise BackupError(f"age failed: {_age_error(encrypted.stderr)}")
    if dumped.returncode != 0:
        raise BackupError(f"pg_dump failed: {_last_line(dumped.stderr)}")


def _check_recipients(recipients: tuple[str, ...]) -> None:
    """Refuse a malformed S2_BACKUP_AGE_RECIPIENTS before anything is dumped."""
    argv = ["age", "--encrypt", *(arg for r in recipients for arg in ("--recipient", r))]
    done = subprocess.run(  # noqa: S603 - argv built here
        argv,
        input=b"",
        capture_output=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        error = _age_error(done.stderr.decode(errors="replace"))
        raise BackupError(f"S2_BACKUP_AGE_RECIPIENTS: {error}")


def dumps(directory: Path) -> list[tuple[datetime, Path]]:
    """The dumps in ``directory`` (plain or age-encrypted), oldest first, by the time in their
    names."""
    found = []
    for p in directory.glob("system2-*.dump*"):
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
    return dump.with_name(dump.name.removesuffix(".age").removesuffix(".dump") + ".manifest.json")


def _free_name(directory: Path, dbname: str, now: datetime, *, encrypted: bool) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_]+", "_", dbname)
    stem = f"system2-{safe}-{now.strftime(_STAMP)}"
    suffix = ".dump.age" if encrypted else ".dump"
    base, n = stem, 1
    # A plain and an encrypted dump of one name would share a manifest: neither may exist,
    # nor be on its way (a backup running in the same second).
    taken = (".dump", ".dump.age", ".dump.partial", ".dump.age.partial")
    while any((directory / f"{base}{s}").exists() for s in taken):
        base = f"{stem}-{n}"
        n += 1
    return directory / f"{base}{suffix}"


def private_dir(path: Path) -> list[str]:
    """Make sure ``path`` is a directory only its owner may enter: created 0700, or an
    existing one open to group or others made so (refused when this user may not). Files of
    ours left in it group- or world-readable by older releases become 0600. Returns what it
    changed, to tell the operator."""
    try:
        path.mkdir(mode=DIR_MODE, parents=True)
    except FileExistsError:
        pass
    except OSError as exc:
        raise BackupError(f"cannot create {path}: {exc.strerror}") from None
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise BackupError(f"{path} is not a directory")
    notes = []
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        # Tighten rather than refuse: it protects, at once, the dumps older releases left in
        # it world-readable, and the nightly backup keeps running.
        try:
            os.chmod(path, mode & DIR_MODE)
        except PermissionError:
            raise BackupError(
                f"{path} is open to group/others (mode {mode:04o}) and this user (uid "
                f"{os.geteuid()}) may not change it (owner uid {st.st_uid}): chmod 700 it, or "
                "choose another S2_BACKUP_DIR"
            ) from None
        notes.append(
            f"made {path} private: mode {mode:04o} -> {mode & DIR_MODE:04o} "
            "(backups hold every tenant's data)"
        )
    loose = []
    for child in path.iterdir():
        if not _OURS.match(child.name):
            continue
        cst = child.lstat()
        if stat.S_ISREG(cst.st_mode) and stat.S_IMODE(cst.st_mode) & 0o077:
            try:
                os.chmod(child, stat.S_IMODE(cst.st_mode) & FILE_MODE)
            except PermissionError:
                raise BackupError(
                    f"{child} is readable by group/others and this user may not change it: "
                    "chmod 600 it"
                ) from None
            loose.append(child.name)
    if loose:
        notes.append(f"made {len(loose)} older file(s) in {path} private (0600)")
    return notes


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
            _restore(report, cfg, target, faithful=False, encrypted=_encrypted(manifest))
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
    _restore(report, cfg, target, faithful=True, encrypted=_encrypted(manifest))
    _verify(report, manifest, target, upgrade=False)
    report.seconds = time.monotonic() - t0
    return report


def _verified_file(cfg: BackupConfig, dump: Path | None, report: RestoreReport) -> dict[str, Any]:
    """The dump's manifest, once the file on disk matches it, decrypts (if encrypted) and is
    an archive pg_restore reads."""
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
    identity = _identity_for(cfg, dump, manifest, report)
    listed = _pg_restore(report, ["pg_restore", "--list"], dict(os.environ), identity)
    if listed.returncode != 0:
        raise report.fail("archive", f"pg_restore cannot read it: {_last_line(listed.stderr)}")
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
    _need("age", "the age encryption tool: apt-get install age")
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
        proc.wait(timeout=_TIMEOUT)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise report.fail(
            "decrypt",
            f"cannot decrypt {dump.name} with S2_BACKUP_AGE_IDENTITY ({identity}): "
            f"{_age_error(stderr)}",
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
        done = _run([*argv, str(report.dump)], env)
        return Ran(done.returncode, done.stdout, done.stderr)
    decrypt = ["age", "--decrypt", "--identity", str(identity), str(report.dump)]
    decrypted, restored = _pipe(decrypt, argv, dict(os.environ), env, None)
    if decrypted.returncode != 0 and not _broken_pipe(decrypted):
        raise report.fail("decrypt", f"age failed: {_age_error(decrypted.stderr)}")
    return restored


def _restore(
    report: RestoreReport, cfg: BackupConfig, target: str, *, faithful: bool, encrypted: bool
) -> None:
    conninfo, env = _split_password(target)
    argv = ["pg_restore", "--exit-on-error", "--single-transaction", "--dbname", conninfo]
    if not faithful:
        argv += ["--no-owner", "--no-acl"]
    done = _pg_restore(report, argv, env, cfg.age_identity if encrypted else None)
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
    report.notes.extend(private_dir(backup_dir))
    report.notes.extend(private_dir(reports))
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
        argv,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=_TIMEOUT,
        umask=_CHILD_UMASK,
    )


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def _pipe(
    first: list[str],
    second: list[str],
    first_env: dict[str, str],
    second_env: dict[str, str],
    out_fd: int | None,
) -> tuple[Ran, Ran]:
    """``first | second``, the second's output into ``out_fd`` (or captured). The stream
    passes through an OS pipe only, never a file."""
    with tempfile.TemporaryFile() as first_err:  # 0600, unlinked: error text only
        producer = subprocess.Popen(  # noqa: S603 - argv built here
            first,
            env=first_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=first_err,
            umask=_CHILD_UMASK,
        )
        assert producer.stdout is not None
        try:
            consumer = subprocess.Popen(  # noqa: S603 - argv built here
                second,
                env=second_env,
                stdin=producer.stdout,
                stdout=subprocess.PIPE if out_fd is None else out_fd,
                stderr=subprocess.PIPE,
                text=True,
                umask=_CHILD_UMASK,
            )
        except BaseException:
            producer.kill()
            producer.wait()
            raise
        finally:
            producer.stdout.close()  # the consumer holds the read end now
        try:
            out, err = consumer.communicate(timeout=_TIMEOUT)
            producer.wait(timeout=60)
        except subprocess.TimeoutExpired:
            for proc in (consumer, producer):
                proc.kill()
                proc.wait()
            raise BackupError(f"{first[0]} | {second[0]} timed out") from None
        first_err.seek(0)
        first_stderr = first_err.read().decode(errors="replace")
    return (
        Ran(producer.returncode, "", first_stderr),
        Ran(consumer.returncode, out or "", err or ""),
    )


def _broken_pipe(ran: Ran) -> bool:
    """Killed by SIGPIPE (or said so): the other end of its pipe stopped reading first, which
    is that end's failure (or, for pg_restore --list, reading just the table of contents)."""
    return ran.returncode == -signal.SIGPIPE or "broken pipe" in ran.stderr.lower()


def _age_error(stderr: str) -> str:
    """age's own error line, without its 'report unexpected errors' footer."""
    for line in stderr.splitlines():
        if line.startswith("age: error: "):
            return line.removeprefix("age: error: ").strip()
    return _last_line(stderr) or "failed"


@contextmanager
def _private_file(path: Path) -> Iterator[int]:
    """A new file at ``path`` created 0600 (O_EXCL, so never someone else's file or link),
    whatever the process umask: never readable by anyone else, not even for a moment."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        raise BackupError(f"{path} exists: is another backup or restore test running?") from None
    try:
        yield fd
    finally:
        os.close(fd)


def _need(tool: str, what: str = "the PostgreSQL client tools, same major") -> None:
    if shutil.which(tool) is None:
        raise BackupError(f"{tool} is not installed ({what})")


def _version(tool: str) -> str:
    done = _run([tool, "--version"], dict(os.environ))
    return done.stdout.strip()


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with _private_file(tmp) as fd, open(fd, "wb", closefd=False) as f:
        f.write(text.encode("utf-8"))
        f.flush()
        os.fsync(fd)
    tmp.replace(path)
