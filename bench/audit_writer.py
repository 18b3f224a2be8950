"""Audit rows per second through the log writer, beside a raw psycopg COPY of the same rows
into a table of the same shape without row-level security (COPY is refused under RLS).

Three figures from one run, same rows, same Postgres:
  raw COPY          one COPY ... FROM STDIN into bench_activity_copy (no RLS, owner role)
  writer            AuditWriter.write from 8 threads as the app role (RLS on), batches of --per-message
  writer via queue  the `write_audit` actor in 2 worker processes x --threads draining AuditBatch
                    messages of --per-message events, from first enqueue to the last row committed
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from datetime import UTC, datetime

import psycopg
import redis
from psycopg.types.json import Jsonb

from bench.stack import Stack, stack
from messages import Actor, ActorType, AuditBatch, AuditEvent, Envelope
from messages.transport import Publisher, build_broker
from runtime.loop_thread import LoopThread, StoreRunner
from runtime.queue_metrics import read_stats
from store import Database
from workers.audit import AuditWriter

TED = Actor(type=ActorType.ted, id="ted")


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
        conn.execute("CREATE TABLE bench_activity_copy (LIKE activity_log INCLUDING ALL)")
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


def writer_direct(s: Stack, companies: list[uuid.UUID], evs: list[AuditEvent], per: int) -> float:
    # As in a worker process: the writer's threads hand their batches to the loop that owns
    # the pool.
    loop = LoopThread("bench-store").start()
    db = Database(s.settings.database_url, min_size=8, max_size=10)
    loop.run(db.open())
    writer = AuditWriter(StoreRunner(db, loop))
    chunks = [evs[i : i + per] for i in range(0, len(evs), per)]
    threads_n = 8

    def work(k: int) -> None:
        for j in range(k, len(chunks), threads_n):
            writer.write(companies[j % len(companies)], chunks[j])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(threads_n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rate = len(evs) / (time.perf_counter() - t0)
    loop.run(db.close())
    loop.stop()
    return rate


def via_queue(
    s: Stack, companies: list[uuid.UUID], evs: list[AuditEvent], per: int, threads: int
) -> float:
    s.start_workers(2, threads, "audit")
    publisher = Publisher(build_broker(s.settings.redis_url))
    messages = []
    for j, i in enumerate(range(0, len(evs), per)):
        messages.append(
            Envelope[AuditBatch](
                company_id=companies[j % len(companies)],
                actor=TED,
                correlation_id=uuid.uuid4(),
                payload=AuditBatch(events=evs[i : i + per]),
            )
        )
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
    ap.add_argument("--per-message", type=int, default=25, help="events per AuditBatch message")
    ap.add_argument("--threads", type=int, default=32, help="threads per audit worker process")
    args = ap.parse_args()
    with stack() as s:
        companies = [cid for cid, _ in s.companies([f"user{i}" for i in range(10)])]
        raw = raw_copy(s.settings.admin_database_url, companies, events(args.rows, "copy"))
        print(f"raw COPY (no RLS): {raw:,.0f} rows/s")
        direct = writer_direct(s, companies, events(args.rows, "direct"), args.per_message)
        print(
            f"audit writer, 8 threads, {args.per_message} events a batch: {direct:,.0f} rows/s "
            f"= {direct / raw:.2f} of raw COPY"
        )
        queued = via_queue(
            s, companies, events(args.rows, "queued"), args.per_message, args.threads
        )
        print(
            f"audit writer via Dramatiq (2 x {args.threads}), {args.per_message} events a message: {queued:,.0f} rows/s "
            f"= {queued / raw:.2f} of raw COPY (target >= 0.40)"
        )


if __name__ == "__main__":
    main()
