"""In flight achieved by one worker process whose messages only wait (as a quest step waits
on Claude): Dramatiq's worker, a thread per message, beside the event-loop consumer
(``workers.consumer``), in the same run on the same Redis.

N messages, each waiting H seconds, are queued first; then one worker process starts and
drains them. "Achieved in flight" = N x H / drain time. Peak RSS is the whole worker's
(parent included); Redis connections are those its processes hold at the peak.

    python -m bench.consumption                 # full: 1,000 and 2,000 messages x 8 s
    python -m bench.consumption --small         # CI size
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import psutil
import redis

from bench.waiting_actors import ACTOR, DONE, QUEUE
from messages.transport import build_broker
from system2.scratch import scratch_redis

ROOT = Path(__file__).parents[1]


@dataclass
class Run:
    model: str
    messages: int
    hold_s: float
    drained_s: float
    peak_rss_mb: float
    redis_connections: int

    @property
    def achieved(self) -> float:
        return self.messages * self.hold_s / self.drained_s

    def row(self) -> str:
        return (
            f"| {self.model} | {self.messages:,} x {self.hold_s:g} s | {self.drained_s:.1f} s | "
            f"{self.achieved:.0f} | {self.peak_rss_mb:.0f} MB | {self.redis_connections} |"
        )


def publish(url: str, n: int) -> None:
    broker = build_broker(url, middleware=[])
    broker.declare_queue(QUEUE)
    for i in range(n):
        broker.enqueue(
            dramatiq.Message(queue_name=QUEUE, actor_name=ACTOR, args=(i,), kwargs={}, options={})
        )
    broker.close()


def tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def measure(
    proc: subprocess.Popen[bytes], url: str, n: int, timeout_s: float
) -> tuple[float, float, int]:
    r = redis.Redis.from_url(url)
    root = psutil.Process(proc.pid)
    started = time.monotonic()
    peak_rss, peak_conns = 0.0, 0
    while int(r.get(DONE) or 0) < n:
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"{r.get(DONE)} of {n} done in {timeout_s:.0f} s")
        rss, conns = 0, 0
        for p in tree(root):
            try:
                rss += p.memory_info().rss
                conns += sum(
                    1 for c in p.net_connections("tcp") if c.raddr and c.raddr.port == 6379
                )
            except psutil.NoSuchProcess:
                continue
        peak_rss, peak_conns = max(peak_rss, rss / 2**20), max(peak_conns, conns)
        time.sleep(0.2)
    return time.monotonic() - started, peak_rss, peak_conns


@contextmanager
def started(argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(model: str, url: str, n: int, hold: float, argv: list[str], timeout_s: float) -> Run:
    r = redis.Redis.from_url(url)
    r.flushdb()
    publish(url, n)
    env = {**os.environ, "S2_REDIS_URL": url, "BENCH_HOLD_S": str(hold), "PYTHONPATH": str(ROOT)}
    with started(argv, env) as proc:
        drained, rss, conns = measure(proc, url, n, timeout_s)
    return Run(model, n, hold, drained, rss, conns)


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="CI size: 200 messages x 2 s")
    args = parser.parse_args(argv)
    sizes = [(200, 2.0)] if args.small else [(1_000, 8.0), (2_000, 8.0)]
    threads = 128
    python = sys.executable
    print(
        "| model | messages x wait | drained in | achieved in flight | peak RSS | Redis connections |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    with scratch_redis(os.environ.get("S2_REDIS_URL", "redis://127.0.0.1:6379/0")) as url:
        for n, hold in sizes:
            dramatiq_argv = [
                python,
                "-m",
                "dramatiq",
                "bench.waiting_actors:setup",
                "--processes",
                "1",
                "--threads",
                str(threads),
            ]
            ours = [python, "-m", "bench.waiting_actors", url, "1000"]
            base = run(
                f"Dramatiq, 1 process x {threads} threads",
                url,
                n,
                hold,
                dramatiq_argv,
                timeout_s=n * hold / threads * 3 + 60,
            )
            print(base.row(), flush=True)
            new = run("event loop, in flight 1,000", url, n, hold, ours, timeout_s=n * hold + 60)
            print(new.row(), flush=True)
            print(
                f"ratio (event loop / Dramatiq threads): {new.achieved / base.achieved:.1f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
