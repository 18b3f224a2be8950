"""Companies (the tenants) and their members."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from uuid import UUID

import psycopg

from store.db import TenantTx

Role = Literal["member", "admin"]
ROLES: tuple[Role, ...] = ("member", "admin")


@dataclass(frozen=True)
class Company:
    id: str
    name: str


async def create(tx: TenantTx, name: str) -> None:
    """Create the company whose id is the transaction's tenant."""
    await tx.execute("INSERT INTO companies (id, name) VALUES (%s, %s)", (tx.company_id, name))


async def get(tx: TenantTx) -> Company | None:
    row = await tx.one("SELECT id, name FROM companies WHERE id = %s", (tx.company_id,))
    return Company(str(row[0]), row[1]) if row else None


async def add_member(tx: TenantTx, user_id: str, role: Role) -> None:
    await tx.execute(
        "INSERT INTO memberships (company_id, user_id, role) VALUES (%s, %s, %s) "
        "ON CONFLICT (company_id, user_id) DO UPDATE SET role = EXCLUDED.role",
        (tx.company_id, user_id, role),
    )


async def member_role(tx: TenantTx, user_id: str) -> Role | None:
    """The user's role in the transaction's company, or None if they are not a member."""
    row = await tx.one(
        "SELECT role FROM memberships WHERE company_id = %s AND user_id = %s",
        (tx.company_id, user_id),
    )
    return row[0] if row else None


async def all_ids(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> list[UUID]:
    """Every company's id, for maintenance that walks them one tenant transaction at a time
    (through the owner's ``company_ids()``: the app role sees no company outside a tenant)."""
    rows = await (await conn.execute("SELECT company_ids()")).fetchall()
    return [row[0] for row in rows]  # type: ignore[misc]
