"""Steps in flight in one worker process, end to end: quests queued over HTTP first, every
Claude call held ``hold`` seconds before its first byte by a stand-in, then one worker
process (``system2 worker --processes 1``) started to drain them.

"Achieved in flight" = quests x hold / drain time (from the process being ready to the last
quest ended). Beside it, sampled while it drains: the most steps waiting on Claude at once,
the peak RSS of the whole worker (its parent included), the most Postgres and Redis
connections it holds (by the names it gives them: ``system2-worker``, ``-control``, ``-audit``), its CPU per quest,
and every attempt that failed or was retried (there must be none). The thread-per-call model
this replaced is measured beside the event loop, in the same run and on the same Redis, by
``bench/consumption.py`` (the consumption model alone, without quests).

Last, the floor: the CPU one streamed Claude call costs the calling process with nothing
else in it (through the SDK, and as a bare request on the SDK's HTTP stack), and the most in
flight that cost alone allows: n quests held ``hold`` seconds drain in no less than
``hold + n x cost`` in one process. It shows how far a target on "achieved in flight" can be
met at all on this machine, whatever the rest of a step costs.

    python -m bench.capacity            # full: 1,000 and 2,000 quests x 8 s
    python -m bench.capacity --small    # CI size: 200 quests x 2 s
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import httpx2
import psutil
import psycopg
import redis
import uvicorn

from bench.stack import Stack, stack
from standins.offline_claude import Script, Text, Turn, create_app
from system2.procs import Proc, free_port, wait_http, wait_workers
from workers.claude import Claude, ClaudeRequest, Progress
from workers.claude_stream import ReplyBuilder, server_sent_events

TARGET_IN_FLIGHT = 900  # for 1,000 quests
TARGET_RSS_MB = 300
TARGET_PG = 20
TARGET_REDIS = 50
FLOOR_CONCURRENCY = 64  # calls at once while the floor is measured: one lane of connections
_HELLO = {"role": "user", "content": "[script:held] hello"}


@dataclass
class Peak:
    waiting: int = 0
    rss_mb: float = 0.0
    pg_conns: int = 0
    redis_conns: int = 0

    def sample(self, s: Stack, workers: Proc, admin: psycopg.Connection, r: redis.Redis) -> None:
        self.rss_mb = max(self.rss_mb, whole_rss_mb(workers))
        pg, waiting = admin.execute(
            "SELECT (SELECT count(*) FROM pg_stat_activity "
            "        WHERE application_name LIKE 'system2-worker%'),"
            "       (SELECT count(*) FROM quests WHERE step_claimed > steps_done"
            "        AND status = 'running')"
        ).fetchone() or (0, 0)
        self.pg_conns, self.waiting = max(self.pg_conns, pg), max(self.waiting, waiting)
        named = sum(1 for c in r.client_list() if c.get("name") == "system2-worker")
        self.redis_conns = max(self.redis_conns, named)


def whole_rss_mb(workers: Proc) -> float:
    parent = psutil.Process(workers.pid)
    procs = [parent, *parent.children(recursive=True)]
    return float(sum(p.memory_info().rss for p in procs if p.is_running())) / 2**20


def cpu_s(workers: Proc) -> float:
    parent = psutil.Process(workers.pid)
    total = 0.0
    for p in [parent, *parent.children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


def serve_held_claude(port: int, hold_s: float) -> None:
    """The offline Claude, one script: its first byte comes ``hold_s`` after the request."""
    held = Script(turns=(Turn((Text("Done after the wait: {goal}"),), start_after_s=hold_s),))
    uvicorn.run(create_app({"held": held}), host="127.0.0.1", port=port, log_level="warning")


def start_held_claude(s: Stack, hold_s: float) -> None:
    port = free_port()
    proc = Proc(
        "held-claude",
        [sys.executable, "-m", "bench.capacity", "--serve-claude", str(port), str(hold_s)],
        env=s.env(),
        log_path=s.logs / "held-claude.log",
    ).start()
    s.procs["held-claude"] = proc
    s.claude_url = f"http://127.0.0.1:{port}"
    wait_http(s.claude_url + "/", proc=proc)


async def submit_all(url: str, company: str, token: str, n: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as http:
        gate = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with gate:
                resp = await http.post(
                    f"/v1/companies/{company}/quests", json={"goal": f"[script:held] quest {i}"}
                )
                resp.raise_for_status()

        await asyncio.gather(*(one(i) for i in range(n)))


def run(quests: int, hold_s: float) -> dict[str, float]:
    with stack() as s:
        start_held_claude(s, hold_s)
        s.start_ingress()
        company, token = s.company()
        asyncio.run(submit_all(s.ingress_url, str(company), token, quests))
        admin = psycopg.connect(s.settings.admin_database_url, autocommit=True)
        r = redis.Redis.from_url(s.settings.redis_url)
        workers = s.start("workers", "worker", "--processes", "1")
        wait_workers(s.settings.redis_url, 1, proc=workers, timeout=60)
        ready = time.monotonic()
        cpu_at_ready = cpu_s(workers)
        peak = Peak()
        ended = 0
        while ended < quests:
            peak.sample(s, workers, admin, r)
            row = admin.execute(
                "SELECT count(*) FROM quests WHERE status NOT IN ('queued', 'running')"
            ).fetchone()
            ended = int(row[0]) if row else 0
            if time.monotonic() - ready > 60 + quests * hold_s:
                raise SystemExit(f"only {ended} of {quests} quests ended; see {s.logs}")
            time.sleep(0.25)
        drained = time.monotonic() - ready
        cpu = cpu_s(workers) - cpu_at_ready
        outcome = admin.execute(
            "SELECT (SELECT count(*) FROM quests WHERE status = 'succeeded'),"
            "       (SELECT count(*) FROM charges),"
            "       (SELECT count(*) FROM charges WHERE status <> 'settled')"
        ).fetchone() or (0, 0, 0)
        admin.close()
        return {
            "quests": quests,
            "hold_s": hold_s,
            "drained_s": drained,
            "achieved": quests * hold_s / drained,
            "peak_waiting": peak.waiting,
            "peak_rss_mb": peak.rss_mb,
            "peak_pg": peak.pg_conns,
            "peak_redis": peak.redis_conns,
            "cpu_ms_per_quest": cpu * 1000 / quests,
            "succeeded": outcome[0],
            "attempts": outcome[1],
            "unsettled": outcome[2],
        }


async def _cpu_per_call(one: Callable[[], Awaitable[object]], calls: int) -> float:
    """CPU seconds of this process per call, ``FLOOR_CONCURRENCY`` at a time, after a warm-up."""
    gate = asyncio.Semaphore(FLOOR_CONCURRENCY)

    async def gated() -> None:
        async with gate:
            await one()

    await asyncio.gather(*(gated() for _ in range(FLOOR_CONCURRENCY)))
    began = time.process_time()
    await asyncio.gather(*(gated() for _ in range(calls)))
    return (time.process_time() - began) / calls


async def _call_floor(url: str, calls: int) -> tuple[float, float]:
    """CPU per streamed Claude call: through ``workers.claude`` (the SDK), and as one bare
    HTTP request on the SDK's HTTP stack with the stream read by the same parser."""
    request = ClaudeRequest("claude-sonnet-4-5", 64, "You are Ted.", [_HELLO], [])
    claude = Claude(timeout_s=30, base_url=url, api_key="offline", in_flight=FLOOR_CONCURRENCY)
    body = json.dumps({**dataclasses.asdict(request), "stream": True}).encode()
    headers = {"x-api-key": "offline", "anthropic-version": "2023-06-01"}
    limits = httpx2.Limits(max_keepalive_connections=FLOOR_CONCURRENCY)
    async with httpx2.AsyncClient(base_url=url, headers=headers, limits=limits) as http:

        async def bare() -> None:
            async with http.stream("POST", "/v1/messages", content=body) as resp:
                reply = ReplyBuilder()
                async for event, data in server_sent_events(resp.aiter_lines()):
                    reply.feed(event, data)

        try:
            sdk = await _cpu_per_call(lambda: claude.create(request, Progress()), calls)
            raw = await _cpu_per_call(bare, calls)
        finally:
            await claude.close()
    return sdk, raw


def call_floor(calls: int) -> dict[str, float]:
    """What one Claude call costs the calling process when nothing else runs in it, measured
    against a stand-in that answers at once. A process with one core's worth of Python
    starts at most ``1 / cost`` calls a second, so n quests held ``hold`` seconds each drain
    in no less than ``hold + n x cost``: the ceiling of "achieved in flight" for any step
    built on the SDK, whatever the rest of the step costs."""
    port = free_port()
    proc = Proc(
        "instant-claude",
        [sys.executable, "-m", "bench.capacity", "--serve-claude", str(port), "0"],
        log_path=Path(tempfile.gettempdir()) / f"instant-claude-{port}.log",
    ).start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/", proc=proc)
        sdk, raw = asyncio.run(_call_floor(url, calls))
    finally:
        proc.stop()
    return {"sdk_ms": sdk * 1000, "raw_ms": raw * 1000}


def ceiling(quests: float, hold_s: float, cpu_ms: float) -> float:
    """The most in flight n quests held ``hold_s`` each can achieve in one process when each
    costs ``cpu_ms`` of its CPU."""
    return quests * hold_s / (hold_s + quests * cpu_ms / 1000)


def report(rows: list[dict[str, float]]) -> bool:
    print(
        "| quests x hold | drained in | achieved in flight | most waiting at once | peak RSS "
        "(parent + worker) | Postgres conns | Redis conns | worker CPU per quest | "
        "succeeded | attempts |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    ok = True
    for row in rows:
        print(
            f"| {row['quests']:,.0f} x {row['hold_s']:g} s | {row['drained_s']:.1f} s | "
            f"{row['achieved']:.0f} | {row['peak_waiting']:.0f} | {row['peak_rss_mb']:.0f} MB | "
            f"{row['peak_pg']:.0f} | {row['peak_redis']:.0f} | "
            f"{row['cpu_ms_per_quest']:.1f} ms | {row['succeeded']:.0f} | {row['attempts']:.0f} |"
        )
        clean = row["succeeded"] == row["quests"] == row["attempts"] and not row["unsettled"]
        bounded = (
            row["peak_rss_mb"] <= TARGET_RSS_MB
            and row["peak_pg"] <= TARGET_PG
            and row["peak_redis"] <= TARGET_REDIS
        )
        ok = ok and clean and bounded
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.capacity")
    parser.add_argument("--small", action="store_true", help="CI size")
    parser.add_argument("--serve-claude", nargs=2, metavar=("PORT", "HOLD_S"))
    args = parser.parse_args(argv)
    if args.serve_claude:
        serve_held_claude(int(args.serve_claude[0]), float(args.serve_claude[1]))
        return 0
    sizes = [(200, 2.0)] if args.small else [(1_000, 8.0), (2_000, 8.0)]
    rows = [run(n, hold) for n, hold in sizes]
    ok = report(rows)
    first = rows[0]
    floor = call_floor(200 if args.small else 2_000)
    n, hold = first["quests"], first["hold_s"]
    print(
        f"floor: one streamed Claude call costs the process {floor['sdk_ms']:.2f} ms of CPU "
        f"through the SDK ({floor['raw_ms']:.2f} ms as a bare request on its HTTP stack); "
        f"with nothing else in the step, {n:,.0f} quests x {hold:g} s could achieve at most "
        f"{ceiling(n, hold, floor['sdk_ms']):.0f} in flight ({ceiling(n, hold, floor['raw_ms']):.0f} "
        f"bare); at this run's {first['cpu_ms_per_quest']:.1f} ms per quest, "
        f"{ceiling(n, hold, first['cpu_ms_per_quest']):.0f}"
    )
    if not args.small:
        met = first["achieved"] >= TARGET_IN_FLIGHT
        print(
            f"target: >= {TARGET_IN_FLIGHT} in flight for 1,000 quests "
            f"({'met' if met else 'NOT met'}: {first['achieved']:.0f}); RSS <= {TARGET_RSS_MB} MB, "
            f"<= {TARGET_PG} Postgres and <= {TARGET_REDIS} Redis connections, every quest "
            f"one attempt ({'met' if ok else 'NOT met'})"
        )
        ok = ok and met
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
