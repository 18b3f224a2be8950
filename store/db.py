"""Connections and the tenant context.

A tenant is set per *transaction* with ``set_config(..., true)``, never per session, so a
pooled connection cannot carry one company's context into the next company's work. Every
function that reads or writes a tenant's rows takes a ``TenantTx``, which only exists inside
such a transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg.rows import TupleRow, class_row
from psycopg_pool import ConnectionPool

from store.errors import NoTenantContext, StoreUnavailable

Params = Sequence[Any] | dict[str, Any] | None
T = TypeVar("T")


class TenantTx:
    """One transaction with one company's context set on it."""

    __slots__ = ("company_id", "conn")

    def __init__(self, conn: psycopg.Connection[TupleRow], company_id: UUID) -> None:
        if not isinstance(company_id, UUID):
            raise NoTenantContext("a tenant transaction needs a company id")
        self.conn = conn
        self.company_id = company_id

    def execute(self, sql: str, params: Params = None) -> psycopg.Cursor[TupleRow]:
        return self.conn.execute(sql, params)

    def one(self, sql: str, params: Params = None) -> tuple[Any, ...] | None:
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        return self.execute(sql, params).fetchall()

    def rows(self, cls: type[T], sql: str, params: Params = None) -> list[T]:
        """Rows as ``cls`` instances, built from the columns by name."""
        with self.conn.cursor(row_factory=class_row(cls)) as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def first(self, cls: type[T], sql: str, params: Params = None) -> T | None:
        """The first row as a ``cls`` instance, or None if there is none."""
        with self.conn.cursor(row_factory=class_row(cls)) as cur:
            cur.execute(sql, params)
            return cur.fetchone()


class BatchTx:
    """One transaction that works for several companies in turn (the audit log writer).

    ``tenant()`` switches the transaction's context; rows of the previous company stop
    being visible at once, since the policies read the setting on every statement.
    """

    def __init__(self, conn: psycopg.Connection[TupleRow]) -> None:
        self.conn = conn

    def tenant(self, company_id: UUID) -> TenantTx:
        _set_tenant(self.conn, company_id)
        return TenantTx(self.conn, company_id)


def _set_tenant(conn: psycopg.Connection[TupleRow], company_id: UUID) -> None:
    if not isinstance(company_id, UUID):
        raise NoTenantContext("a tenant transaction needs a company id")
    conn.execute("SELECT set_config('app.company_id', %s, true)", (str(company_id),))


class Database:
    """The app's connection pool, as the app role (neither owner nor BYPASSRLS)."""

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        name: str = "app",
        timeout: float = 5.0,
    ):
        """``timeout``: how long a caller waits for a connection before ``StoreUnavailable``."""
        self.pool = ConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            open=False,
            name=name,
            timeout=timeout,
            kwargs={"autocommit": True, "connect_timeout": 5},
        )

    def open(self, *, wait: bool = True, timeout: float = 10.0) -> Database:
        self.pool.open(wait=wait, timeout=timeout)
        return self

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def tenant(self, company_id: UUID) -> Iterator[TenantTx]:
        """A transaction scoped to ``company_id``; committed when the block ends cleanly."""
        with self._transaction() as conn:
            _set_tenant(conn, company_id)
            yield TenantTx(conn, company_id)

    @contextmanager
    def batch(
        self, *, prepare: Callable[[psycopg.Connection[TupleRow]], None] | None = None
    ) -> Iterator[BatchTx]:
        """A transaction for several companies in turn. ``prepare`` runs on the connection
        first, outside the transaction (its effects are committed whatever happens next)."""
        with self._transaction(prepare) as conn:
            yield BatchTx(conn)

    @contextmanager
    def _transaction(
        self, prepare: Callable[[psycopg.Connection[TupleRow]], None] | None = None
    ) -> Iterator[psycopg.Connection[TupleRow]]:
        try:
            with self.pool.connection() as conn:
                if prepare is not None:
                    prepare(conn)
                with conn.transaction():
                    yield conn
        except psycopg.OperationalError as exc:  # includes the pool's PoolTimeout
            raise StoreUnavailable(f"Postgres is unavailable: {type(exc).__name__}") from exc

    def ping(self) -> None:
        with self._transaction() as conn:
            conn.execute("SELECT 1")
