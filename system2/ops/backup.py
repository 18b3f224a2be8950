"""Backups: a dump and its manifest from one snapshot, optionally encrypted, and retention.

``backup`` dumps the database of ``S2_BACKUP_DATABASE_URL`` with ``pg_dump -Fc`` into
``S2_BACKUP_DIR`` as ``system2-<db>-<UTC time>.dump``, beside a manifest
(``….manifest.json``) written from the *same snapshot* the dump reads: per-table row counts,
the schema version, and a SHA-256 over every ``activity_log`` row in id order — plus the
dump file's own size and SHA-256. The role must read every tenant's rows despite row-level
security (BYPASSRLS or superuser); it is checked before anything is dumped. Dumps older than
``S2_BACKUP_KEEP_DAYS`` (30) are deleted, never the newest.

Restoring a dump, and the restore test that proves it restores, live in
``system2/ops/restore.py``; everything written here is private to the backup user from the
moment it exists (``system2/ops/private_files.py``).

With ``S2_BACKUP_AGE_RECIPIENTS`` (``age1…`` public keys) each dump is encrypted with
`age <https://age-encryption.org>`_: ``pg_dump``'s output is piped straight into ``age``, so
the plaintext never touches a disk, and the file is ``….dump.age``. The manifest's size and
SHA-256 are those of the file on disk (the ciphertext); its row counts and fingerprints carry
no tenant content. ``restore`` and ``restore-test`` decrypt with the private key in the file
``S2_BACKUP_AGE_IDENTITY`` (``age-keygen`` output), again piped straight into
``pg_restore``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from runtime.settings import BackupSettings, UnusableToolSetting, postgres_tls_problem
from system2.ops.backup_tools import (
    URL_VARIABLE,
    BackupError,
    age_error,
    invalid_url,
    last_line,
    need,
    pipe,
    run,
    split_password,
    url_params,
)
from system2.ops.private_files import private_dir, private_file, write_atomic

MANIFEST_FORMAT = 1
STAMP = "%Y%m%dT%H%M%SZ"
_DUMP = re.compile(
    r"^system2-(?P<db>.+)-(?P<at>\d{8}T\d{6}Z)(?:-(?P<n>\d+))?\.dump(?P<age>\.age)?$"
)
_AUDIT_ROWS = "SELECT md5(a::text) FROM activity_log a ORDER BY a.id"


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
        """The backup host holds only the backup's settings, not the application's, so this
        reads ``BackupSettings`` — S2_ENV checked exactly as ``Settings`` checks it — and
        checks the database URL as staging and production check theirs."""
        try:
            s = BackupSettings()
        except UnusableToolSetting as exc:  # one line naming the variable, never its value
            raise BackupError(str(exc)) from None
        url = s.database_url.get_secret_value()
        url_params(url)  # in every environment: refused naming the variable, never echoed
        tls = postgres_tls_problem(URL_VARIABLE, url) if s.deployed() else None
        if tls:
            raise BackupError(f"S2_ENV={s.env}: {tls}")
        return cls(
            url,
            Path(s.backup_dir),
            s.keep_days,
            age_recipients=s.age_recipients,
            age_identity=s.age_identity,
            require_encryption=s.deployed(),
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
    need("pg_dump")
    if cfg.require_encryption and not cfg.age_recipients:
        raise BackupError(
            "set S2_BACKUP_AGE_RECIPIENTS: staging and production write no dump in plain text"
        )
    if cfg.age_recipients:
        need("age", "the age encryption tool: apt-get install age")
        _check_recipients(cfg.age_recipients)
    dbname = str(url_params(cfg.database_url).get("dbname") or "postgres")
    notes = private_dir(cfg.backup_dir)
    dump = _free_name(cfg.backup_dir, dbname, now, encrypted=bool(cfg.age_recipients))
    partial = dump.with_name(dump.name + ".partial")
    with connect(cfg.database_url) as conn:
        check_backup_role(conn)
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snap_row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        snapshot = str(snap_row[0]) if snap_row else ""
        stats = snapshot_stats(conn)
        server = conn.info.parameter_status("server_version") or "?"
        conninfo, env = split_password(cfg.database_url)
        argv = ["pg_dump", "--format=custom", f"--snapshot={snapshot}", "--dbname", conninfo]
        # The dump is written, read back and renamed through the descriptor of the 0600 file
        # made here: nothing reopens it by name.
        with private_file(partial) as fd:
            try:
                if cfg.age_recipients:
                    _dump_encrypted(argv, env, fd, cfg.age_recipients)
                else:
                    # pg_dump writes into our descriptor (its stdout), no --file: a regular
                    # file, so it can seek back and record the archive's data offsets
                    # (pg_restore can then seek and run -j).
                    done = run(argv, env, out_fd=fd)
                    if done.returncode != 0:
                        raise BackupError(f"pg_dump failed: {last_line(done.stderr)}")
                os.fsync(fd)
                size, digest = fd_digest(fd)
                partial.rename(dump)
                _check_renamed(dump, fd)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        conn.execute("COMMIT")
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
    write_atomic(manifest_path, json.dumps(manifest, indent=2) + "\n")
    deleted = prune(cfg.backup_dir, cfg.keep_days, now=now)
    return BackupResult(dump, manifest_path, manifest, deleted, notes)


def _dump_encrypted(
    argv: list[str], env: dict[str, str], fd: int, recipients: tuple[str, ...]
) -> None:
    """``pg_dump | age -r …`` into ``fd``: the plaintext archive exists only in the pipe."""
    flags = [arg for r in recipients for arg in ("--recipient", r)]
    dumped, encrypted = pipe(argv, ["age", "--encrypt", *flags], env, dict(os.environ), fd)
    # age failing first leaves pg_dump writing into a closed pipe: age's error is the cause.
    # pg_dump failing first leaves age encrypting a short stream, and exiting 0.
    if encrypted.returncode != 0:
        raise BackupError(f"age failed: {age_error(encrypted.stderr)}")
    if dumped.returncode != 0:
        raise BackupError(f"pg_dump failed: {last_line(dumped.stderr)}")


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
        error = age_error(done.stderr.decode(errors="replace"))
        raise BackupError(f"S2_BACKUP_AGE_RECIPIENTS: {error}")


def dumps(directory: Path) -> list[tuple[datetime, Path]]:
    """The dumps in ``directory`` (plain or age-encrypted), oldest first, by the time in their
    names."""
    found = []
    for p in directory.glob("system2-*.dump*"):
        m = _DUMP.match(p.name)
        if m:
            at = datetime.strptime(m["at"], STAMP).replace(tzinfo=UTC)
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
    stem = f"system2-{safe}-{now.strftime(STAMP)}"
    suffix = ".dump.age" if encrypted else ".dump"
    base, n = stem, 1
    # A plain and an encrypted dump of one name would share a manifest: neither may exist,
    # nor be on its way (a backup running in the same second).
    taken = (".dump", ".dump.age", ".dump.partial", ".dump.age.partial")
    while any((directory / f"{base}{s}").exists() for s in taken):
        base = f"{stem}-{n}"
        n += 1
    return directory / f"{base}{suffix}"


# --- helpers ---------------------------------------------------------------------------


def _check_renamed(dump: Path, fd: int) -> None:
    """What now bears the dump's name is the file we wrote (in a directory only we may write,
    nothing else can be; this says so, rather than trusting it)."""
    try:
        there = os.lstat(dump)
    except FileNotFoundError:
        there = None
    ours = os.fstat(fd)
    if there is None or (there.st_dev, there.st_ino) != (ours.st_dev, ours.st_ino):
        if there is not None:
            with contextlib.suppress(OSError):
                dump.unlink()  # whatever was swapped in under our name: not our dump
        raise BackupError(
            f"{dump.name} was replaced while it was written: is something else writing in "
            f"{dump.parent}? No backup was taken"
        )


def fd_digest(fd: int) -> tuple[int, str]:
    """Size and SHA-256 of the open file ``fd``, read from its start (not by name)."""
    h = hashlib.sha256()
    size = 0
    while chunk := os.pread(fd, 1 << 20, size):
        h.update(chunk)
        size += len(chunk)
    return size, h.hexdigest()


def file_digest(path: Path) -> tuple[int, str]:
    with path.open("rb") as f:
        return fd_digest(f.fileno())


def connect(url: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A connection to S2_BACKUP_DATABASE_URL's server (or one made from it)."""
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.ProgrammingError:  # the URL does not parse; its message quotes it
        raise invalid_url() from None
    except psycopg.OperationalError as exc:
        raise BackupError(f"cannot connect to Postgres: {last_line(str(exc))}") from None


def _version(tool: str) -> str:
    done = run([tool, "--version"], dict(os.environ))
    return done.stdout.strip()
