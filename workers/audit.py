"""The audit log writer: audit events into ``activity_log``, in batches, exactly once.

A worker process runs each audit message as a task on its event loop (``workers.consumer``,
up to its in-flight bound at once) and acknowledges the message only once the task has
returned, so ``write`` must not return before its rows are committed. This is group commit
on the loop: a writer queues its rows with a future and waits on that future; a flusher
task, started when rows are queued, takes up to ``max_batch`` rows at a time, commits them
in one transaction (COPY into a staging table, then one INSERT ... SELECT per company under
that company's tenant context) and resolves their writers' futures. Under load the batches
grow by themselves (the writers that queue while a batch commits make the next); an idle
writer's lone event is committed at once. A flusher ends when the queue is empty.

Up to ``flushers`` (default 2) batches commit at once, each on its own pooled connection:
while one waits on Postgres (its INSERT, its commit), the next one's rows are formatted and
sent, so the loop and the database work side by side instead of in turn. That is what
``bench/audit_writer.py`` measures against a raw COPY of the same rows.

- **A bad entry fails alone.** A batch the database refuses (``IntegrityError``,
  ``DataError``: a company that does not exist, a value out of range) is split in halves
  that are written again, and so on down to the entry at fault, which fails with
  ``BadMessage`` (dead-lettered); every other entry commits.
- **An outage fails a batch at once.** A batch that fails because the store is down fails
  every entry in it with that error (retried later), after one wait for a connection, not
  one wait per entry.
- **A writer cancelled while it waits** (its time limit, shutdown) leaves at once and the
  other writers are untouched. Its rows are dropped if no batch has taken them yet; a batch
  that has taken them commits all the same, since the commit runs in a flusher's task, not
  the writer's. Its message is delivered again, and a row already written is skipped by
  its idempotency key.
- **A cut flusher leaves no writer waiting.** If a flusher is cancelled (``close`` past its
  grace, the loop's end), the entries of the batch it was committing and every entry still
  queued fail with ``WriteInterrupted``, which is retried; that batch's transaction is
  rolled back. The next ``write`` starts a new flusher.
- **No deadlock between batches.** Rows are inserted in one order (company, then key), so
  transactions writing the same keys at once (two flushers, two processes, a redelivered
  message) wait on each other in turn, never in a cycle.
- **Shutdown** is ``close``: no new writes, the queued batches get a grace to commit, then
  the flushers are cut.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from messages import AuditEvent, BadMessage
from runtime.tasks import cancel_and_wait
from store import Database
from store import activity as activity_store
from store.activity import NewActivity
from workers.errors import WorkerError

CLOSE_GRACE_S = 5.0
FLUSHERS = 2


@dataclass(eq=False)
class _Pending:
    """One writer's rows, and the future it waits on for their outcome."""

    company_id: UUID
    rows: list[NewActivity]
    outcome: asyncio.Future[None]

    def settle(self, error: BaseException | None) -> None:
        """Hand the writer its outcome, unless it has left (its future was cancelled)."""
        if self.outcome.done():
            return
        if error is None:
            self.outcome.set_result(None)
        else:
            self.outcome.set_exception(error)


def to_row(event: AuditEvent) -> NewActivity:
    return NewActivity(
        idempotency_key=event.idempotency_key,
        occurred_at=event.occurred_at,
        actor_type=event.actor.type.value,
        actor_id=event.actor.id,
        action=event.action,
        target=event.target,
        rationale=event.rationale,
        originating_message_id=event.originating_message_id,
        quest_id=event.quest_id,
        payload=event.data,
    )


class AuditWriter:
    def __init__(self, db: Database, *, max_batch: int = 500, flushers: int = FLUSHERS) -> None:
        """``db``: this process's pool, opened on the loop the writers run on. ``max_batch``:
        the most rows one transaction commits (a lone bigger entry is committed whole).
        ``flushers``: how many batches may commit at once, each on a connection of its own."""
        if flushers < 1:
            raise ValueError("an audit writer needs at least one flusher")
        self._db = db
        self._max_batch = max_batch
        self._max_flushers = flushers
        self._queue: deque[_Pending] = deque()
        self._flushers: set[asyncio.Task[None]] = set()
        self._closed = False
        self._staged: weakref.WeakSet[psycopg.AsyncConnection[Any]] = weakref.WeakSet()

    async def write(self, company_id: UUID, events: Sequence[AuditEvent]) -> None:
        """Return once ``events`` are committed (or known to be there already)."""
        if self._closed:
            raise WriteInterrupted("the audit writer is closed: the process is stopping")
        if not events:
            return
        me = _Pending(
            company_id, [to_row(e) for e in events], asyncio.get_running_loop().create_future()
        )
        self._queue.append(me)
        self._ensure_flusher()
        # A cancel of this writer cancels only its future: a flusher then skips the entry,
        # or has already taken it into a batch that commits whatever happens here.
        await me.outcome

    async def close(self, *, grace_s: float = CLOSE_GRACE_S) -> None:
        """Refuse new writes; give what is queued ``grace_s`` to commit, then cut the
        flushers (their writers get ``WriteInterrupted``). Called once the consumer has
        drained, before the pool closes."""
        self._closed = True
        flushers = list(self._flushers)
        if not flushers:
            return
        try:  # asyncio.wait: its timeout leaves the flushers running, the finally cuts them
            await asyncio.wait(flushers, timeout=grace_s)
        finally:
            await cancel_and_wait(flushers)

    def _ensure_flusher(self) -> None:
        """Start a flusher if fewer than ``flushers`` run: while one waits on its commit,
        the next batch is formatted and sent on another connection."""
        # A flusher that has just ended may still be in the set (its done callback comes
        # later): count the live ones, or a write could be left with none to serve it.
        if sum(not t.done() for t in self._flushers) < self._max_flushers:
            # A context of its own: the task serves every writer, not the first one's message
            # (whose log bindings it would otherwise carry).
            task = asyncio.create_task(
                self._flush_queued(), name="audit writer", context=contextvars.Context()
            )
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)

    async def _flush_queued(self) -> None:
        batch: list[_Pending] = []
        try:
            while batch := self._take_batch():
                await self._flush(batch)
        finally:  # entries left unsettled only if this task was cut: none may wait forever
            for p in [*batch, *self._queue]:
                p.settle(WriteInterrupted("the audit writer was stopped before this commit"))
            self._queue.clear()

    def _take_batch(self) -> list[_Pending]:
        """The oldest queued entries, up to ``max_batch`` rows (at least one entry);
        entries whose writers have left are dropped."""
        batch: list[_Pending] = []
        size = 0
        while self._queue:
            first = self._queue[0]
            if first.outcome.done():
                self._queue.popleft()
                continue
            if batch and size + len(first.rows) > self._max_batch:
                break
            batch.append(self._queue.popleft())
            size += len(first.rows)
        return batch

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            await self._commit(batch)
        except (psycopg.IntegrityError, psycopg.DataError) as exc:  # an entry's rows are bad
            if len(batch) == 1:
                batch[0].settle(_classify(exc, batch[0].company_id))
                return
            half = len(batch) // 2  # isolate the bad entries so that they alone fail
            await self._flush(batch[:half])
            await self._flush(batch[half:])
        except Exception as exc:  # the store itself (e.g. StoreUnavailable): fail all at once
            for p in batch:
                p.settle(exc)
        else:
            for p in batch:
                p.settle(None)

    async def _commit(self, batch: list[_Pending]) -> None:
        """One transaction: COPY every row into the staging table, then one INSERT ... SELECT
        per company under that company's tenant context.

        Rows go in by company, then key: two transactions inserting the same keys (batches
        committing at once, or another process's) then wait on each other in one order,
        never in a cycle (a deadlock Postgres would break by failing one of them)."""
        rows = sorted(
            ((p.company_id, r) for p in batch for r in p.rows),
            key=lambda row: (row[0], row[1].idempotency_key),
        )
        async with self._db.batch(prepare=self._prepare) as tx:
            await activity_store.stage(tx.conn, rows)
            async with tx.conn.pipeline():  # the per-company statements in one round trip
                for company_id in sorted({p.company_id for p in batch}):
                    await activity_store.insert_staged(await tx.tenant(company_id))

    async def _prepare(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if conn not in self._staged:
            await activity_store.create_stage(conn)
            self._staged.add(conn)


class WriteInterrupted(WorkerError):
    """The writer was stopped before this entry's batch was known to be committed (or it is
    closed). The message is retried; a row already written is skipped by its key."""


def _classify(exc: psycopg.IntegrityError | psycopg.DataError, company_id: UUID) -> BadMessage:
    """A lone write the database refused: a permanent problem, so ``BadMessage`` (dead-letter)."""
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        return BadMessage(f"company {company_id} does not exist")
    return BadMessage(f"audit rows refused by the database: {type(exc).__name__}")
