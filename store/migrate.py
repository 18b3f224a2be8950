"""SQL migrations, applied in order under an advisory lock and recorded in a table.

Run as the owner (``S2_ADMIN_DATABASE_URL``). Each file starts with ``-- kind: expand`` or
``-- kind: contract`` so the release check can tell a migration that old code survives from
one that must wait until no old code runs. An applied migration's text must not change.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from store import engineers
from store.catalog_check import unsafe_catalog
from store.errors import MigrationError
from store.migration_check import NAME

APP_GROUP = "system2_app"
OPERATOR_SINCE = 13  # the migration that creates it
LOCK_KEY = 0x5332_4D49_4752  # "S2MIGR"
_KIND = re.compile(r"^--\s*kind:\s*(expand|contract)\b", re.MULTILINE)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    kind: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class MigrateReport:
    applied: list[str]
    current: int
    notes: list[str]


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("store.migrations").iterdir():
        match = NAME.match(entry.name)
        if not match:
            continue
        text = entry.read_text(encoding="utf-8")
        kind = _KIND.search(text)
        if not kind:
            raise MigrationError(
                f"{entry.name} must start with '-- kind: expand' or '-- kind: contract'"
            )
        found.append(Migration(int(match[1]), match[2], kind[1], text))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migrations share a version number")
    return found


def migrate(
    admin_url: str,
    app_url: str | None = None,
    *,
    operator_url: str | None = None,
    upto: int | None = None,
) -> MigrateReport:
    """Bring the database to the newest schema (or to version ``upto``); create it, the app's
    login role and the engineers' (``operator_url``) when allowed. At the newest schema,
    refuse a catalog that breaks tenancy (see ``unsafe_catalog``), whatever made it so."""
    notes = []
    if ensure_database(admin_url):
        notes.append(f"created database {conninfo_to_dict(admin_url).get('dbname')}")
    migrations = [m for m in load_migrations() if upto is None or m.version <= upto]
    applied: list[str] = []
    with _roles_lock(admin_url), _connect(admin_url) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            _ensure_table(conn)
            done = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
            for m in migrations:
                if m.version in done:
                    if done[m.version] != m.checksum:
                        raise MigrationError(
                            f"migration {m.version:04d}_{m.name} changed after it was applied; "
                            "write a new migration instead"
                        )
                    continue
                with conn.transaction():
                    conn.execute(m.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, kind, checksum) "
                        "VALUES (%s, %s, %s, %s)",
                        (m.version, m.name, m.kind, m.checksum),
                    )
                applied.append(f"{m.version:04d}_{m.name}")
            if app_url:
                notes.extend(ensure_app_role(conn, admin_url, app_url))
            if operator_url and (upto is None or upto >= OPERATOR_SINCE):
                notes.extend(ensure_operator_role(conn, admin_url, operator_url, app_url))
            problems = unsafe_catalog(conn, [m.sql for m in migrations]) if upto is None else []
            if problems:
                raise MigrationError("the schema is unsafe: " + "; ".join(problems))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return MigrateReport(applied, migrations[-1].version if migrations else 0, notes)


@contextlib.contextmanager
def _roles_lock(admin_url: str) -> Iterator[None]:
    """Roles belong to the whole cluster, and an advisory lock to one database: two databases
    of a cluster migrated at once (a fresh machine's parallel test processes) would create the
    same role twice. Their migrations take turns under a lock in the maintenance database,
    when it can be reached (a managed Postgres may not allow it: then without)."""
    try:
        cluster = _connect(make_conninfo(admin_url, dbname="postgres"))
    except psycopg.Error:
        yield
        return
    with cluster:
        cluster.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        yield


def current_version(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def ensure_database(admin_url: str) -> bool:
    """Create the database named in ``admin_url`` if it is missing. True if it created it."""
    params = conninfo_to_dict(admin_url)
    dbname = str(params.get("dbname") or "")
    if not dbname:
        raise MigrationError("S2_ADMIN_DATABASE_URL names no database")
    maintenance = make_conninfo(admin_url, dbname="postgres")
    try:
        with _connect(maintenance) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)
            ).fetchone()
            if exists:
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            return True
    except psycopg.errors.DuplicateDatabase:
        return False
    except psycopg.errors.InsufficientPrivilege as exc:
        raise MigrationError(
            f"database {dbname} is missing and the admin role may not create it"
        ) from exc


def ensure_app_role(conn: psycopg.Connection[Any], admin_url: str, app_url: str) -> list[str]:
    """Create the app's login role if needed, and grant it the app's rights — nothing more."""
    app = conninfo_to_dict(app_url)
    admin = conninfo_to_dict(admin_url)
    user = str(app.get("user") or "")
    if not user:
        raise MigrationError("S2_DATABASE_URL names no user: the app must connect as its own role")
    if user == admin.get("user"):
        raise MigrationError(
            f"S2_DATABASE_URL connects as {user}, the owner: the app role must be a separate role"
        )
    notes = []
    role = conn.execute(
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", (user,)
    ).fetchone()
    if role is None:
        password = app.get("password")
        stmt = sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(user))
        if password:
            stmt = sql.SQL("{} PASSWORD {}").format(stmt, sql.Literal(password))
        try:
            conn.execute(stmt)
            notes.append(f"created role {user}")
        except psycopg.errors.DuplicateObject:
            pass
        except psycopg.errors.InsufficientPrivilege:
            return [
                f"role {user} is missing and the admin role may not create it: create it, then "
                f"GRANT {APP_GROUP} TO {user}"
            ]
    elif role[0] or role[1]:
        raise MigrationError(
            f"role {user} is a superuser or BYPASSRLS: row-level security would not apply to it"
        )
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(APP_GROUP), sql.Identifier(user)))
    dbname = str(admin.get("dbname"))
    conn.execute(
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(dbname), sql.Identifier(user)
        )
    )
    return notes


def ensure_operator_role(
    conn: psycopg.Connection[Any], admin_url: str, operator_url: str, app_url: str | None
) -> list[str]:
    """Enroll the engineer whose login ``operator_url`` names (a dev machine's, a test's):
    their own role, in ``system2_operator`` alone (``store.engineers``)."""
    user = str(conninfo_to_dict(operator_url).get("user") or "")
    if app_url and user == conninfo_to_dict(app_url).get("user"):
        raise MigrationError(
            f"S2_OPERATOR_DATABASE_URL connects as {user}, the app's role: an engineer signs in "
            "as their own role, which reads a company only under a support grant"
        )
    if user == conninfo_to_dict(admin_url).get("user"):
        raise MigrationError(f"S2_OPERATOR_DATABASE_URL connects as {user}, the owner")
    password = conninfo_to_dict(operator_url).get("password")
    created = engineers.enroll(conn, user, str(password) if password else None)
    return [f"enrolled engineer {user}"] if created else []


def _ensure_table(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version     integer PRIMARY KEY,
            name        text NOT NULL,
            kind        text NOT NULL,
            checksum    text NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def _connect(conninfo: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise MigrationError(
            f"cannot connect to Postgres as the admin role: {_first_line(exc)}"
        ) from exc


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
