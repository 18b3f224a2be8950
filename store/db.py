"""Connections and the tenant context.

A tenant is set per *transaction* with ``set_config(..., true)``, never per session, so a
pooled connection cannot carry one company's context into the next company's work. Every
function that reads or writes a tenant's rows takes a ``TenantTx``, which only exists inside
such a transaction.

One async form, used by the workers and the ingress on their event loops; a transaction
holds a pooled connection only while it runs, so a step waiting on Claude holds none. The
pool belongs to the loop that opened it: code without a loop of its own (the CLI, tests)
runs its work through one (``asyncio.run``, or a runner that owns a loop).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg.rows import TupleRow, class_row
from psycopg_pool import AsyncConnectionPool

from store.errors import NoTenantContext, StoreUnavailable

Params = Sequence[Any] | dict[str, Any] | None
T = TypeVar("T")


class TenantTx:
    """One transaction with one company's context set on it."""

    __slots__ = ("company_id", "conn")

    def __init__(self, conn: psycopg.AsyncConnection[TupleRow], company_id: UUID) -> None:
        if not isinstance(company_id, UUID):
            raise NoTenantContext("a tenant transaction needs a company id")
        self.conn = conn
        self.company_id = company_id

    async def execute(self, sql: str, params: Params = None) -> psycopg.AsyncCursor[TupleRow]:
        return await self.conn.execute(sql, params)

    async def one(self, sql: str, params: Params = None) -> tuple[Any, ...] | None:
        return await (await self.execute(sql, params)).fetchone()

    async def all(self, sql: str, params: Params = None) -> list[tuple[Any, ...]]:
        return await (await self.execute(sql, params)).fetchall()

    async def rows(self, cls: type[T], sql: str, params: Params = None) -> list[T]:
        """Rows as ``cls`` instances, built from the columns by name."""
        async with self.conn.cursor(row_factory=class_row(cls)) as cur:
            await cur.execute(sql, params)
            return await cur.fetchall()

    async def first(self, cls: type[T], sql: str, params: Params = None) -> T | None:
        """The first row as a ``cls`` instance, or None if there is none."""
        async with self.conn.cursor(row_factory=class_row(cls)) as cur:
            await cur.execute(sql, params)
            return await cur.fetchone()


class BatchTx:
    """One transaction that works for several companies in turn (the audit log writer).

    ``tenant()`` switches the transaction's context; rows of the previous company stop
    being visible at once, since the policies read the setting on every statement.
    """

    def __init__(self, conn: psycopg.AsyncConnection[TupleRow]) -> None:
        self.conn = conn

    async def tenant(self, company_id: UUID) -> TenantTx:
        await _set_tenant(self.conn, company_id)
        return TenantTx(self.conn, company_id)


async def _set_tenant(conn: psycopg.AsyncConnection[TupleRow], company_id: UUID) -> None:
    if not isinstance(company_id, UUID):
        raise NoTenantContext("a tenant transaction needs a company id")
    await conn.execute("SELECT set_config('app.company_id', %s, true)", (str(company_id),))


_BEGIN_AS = b"BEGIN; SELECT set_config('app.company_id', '%s', true)"

Prepare = Callable[[psycopg.AsyncConnection[TupleRow]], Awaitable[None]]


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
        self.pool = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            open=False,
            name=name,
            timeout=timeout,
            # application_name: who holds each connection, in pg_stat_activity
            kwargs={
                "autocommit": True,
                "connect_timeout": 5,
                "application_name": f"system2-{name}",
            },
        )

    async def open(self, *, wait: bool = True, timeout: float = 10.0) -> Database:
        await self.pool.open(wait=wait, timeout=timeout)
        return self

    async def close(self) -> None:
        await self.pool.close()

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @asynccontextmanager
    async def tenant(self, company_id: UUID) -> AsyncIterator[TenantTx]:
        """A transaction scoped to ``company_id``; committed when the block ends cleanly.

        It opens with one round trip, ``BEGIN`` and the tenant in one simple query, rather
        than psycopg's ``transaction()`` and a statement (two): a step runs a few of these,
        and each round trip is a write and a wake-up on a busy loop. The id is inlined: a
        UUID's canonical text is hex digits and dashes."""
        if not isinstance(company_id, UUID):
            raise NoTenantContext("a tenant transaction needs a company id")
        async with self.connection() as conn:
            tenant = str(UUID(int=company_id.int)).encode()  # canonical, whatever the type
            await conn.execute(_BEGIN_AS % tenant, prepare=False)
            try:
                yield TenantTx(conn, company_id)
            except BaseException:
                with suppress(psycopg.Error):  # a broken connection: the pool drops it
                    await conn.execute(b"ROLLBACK", prepare=False)
                raise
            await conn.execute(b"COMMIT", prepare=False)

    async def in_tenant(self, company_id: UUID, work: Callable[[TenantTx], Awaitable[T]]) -> T:
        """``work`` in one transaction scoped to ``company_id`` (for callers that hand a
        whole transaction to a loop: the CLI, tests)."""
        async with self.tenant(company_id) as tx:
            return await work(tx)

    @asynccontextmanager
    async def batch(self, *, prepare: Prepare | None = None) -> AsyncIterator[BatchTx]:
        """A transaction for several companies in turn. ``prepare`` runs on the connection
        first, outside the transaction (its effects are committed whatever happens next)."""
        async with self._transaction(prepare) as conn:
            yield BatchTx(conn)

    @asynccontextmanager
    async def _transaction(
        self, prepare: Prepare | None = None
    ) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
        async with self.connection() as conn:
            if prepare is not None:
                await prepare(conn)
            async with conn.transaction():
                yield conn

    @asynccontextmanager
    async def directory(self, user_id: str) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
        """A transaction that sees ``user_id``'s memberships across companies and nothing of
        any tenant (``companies.member_companies``)."""
        async with self._transaction() as conn:
            await conn.execute("SELECT set_config('app.member_id', %s, true)", (user_id,))
            yield conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
        """A pooled connection with no tenant set (autocommit), for the owner's functions
        that list across tenants (``companies.all_ids``, ``quests.company_of``)."""
        try:
            async with self.pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:  # includes the pool's PoolTimeout
            raise StoreUnavailable(f"Postgres is unavailable: {type(exc).__name__}") from exc

    async def ping(self) -> None:
        async with self._transaction() as conn:
            await conn.execute("SELECT 1")
