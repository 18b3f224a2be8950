"""The audit log writer: audit events into ``activity_log``, in batches, exactly once.

Dramatiq hands each message to its own thread and acknowledges it when the actor returns, so
batching must not return before the rows are committed. This is group commit: threads queue
their events; one of them (the leader) writes everything queued in one transaction, then
wakes the others and hands leadership to the next waiting thread. Under load the batches
grow by themselves; an idle writer commits a lone event at once. A batch the database
refuses is written again entry by entry, so that a bad entry fails alone; one that fails
because the store is down fails every entry at once.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg

from messages import AuditEvent, BadMessage
from runtime.loop_thread import StoreRunner
from store import activity as activity_store
from store.activity import NewActivity
from workers.errors import WorkerError


@dataclass
class _Pending:
    company_id: UUID
    rows: list[NewActivity]
    wake: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    lead: bool = False
    error: Exception | None = None


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
    def __init__(self, store: StoreRunner, *, max_batch: int = 500) -> None:
        """``store``: this process's pool, through the loop that owns it."""
        self._store = store
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._leading = False
        self._staged: weakref.WeakSet[psycopg.AsyncConnection[Any]] = weakref.WeakSet()

    def write(self, company_id: UUID, events: list[AuditEvent]) -> None:
        """Block until ``events`` are committed (or known to be there already)."""
        me = _Pending(company_id, [to_row(e) for e in events])
        with self._lock:
            self._queue.append(me)
            me.lead = not self._leading
            self._leading = True
        try:
            while not me.done:
                if me.lead:
                    self._lead_once()
                else:
                    me.wake.wait()
                    me.wake.clear()
        except BaseException:  # e.g. Dramatiq's time limit, raised into this thread
            self._leave(me)
            raise
        if me.error is not None:
            raise me.error

    def _lead_once(self) -> None:
        with self._lock:
            batch: list[_Pending] = []
            size = 0
            while self._queue and (not batch or size + len(self._queue[0].rows) <= self._max_batch):
                batch.append(self._queue.pop(0))
                size += len(batch[-1].rows)
        interrupted = WriteInterrupted("the audit batch was interrupted; its rows may be missing")
        for p in batch:  # the outcome of an entry if the leader is stopped before it is known
            p.error = interrupted
        try:
            self._flush(batch)
        finally:  # even if the leader is stopped: else every later write() waits forever
            with self._lock:
                for p in batch:
                    p.done, p.lead = True, False
                self._hand_on()
            for p in batch:
                p.wake.set()

    def _hand_on(self) -> None:
        """Make the first waiting writer the leader (with ``_lock`` held)."""
        if self._queue:
            self._queue[0].lead = True
            self._queue[0].wake.set()
        else:
            self._leading = False

    def _leave(self, me: _Pending) -> None:
        """A writer stopped while it waited: take its entry back, and if it had just been
        made the leader, hand that on."""
        with self._lock:
            if me in self._queue:
                self._queue.remove(me)
            if me.lead and not me.done:
                me.lead = False
                self._hand_on()

    def _flush(self, batch: list[_Pending]) -> None:
        try:
            self._commit(batch)
        except (psycopg.IntegrityError, psycopg.DataError) as exc:  # an entry's rows are bad
            if len(batch) == 1:
                batch[0].error = _classify(exc, batch[0].company_id)
                return
            for p in batch:  # isolate the bad entry so that it alone fails
                self._flush([p])
        except Exception as exc:  # the store itself (e.g. StoreUnavailable): fail all at once
            for p in batch:
                p.error = exc
        else:
            for p in batch:
                p.error = None

    def _commit(self, batch: list[_Pending]) -> None:
        self._store.run(self._commit_on_loop(batch))

    async def _commit_on_loop(self, batch: list[_Pending]) -> None:
        """One transaction: COPY every row into the staging table, then one INSERT ... SELECT
        per company under that company's tenant context."""
        async with self._store.db.batch(prepare=self._prepare) as tx:
            rows = [(p.company_id, r) for p in batch for r in p.rows]
            await activity_store.stage(tx.conn, rows)
            async with tx.conn.pipeline():  # the per-company statements in one round trip
                for company_id in dict.fromkeys(p.company_id for p in batch):
                    await activity_store.insert_staged(await tx.tenant(company_id))

    async def _prepare(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if conn not in self._staged:
            await activity_store.create_stage(conn)
            self._staged.add(conn)


class WriteInterrupted(WorkerError):
    """The leader writing this entry's batch was stopped before the batch's outcome was
    known. The message is retried; a row already written is skipped by its key."""


def _classify(exc: psycopg.IntegrityError | psycopg.DataError, company_id: UUID) -> BadMessage:
    """A lone write the database refused: a permanent problem, so ``BadMessage`` (dead-letter)."""
    if isinstance(exc, psycopg.errors.ForeignKeyViolation):
        return BadMessage(f"company {company_id} does not exist")
    return BadMessage(f"audit rows refused by the database: {type(exc).__name__}")
