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


def create(tx: TenantTx, name: str) -> None:
    """Create the company whose id is the transaction's tenant."""
    tx.execute("INSERT INTO companies (id, name) VALUES (%s, %s)", (tx.company_id, name))


def get(tx: TenantTx) -> Company | None:
    row = tx.one("SELECT id, name FROM companies WHERE id = %s", (tx.company_id,))
    return Company(str(row[0]), row[1]) if row else None


def add_member(tx: TenantTx, user_id: str, role: Role) -> None:
    tx.execute(
        "INSERT INTO memberships (company_id, user_id, role) VALUES (%s, %s, %s) "
        "ON CONFLICT (company_id, user_id) DO UPDATE SET role = EXCLUDED.role",
        (tx.company_id, user_id, role),
    )


def member_role(tx: TenantTx, user_id: str) -> Role | None:
    """The user's role in the transaction's company, or None if they are not a member."""
    row = tx.one(
        "SELECT role FROM memberships WHERE company_id = %s AND user_id = %s",
        (tx.company_id, user_id),
    )
    return row[0] if row else None


def all_ids(conn: psycopg.Connection[tuple[object, ...]]) -> list[UUID]:
    """Every company's id, for maintenance that walks them one tenant transaction at a time
    (through the owner's ``company_ids()``: the app role sees no company outside a tenant)."""
    return [row[0] for row in conn.execute("SELECT company_ids()").fetchall()]  # type: ignore[misc]
