"""Engineers' Postgres logins: one role per engineer, named by their email address, a member
of ``system2_operator`` and of nothing else.

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
# The roles whose rights an engineer's login must not also hold: each would read (or change)
# companies without a grant.
OTHER_GROUPS = ("system2_app", "system2_directory", "system2_privacy", "system2_incidents")
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
        "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = %s", (name,)
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
            f"role {name} is a superuser or BYPASSRLS: row-level security would not apply to it"
        )
    also = [
        group
        for (group,) in conn.execute(
            "SELECT g FROM unnest(%s::text[]) AS g "
            "WHERE EXISTS (SELECT FROM pg_roles WHERE rolname = g) AND pg_has_role(%s, g, 'MEMBER')",
            (list(OTHER_GROUPS), name),
        ).fetchall()
    ]
    if also:
        raise MigrationError(
            f"role {name} is also a member of {', '.join(also)}: it would read without a grant"
        )
    conn.execute(
        sql.SQL("GRANT {} TO {}").format(sql.Identifier(OPERATOR_GROUP), sql.Identifier(name))
    )
    return created
