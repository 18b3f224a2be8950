"""Audit rows per second through the log writer, beside a raw psycopg COPY of the same rows
into a table of the same shape without row-level security (COPY is refused under RLS).

Figures from one run, same number of rows, same Postgres:
  raw COPY          one COPY ... FROM STDIN into bench_activity_copy (no RLS, no foreign key,
                    owner role)
  writer            AuditWriter.write as the app role (RLS on), one task per message of
                    --per-message events, up to --in-flight of them at once on one event loop,
                    as a worker process's consumer runs audit messages. Target >= 0.40 x raw
                    COPY (issue 17).
  writer via queue  (--via-queue) the `write_audit` actor in --processes worker processes
                    draining AuditBatch messages, from first enqueue to the last row committed

Raw COPY and the writer alternate for --rounds rounds and the medians are reported: on a
shared machine one round of either can be off by a factor of two.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import psycopg
import redis
from psycopg.types.json import Jsonb

from bench.stack import Stack, stack
from messages import Actor, ActorType, AuditBatch, AuditEvent, Envelope
from messages.transport import Publisher, build_broker
from runtime.queue_metrics import read_stats
from store import BatchTx, Database
from store.db import Prepare
from system2.procs import wait_workers
from workers.audit import FLUSHERS, AuditWriter

TED = Actor(type=ActorType.ted, id="ted")
TARGET = 0.40


def events(n: int, tag: str) -> list[AuditEvent]:
    now = datetime.now(UTC)
    origin = uuid.uuid4()
    return [
        AuditEvent(
            idempotency_key=f"{tag}:{i}",
            actor=TED,
            action="note.added",
            target=f"note:{i}",
            rationale="Writing the decision down so the team can find it.",
            originating_message_id=origin,
            quest_id=origin,
            data={"tool": "add_note", "chars": 42},
            occurred_at=now,
        )
        for i in range(n)
    ]


def raw_copy(admin_url: str, companies: list[uuid.UUID], evs: list[AuditEvent]) -> float:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        # Kept across rounds, as activity_log is: both grow by the same rows each round.
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_activity_copy (LIKE activity_log INCLUDING ALL)"
        )
        cols = (
            "company_id, occurred_at, actor_type, actor_id, action, target, rationale, "
            "originating_message_id, quest_id, payload, idempotency_key"
        )
        t0 = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor().copy(f"COPY bench_activity_copy ({cols}) FROM STDIN") as copy,
        ):
            for i, e in enumerate(evs):
                copy.write_row(
                    (
                        companies[i % len(companies)],
                        e.occurred_at,
                        e.actor.type.value,
                        e.actor.id,
                        e.action,
                        e.target,
                        e.rationale,
                        e.originating_message_id,
                        e.quest_id,
                        Jsonb(e.data),
                        e.idempotency_key,
                    )
                )
        return len(evs) / (time.perf_counter() - t0)


async def writer_on_loop(
    s: Stack, companies: list[uuid.UUID], evs: list[AuditEvent], args: argparse.Namespace
) -> tuple[float, int]:
    """Rows per second, and transactions committed, for ``evs`` written as messages of
    ``--per-message`` events, at most ``--in-flight`` at once, as the consumer runs them."""
    per, in_flight = args.per_message, args.in_flight
    db = CountedDatabase(s.settings.database_url, max_size=args.flushers + 1, name="bench")
    async with db:
        writer = AuditWriter(db, max_batch=args.max_batch, flushers=args.flushers)
        chunks = [evs[i : i + per] for i in range(0, len(evs), per)]
        messages = iter(range(len(chunks)))

        async def slot() -> None:
            """One of the consumer's in-flight slots: the next message once one is done."""
            for j in messages:
                await writer.write(companies[j % len(companies)], chunks[j])

        t0 = time.perf_counter()
        await asyncio.gather(*(slot() for _ in range(in_flight)))
        rate = len(evs) / (time.perf_counter() - t0)
        await writer.close()
    return rate, db.batches


class CountedDatabase(Database):
    """The app's pool, counting the writer's transactions (to report rows per commit)."""

    batches = 0

    @asynccontextmanager
    async def batch(self, *, prepare: Prepare | None = None) -> AsyncIterator[BatchTx]:
        self.batches += 1
        async with super().batch(prepare=prepare) as tx:
            yield tx


def via_queue(
    s: Stack, companies: list[uuid.UUID], evs: list[AuditEvent], per: int, processes: int
) -> float:
    proc = s.start("workers", "worker", "--processes", str(processes), "--queues", "audit")
    wait_workers(s.settings.redis_url, processes, proc=proc, timeout=60)
    publisher = Publisher(build_broker(s.settings.redis_url))
    messages = [
        Envelope[AuditBatch](
            company_id=companies[j % len(companies)],
            actor=TED,
            correlation_id=uuid.uuid4(),
            payload=AuditBatch(events=evs[i : i + per]),
        )
        for j, i in enumerate(range(0, len(evs), per))
    ]
    client = redis.Redis.from_url(s.settings.redis_url)
    count = "SELECT count(*) FROM activity_log"
    with psycopg.connect(s.settings.admin_database_url, autocommit=True) as admin:
        before = admin.execute(count).fetchone()[0]  # type: ignore[index]
        t0 = time.perf_counter()
        for m in messages:
            publisher.publish(m)
        # A message is acknowledged only after its rows are committed, so the queue being
        # empty with nothing held means every row is in. Polling Redis costs nothing; a
        # count(*) every 10 ms took ~10 ms of Postgres CPU each and slowed the writer.
        while any(q.ready or q.delayed or q.in_progress for q in read_stats(client, ["audit"])):
            time.sleep(0.01)
        elapsed = time.perf_counter() - t0
        written = admin.execute(count).fetchone()[0] - before  # type: ignore[index]
    if written != len(evs):
        raise SystemExit(f"the writer committed {written} rows of {len(evs)}")
    return len(evs) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=3, help="raw COPY and writer, alternating")
    ap.add_argument("--per-message", type=int, default=25, help="events per AuditBatch message")
    ap.add_argument("--in-flight", type=int, default=500, help="messages written at once")
    ap.add_argument(
        "--max-batch", type=int, help="rows per transaction at most (default: S2_AUDIT_BATCH_MAX)"
    )
    ap.add_argument("--flushers", type=int, default=FLUSHERS, help="batches committing at once")
    ap.add_argument("--via-queue", action="store_true", help="also drain them through workers")
    ap.add_argument("--processes", type=int, default=1, help="worker processes (--via-queue)")
    args = ap.parse_args()
    with stack() as s:
        if args.max_batch is None:  # what a worker process runs with
            args.max_batch = s.settings.audit_batch_max
        companies = [cid for cid, _ in s.companies([f"user{i}" for i in range(10)])]
        raws, writes, ratios = [], [], []
        for n in range(args.rounds):
            raw = raw_copy(s.settings.admin_database_url, companies, events(args.rows, f"c{n}"))
            direct, commits = asyncio.run(
                writer_on_loop(s, companies, events(args.rows, f"w{n}"), args)
            )
            raws.append(raw)
            writes.append(direct)
            ratios.append(direct / raw)
            print(
                f"round {n + 1}: raw COPY {raw:,.0f} rows/s, writer {direct:,.0f} rows/s "
                f"in {commits} transactions = {direct / raw:.2f}"
            )
        raw, direct, ratio = (statistics.median(v) for v in (raws, writes, ratios))
        print(f"raw COPY (no RLS): {raw:,.0f} rows/s (median of {args.rounds})")
        print(
            f"audit writer, {args.in_flight} messages in flight on one loop, "
            f"{args.per_message} events a message, {args.flushers} flusher(s) of up to "
            f"{args.max_batch} rows: {direct:,.0f} rows/s; median ratio {ratio:.2f} of raw COPY "
            f"(target >= {TARGET:.2f}: {'met' if ratio >= TARGET else 'NOT met'})"
        )
        if args.via_queue:
            queued = via_queue(
                s, companies, events(args.rows, "queued"), args.per_message, args.processes
            )
            print(
                f"audit writer via the queue ({args.processes} worker process(es)), "
                f"{args.per_message} events a message: {queued:,.0f} rows/s "
                f"= {queued / raw:.2f} of the median raw COPY"
            )


if __name__ == "__main__":
    main()
