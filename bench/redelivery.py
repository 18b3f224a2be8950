"""Redelivery after kill -9: how long a step that was running in a killed worker waits before
another worker runs it again, with the broker settings the workers ship with.

Each round: one worker group holds a quest mid-Claude-call (the offline Claude holds its
reply), a second group is up, the first is killed with SIGKILL; the clock runs from the kill
to the step's second attempt (its new charge in Postgres). The quest is then cancelled and
the roles swap.
"""

from __future__ import annotations

import argparse
import signal
import time
from collections.abc import Callable

import psycopg
import redis

from bench.stack import Stack, add_company, stack, summary
from ingress.cancel_request import send_cancel
from ingress.submit import QuestSpec, create_quest, enqueue_first_step
from messages import Actor, ActorType
from messages.transport import Publisher, build_broker
from runtime.loop_thread import LoopThread, StoreRunner
from store import Database
from store import quests as quests_store
from system2.procs import Proc, wait_workers


def group(s: Stack, name: str) -> Proc:
    proc = s.start(name, "worker", "--processes", "1")
    return proc


def attempts(admin: psycopg.Connection[tuple[object, ...]], quest_id: str) -> int:
    row = admin.execute("SELECT count(*) FROM charges WHERE quest_id = %s", (quest_id,)).fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


def rounds(s: Stack, n: int) -> list[float]:
    s.start_claude()
    actor = Actor(type=ActorType.operator, id="bench")
    spec = QuestSpec(goal="[script:slow_notes] hold", model="claude-sonnet-5-5")
    broker = build_broker(s.settings.redis_url)
    client = redis.Redis.from_url(s.settings.redis_url)
    out: list[float] = []
    # A sync loop that kills processes and polls Postgres, and uses the store at a few
    # points each round: the pool lives on a loop thread for the whole run.
    loop = LoopThread("bench-store").start()
    db = Database(s.settings.database_url, max_size=2)
    loop.run(db.open())
    store = StoreRunner(db, loop)
    try:
        with psycopg.connect(s.settings.admin_database_url, autocommit=True) as admin:
            company, _ = store.run(add_company(db))
            running = group(s, "g0")
            wait_workers(s.settings.redis_url, 1, proc=running, timeout=60)
            for i in range(n):
                quest, _ = store(company, lambda tx: create_quest(tx, actor, spec))
                store.run(enqueue_first_step(db, Publisher(broker), quest, actor))
                qid = str(quest.id)
                _until(lambda qid=qid: attempts(admin, qid) == 1)
                spare = group(s, f"g{i + 1}")
                wait_workers(s.settings.redis_url, 2, proc=spare, timeout=60)
                running.signal(signal.SIGKILL)
                killed = time.monotonic()
                assert running.popen is not None
                running.popen.wait(10)
                _until(lambda qid=qid: attempts(admin, qid) == 2, timeout=90)
                out.append(time.monotonic() - killed)
                current = store(
                    company,
                    lambda tx, quest=quest: quests_store.request_cancel(
                        tx, quest.id, by="operator:bench", reason="measured"
                    ),
                )
                assert current is not None
                send_cancel(client, Publisher(broker), current, by=actor, reason="measured")
                _until(
                    lambda qid=qid: (
                        admin.execute("SELECT status FROM quests WHERE id = %s", (qid,)).fetchone()
                        == ("cancelled",)
                    )
                )
                running = spare
                print(f"  round {i + 1}: redelivered after {out[-1]:.1f} s", flush=True)
    finally:
        loop.run(db.close())
        loop.stop()
    broker.close()
    return out


def _until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting")
        time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--kills", type=int, default=20)
    args = ap.parse_args()
    with stack() as s:
        took = rounds(s, args.kills)
        print(
            f"redelivery after kill -9 (s): {summary(took)}  (target max <= 15; heartbeat "
            f"{s.settings.broker_heartbeat_ms} ms, maintenance chance {s.settings.broker_maintenance_chance}/1e6)"
        )


if __name__ == "__main__":
    main()
