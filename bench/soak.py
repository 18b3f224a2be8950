"""Soak: quests that use the demo integration's tools while workers are killed and restarted.

Two worker groups (one process each) run N quests that each create a task at the demo
provider; every few seconds one group is killed with SIGKILL and started again. With
``--provider-hold 8 --rate 125`` about a thousand steps are in flight, each waiting on the
provider mid-mutation, when a process is killed. At the end
it prints quests completed / lost / duplicated mutations / duplicated audit rows / double
charges. Everything but the first must be 0, and the first must be N (exit code 1 if not).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

from bench.stack import BIN, Stack, stack
from store import Database
from system2.procs import Proc, free_port, wait_http, wait_workers
from vault import new_key_entry

# Kills every few seconds land on redelivered steps again and again, far beyond anything in
# production: the default poison bound (3 crashes of one step) would dead-letter innocent
# steps here, so the soak raises it; tests/test_crashes.py covers the bound itself.
SOAK_ENV = {
    "S2_BROKER_HEARTBEAT_MS": "5000",
    "S2_BROKER_MAINTENANCE_CHANCE": "1000000",
    "S2_MAX_STEP_CRASHES": "20",
}


@dataclass
class Figures:
    quests: int
    completed: int
    lost: int
    duplicated_mutations: int
    duplicated_audit_rows: int
    double_charges: int
    kills: int
    seconds: float
    unfinished: list[str]

    @property
    def ok(self) -> bool:
        return self.completed == self.quests and not (
            self.lost
            or self.duplicated_mutations
            or self.duplicated_audit_rows
            or self.double_charges
        )


def soak(
    s: Stack,
    quests: int,
    kill_every: float,
    deadline_s: float,
    rate: float,
    provider_hold_s: float = 0.3,
) -> Figures:
    provider_port = free_port()
    provider_url = f"http://127.0.0.1:{provider_port}"
    key = new_key_entry(datetime.now(UTC))
    extra = {"S2_VAULT_KEYS": key, "S2_DEMO_PROVIDER_URL": provider_url, **SOAK_ENV}
    provider = s.start("demo-provider", "demo-provider", "--port", str(provider_port))
    wait_http(provider_url + "/", proc=provider)
    s.start_claude()
    company, _ = s.company()
    connect = Proc(
        "connect",
        [str(BIN / "system2"), "integration", "connect", str(company), "demo"],
        env=s.env(**extra),
        log_path=s.logs / "connect.log",
    ).start()
    assert connect.popen is not None and connect.popen.wait(60) == 0, connect.output()

    groups = {name: start_group(s, name, extra) for name in ("a", "b")}
    wait_workers(s.settings.redis_url, 2, timeout=60)
    # Each task creation waits at the provider, so kills land mid-call too; a long wait and a
    # high rate keep many steps in flight in each process (rate x hold).
    httpx.post(
        provider_url + "/_faults",
        json={"delay_s": provider_hold_s, "paths": ["/api/v1/tasks"], "methods": ["POST"]},
    )
    t0 = time.monotonic()
    ids: list[str] = []
    submitter = threading.Thread(
        target=lambda: asyncio.run(submit_all(s, company, quests, rate, ids))
    )
    submitter.start()
    kills = 0
    with psycopg.connect(s.settings.admin_database_url, autocommit=True) as admin:
        next_kill = time.monotonic() + kill_every
        while time.monotonic() - t0 < deadline_s and (
            submitter.is_alive() or open_quests(admin, ids)
        ):
            if time.monotonic() >= next_kill:
                name = random.choice(list(groups))
                groups[name].signal(signal.SIGKILL)
                assert groups[name].popen is not None
                groups[name].popen.wait(10)
                kills += 1
                groups[name] = start_group(s, f"{name}{kills}", extra)
                next_kill = time.monotonic() + kill_every
            time.sleep(0.2)
        seconds = time.monotonic() - t0
        return measure(admin, provider_url, company, ids, kills, seconds)


def start_group(s: Stack, name: str, extra: dict[str, str]) -> Proc:
    return s.start(f"workers-{name}", "worker", "--processes", "1", **extra)


async def submit_all(s: Stack, company: uuid.UUID, n: int, rate: float, ids: list[str]) -> None:
    """The submitter thread's body, on a loop of its own (``asyncio.run``) with its pool."""
    from ingress.submit import QuestSpec, create_quest, enqueue_first_step
    from messages import Actor, ActorType
    from messages.transport import Publisher, build_broker

    actor = Actor(type=ActorType.operator, id="soak")
    broker = build_broker(s.settings.redis_url)
    async with Database(s.settings.database_url, max_size=2) as db:
        for i in range(n):
            await asyncio.sleep(1 / rate)
            async with db.tenant(company) as tx:
                quest, _ = await create_quest(
                    tx,
                    actor,
                    QuestSpec(goal=f"[script:tasks] soak task {i}", model="claude-sonnet-5-5"),
                )
            await enqueue_first_step(db, Publisher(broker), quest, actor)
            ids.append(str(quest.id))
    broker.close()


def open_quests(admin: psycopg.Connection[tuple[object, ...]], ids: list[str]) -> int:
    row = admin.execute(
        "SELECT count(*) FROM quests WHERE id = ANY(%s::uuid[]) AND status IN ('queued', 'running')",
        (ids,),
    ).fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


def measure(
    admin: psycopg.Connection[tuple[object, ...]],
    provider_url: str,
    company: uuid.UUID,
    ids: list[str],
    kills: int,
    seconds: float,
) -> Figures:
    time.sleep(3)  # the last audit batches
    completed = admin.execute(
        "SELECT count(*) FROM quests WHERE id = ANY(%s::uuid[]) AND status = 'succeeded'", (ids,)
    ).fetchone()[0]  # type: ignore[index]
    unfinished = [
        f"{quest} {status}: {reason}"
        for quest, status, reason in admin.execute(
            "SELECT id, status, reason FROM quests WHERE id = ANY(%s::uuid[]) "
            "AND status <> 'succeeded'",
            (ids,),
        )
    ]
    audit_dups = admin.execute(
        "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM activity_log "
        "WHERE company_id = %s AND action = 'task.created' GROUP BY quest_id) per_quest",
        (company,),
    ).fetchone()[0]  # type: ignore[index]
    double = admin.execute(
        "SELECT count(*) FROM (SELECT quest_id, step FROM charges WHERE company_id = %s "
        "AND status = 'settled' GROUP BY quest_id, step HAVING count(*) > 1) twice",
        (company,),
    ).fetchone()[0]  # type: ignore[index]
    stats = (
        httpx.get(provider_url + "/_stats").json()["accounts"].get(str(company), {"mutations": 0})
    )
    return Figures(
        quests=len(ids),
        completed=int(completed),
        lost=len(ids) - int(completed),
        duplicated_mutations=max(0, int(stats["mutations"]) - int(completed)),
        duplicated_audit_rows=int(audit_dups),
        double_charges=int(double),
        kills=kills,
        seconds=round(seconds, 1),
        unfinished=unfinished,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quests", type=int, default=200)
    ap.add_argument("--kill-every", type=float, default=4.0, help="seconds between kills")
    ap.add_argument("--deadline", type=float, default=280.0, help="seconds before giving up")
    ap.add_argument("--rate", type=float, default=1.0, help="quests submitted per second")
    ap.add_argument(
        "--provider-hold",
        type=float,
        default=0.3,
        help="seconds each task creation waits at the provider (1,000 in flight: "
        "--quests 2000 --rate 125 --provider-hold 8)",
    )
    args = ap.parse_args(argv)
    with stack() as s:
        figures = soak(
            s, args.quests, args.kill_every, args.deadline, args.rate, args.provider_hold
        )
        logs = Path(s.logs)
    print(
        f"quests {figures.quests}: completed {figures.completed} / lost {figures.lost} / duplicated mutations "
        f"{figures.duplicated_mutations} / duplicated audit rows {figures.duplicated_audit_rows} / "
        f"double charges {figures.double_charges}  ({figures.kills} workers killed, {figures.seconds} s)"
    )
    print(json.dumps(figures.__dict__), file=sys.stderr)
    if not figures.ok:
        for line in figures.unfinished:
            print(f"not succeeded: {line}")
        print(f"FAILED; process logs in {logs}", file=sys.stderr)
    return 0 if figures.ok else 1


if __name__ == "__main__":
    sys.exit(main())
