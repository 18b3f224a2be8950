"""Engineers' Postgres logins: one role per engineer, named by their email address, a member
of ``system2_operator`` and of nothing else, with no attribute that reads past row-level
security or hands out roles.

Support grants (``store.support``) name an engineer by that address, and the operator role's
policies compare it with the session's user, which only a superuser can change: who reads is
who signed in, not what a session says about itself.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql

from store.errors import MigrationError

OPERATOR_GROUP = "system2_operator"
_EMAIL = re.compile(r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+")


def valid_engineer(email: str) -> str:
    """The engineer's login name: their email address, lower-cased (a Postgres role name is at
    most 63 bytes)."""
    name = email.strip().lower()
    if len(name.encode()) > 63 or not _EMAIL.fullmatch(name):
        raise ValueError(
            f"{email!r} is not an engineer's email address (at most 63 characters, ASCII)"
        )
    return name


def enroll(conn: psycopg.Connection[Any], email: str, password: str | None = None) -> bool:
    """Give engineer ``email`` a login of their own in ``system2_operator`` (as the owner);
    False when it existed already (its password, if any, is then left alone). Refuses a role
    that could read without a grant."""
    name = valid_engineer(email)
    row = conn.execute(
        "SELECT rolsuper OR rolbypassrls OR rolcreaterole OR rolreplication FROM pg_roles "
        "WHERE rolname = %s",
        (name,),
    ).fetchone()
    created = row is None
    if created:
        stmt = sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name))
        if password:
            hashed = conn.pgconn.encrypt_password(
                password.encode(), name.encode(), b"scram-sha-256"
            )
            stmt = sql.SQL("{} PASSWORD {}").format(stmt, sql.Literal(hashed.decode()))
        try:
            conn.execute(stmt)
        except psycopg.errors.DuplicateObject:
            created = False
    elif row is not None and row[0]:
        raise MigrationError(
            f"role {name} is a superuser, BYPASSRLS, CREATEROLE or REPLICATION: it could read "
            "without a grant"
        )
    also = [
        group
        for (group,) in conn.execute(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s AND g.rolname <> %s "
            "ORDER BY 1",
            (name, OPERATOR_GROUP),
        ).fetchall()
    ]
    if also:
        raise MigrationError(
            f"role {name} is also a member of {', '.join(also)}: an engineer's login belongs "
            f"to {OPERATOR_GROUP} alone"
        )
    conn.execute(
        sql.SQL("GRANT {} TO {}").format(sql.Identifier(OPERATOR_GROUP), sql.Identifier(name))
    )
    conn.execute(
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(str(conn.info.dbname)), sql.Identifier(name)
        )
    )
    return created
