"""Trivial one-step quests per second through ingress -> workers -> audit log, beside raw
Dramatiq no-op throughput on the same Redis: our 2 worker processes (each one event loop)
beside Dramatiq's own worker, 2 processes x 8 threads.

Both sides include their producer: quests are submitted over HTTP by 16 concurrent clients
(each with a valid token, to one ingress process); no-op messages are sent by one process.
A quest counts when it is `succeeded` and both its audit rows are in activity_log.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import httpx
import psycopg
import redis

from bench.noop_actor import COUNTER, QUEUE
from bench.stack import BIN, Stack, stack
from messages.transport import build_broker
from system2.procs import Proc


def raw_dramatiq(s: Stack, n: int) -> float:
    env = s.env(
        dramatiq_worker_timeout=str(s.settings.worker_poll_ms),
        PYTHONPATH=str(Path(__file__).parents[1]),
    )
    proc = Proc(
        "noop-workers",
        [
            str(BIN / "python"),
            "-m",
            "dramatiq",
            "bench.noop_actor:setup",
            "--processes",
            "2",
            "--threads",
            "8",
        ],
        env=env,
        log_path=s.logs / "noop.log",
    ).start()
    try:
        r = redis.Redis.from_url(s.settings.redis_url)
        broker = build_broker(s.settings.redis_url)
        import dramatiq

        time.sleep(3)  # the no-op workers have no beacon; give them time to boot
        message = dramatiq.Message(
            queue_name=QUEUE, actor_name="noop", args=(0,), kwargs={}, options={}
        )
        t0 = time.perf_counter()
        for i in range(n):
            broker.enqueue(message.copy(args=(i,)))
        while int(r.get(COUNTER) or 0) < n:
            time.sleep(0.01)
        return n / (time.perf_counter() - t0)
    finally:
        proc.stop()


def quests(s: Stack, n: int, clients: int) -> float:
    s.start_claude()
    s.start_workers(2)
    s.start_ingress()
    company, token = s.company()
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{s.ingress_url}/v1/companies/{company}/quests"
    per_client = n // clients
    errors: list[str] = []

    def submit() -> None:
        with httpx.Client(timeout=30) as http:
            for _ in range(per_client):
                resp = http.post(url, json={"goal": "[script:answer] ping"}, headers=headers)
                if resp.status_code != 202:
                    errors.append(f"{resp.status_code} {resp.text[:200]}")

    peak_rss = [0.0]
    sampling = threading.Event()

    def sample_rss() -> None:
        while not sampling.wait(0.2):
            peak_rss[0] = max([peak_rss[0], *s.worker_rss_mb()])

    threading.Thread(target=sample_rss, daemon=True).start()
    threads = [threading.Thread(target=submit) for _ in range(clients)]
    total = per_client * clients
    with psycopg.connect(s.settings.admin_database_url, autocommit=True) as admin:
        cpu_before = cpu_seconds(s)
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        submitted = time.perf_counter() - t0
        while True:
            done = admin.execute(
                "SELECT count(*) FROM quests WHERE status = 'succeeded'"
            ).fetchone()[0]
            audited = admin.execute("SELECT count(*) FROM activity_log").fetchone()[0]
            if done >= total and audited >= 2 * total:
                break
            if errors:
                raise SystemExit(f"submit errors: {errors[:3]}")
            time.sleep(0.02)
        elapsed = time.perf_counter() - t0
        cpu_after = cpu_seconds(s)
    sampling.set()
    print(f"  submitted {total} in {submitted:.2f}s ({total / submitted:.0f}/s over HTTP)")
    print(f"  CPU per quest, during the run: {cpu_per_quest(cpu_before, cpu_after, total)}")
    print(f"  peak RSS of a worker process: {peak_rss[0]:.0f} MB (target <= 200)")
    return total / elapsed


def cpu_seconds(s: Stack) -> dict[str, float]:
    """CPU seconds so far of each process of the stack (with its children), and Postgres's."""
    import psutil

    used = {}
    for name, proc in s.procs.items():
        p = psutil.Process(proc.pid)
        used[name] = sum(sum(x.cpu_times()[:2]) for x in [p, *p.children(recursive=True)])
    used["postgres"] = sum(
        sum(x.cpu_times()[:2]) for x in psutil.process_iter() if x.name().startswith("postgres")
    )
    return used


def cpu_per_quest(before: dict[str, float], after: dict[str, float], total: int) -> str:
    return ", ".join(
        f"{name} {1000 * (after[name] - before.get(name, 0.0)) / total:.2f} ms" for name in after
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quests", type=int, default=2000)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--clients", type=int, default=16)
    args = ap.parse_args()
    with stack() as s:
        raw = raw_dramatiq(s, args.messages)
        print(
            f"raw Dramatiq no-op: {raw:,.0f} msgs/s ({args.messages} messages, 2 processes x 8 threads)"
        )
        ours = quests(s, args.quests, args.clients)
        print(
            f"quests ingress->worker->audit: {ours:,.0f} quests/s ({args.quests} one-step quests, 2 worker processes)"
        )
        print(f"ratio: {ours / raw:.3f} of raw (target >= 0.10)")


if __name__ == "__main__":
    main()
