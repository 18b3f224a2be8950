"""Companies (the tenants) and their members."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from uuid import UUID

import psycopg

from store.db import Database, TenantTx

Role = Literal["member", "admin"]
ROLES: tuple[Role, ...] = ("member", "admin")


@dataclass(frozen=True)
class Company:
    id: str
    name: str
    deleted: bool = False  # `system2 company delete`: its content erased, its name replaced


async def create(tx: TenantTx, name: str) -> None:
    """Create the company whose id is the transaction's tenant."""
    await tx.execute("INSERT INTO companies (id, name) VALUES (%s, %s)", (tx.company_id, name))


async def get(tx: TenantTx) -> Company | None:
    row = await tx.one(
        "SELECT id, name, deleted_at IS NOT NULL FROM companies WHERE id = %s", (tx.company_id,)
    )
    return Company(str(row[0]), row[1], row[2]) if row else None


async def add_member(tx: TenantTx, user_id: str, role: Role, email: str | None = None) -> None:
    """Add a member or change their role; ``email`` (where an admin's incident notices go)
    replaces the one on file when given and keeps it when not."""
    await tx.execute(
        "INSERT INTO memberships (company_id, user_id, role, email) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (company_id, user_id) DO UPDATE SET role = EXCLUDED.role, "
        "email = coalesce(EXCLUDED.email, memberships.email)",
        (tx.company_id, user_id, role, email),
    )


async def member_role(tx: TenantTx, user_id: str) -> Role | None:
    """The user's role in the transaction's company, or None if they are not a member (nobody
    is of a deleted company: its deletion removed them, and ``deleted_at`` says so again)."""
    row = await tx.one(
        "SELECT m.role FROM memberships AS m JOIN companies AS c ON c.id = m.company_id "
        "WHERE m.company_id = %s AND m.user_id = %s AND c.deleted_at IS NULL",
        (tx.company_id, user_id),
    )
    return row[0] if row else None


async def all_ids(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> list[UUID]:
    """Every company's id, for maintenance that walks them one tenant transaction at a time
    (through the owner's ``company_ids()``: the app role sees no company outside a tenant)."""
    rows = await (await conn.execute("SELECT company_ids()")).fetchall()
    return [row[0] for row in rows]  # type: ignore[misc]


@dataclass(frozen=True)
class Membership:
    company_id: UUID
    name: str
    role: Role


async def member_companies(db: Database, user_id: str) -> list[Membership]:
    """The companies ``user_id`` belongs to, with its role in each (the ``member_directory``
    policies of migration 0010 admit them: this transaction sets ``app.member_id`` and no
    company). Pass only a verified caller's id."""
    async with db.directory(user_id) as conn:
        cur = await conn.execute(
            "SELECT m.company_id, c.name, m.role FROM memberships AS m "
            "JOIN companies AS c ON c.id = m.company_id WHERE m.user_id = %s "
            "ORDER BY c.name, c.id LIMIT 1000",
            (user_id,),
        )
        return [Membership(r[0], r[1], r[2]) for r in await cur.fetchall()]
