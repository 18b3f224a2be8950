"""Fair share of the workers across companies (issue 18): one company's backlog against
three small companies, with the workers taking quest steps in arrival order
(``S2_FAIR_DISPATCH=false``, one FIFO for all companies) and company by company in turn
(``=true``, ``workers/fair_queue.py``), the same scenarios on fresh state for each.

**Backlog.** Company A submits ``N`` quests over HTTP (full 10,000, ``--small`` 600) while no
worker runs, so they are all queued; then two worker processes start
(``system2 worker --processes 2 --in-flight 50``). Once A's drain is under way (a few hundred
of its quests started), B, C and D submit 20 quests each (small: 10), interleaved, and each
submit's HTTP 202 is timed. Then B submits 20 more (small: 10) whose Claude call holds 30 s,
and these are cancelled over HTTP one by one while A's backlog is still queued.

- *first-step start delay*: from a quest's HTTP 202 (this process's clock) to its first step
  starting in a worker: the quest row's ``started_at``, which the step's claim sets (one
  statement, before the Claude call) with Postgres's clock. Same machine, same clock. A quest
  a worker claims before the client has read its 202 shows a few ms below zero. Target: the
  fair run's p99 at most 1 s. What is left of it in the fair run is
  mostly not the queue: a step fetched in its turn still waits for its process's event loop,
  busy with the other 49 steps in flight (see the event-loop lag row).
- *completion*: from the 202 to the quest's ``finished_at``.
- *A's throughput*: A's quests / (A's last ``finished_at`` - its first ``started_at``).
- *total throughput*: every quest that ran to its end (A's, B's, C's, D's; not the
  cancelled ones) / (the last ``finished_at`` - the first ``started_at``). Target: the fair
  run's at least 0.9 x the FIFO run's.
- *cancel latency*: from just before the cancel request to the quest reading ``cancelled`` in
  Postgres (polled every 2 ms), as ``bench/cancel.py`` measures it; beside it Postgres's own
  ``cancel_requested_at -> finished_at``. The table says how many of those quests were
  already running (their Claude call cut) and how many were still queued (ended by the
  control queue's cancel), and how many of A's quests were queued at the time. Target: p99
  <= 250 ms.

**Shares.** On the same stack, workers stopped, four fresh companies submit ``M`` quests each
(full 1,500, small 100), A's first, then B's, C's, D's; then the workers start and drain
them. The window runs from the first quest started to the moment the first company has no
quest left to start (the earliest of the companies' last ``started_at``): all four have work
throughout it. Each company's share of the quests started in that window; target, with
equal weights: within +/-10 % of an equal share (22.5 % to 27.5 % for four).

Every quest here is one step (the offline Claude's ``brief`` script: a reply held 0.3 s
after ``message_start``), so first steps started are steps started. **Why these knobs:**
two worker processes of 50 in flight each can start at most 100 / 0.3 s = 333 steps a
second, and a one-step quest costs a worker process ~10 ms of CPU (DEPLOY.md), so on this
2-core box, shared with Postgres, Redis, the offline Claude, the ingress and this process,
the workers' CPU is what limits the drain (100 to 150 a second): the workers are the
bottleneck and steps queue in Redis, which is the queue under test, and the cost of taking
them in turns shows in the throughput. 50 in flight per process, not the default 1,000,
keeps short the queue inside each worker's event loop, which no dispatch order can reorder;
it is not empty (the loops are CPU-bound), which is why the fair run's start delays and
cancels are slower than on idle workers (``bench/cancel.py``). Admission does not hold A
back: the bench stack raises every company's guard limits (``bench.stack.UNLIMITED``:
quests a minute, quests running, no daily or monthly budget), and A's own
``company_limits`` are raised too, as ``system2 guard set --per-minute --running`` would.

Beside the targets the table shows where the time went: the workers' CPU (cores, and per
quest), the Redis server's CPU per quest (fair dispatch runs in a Lua script there), and the
worker group's ``s2_event_loop_lag_seconds`` sampled every 0.5 s from its metrics endpoint.
The figures are wall-clock on a shared machine: whatever else runs on it (other test suites,
on the same Redis and Postgres servers) slows both runs, and not necessarily equally; the
table prints the machine's CPU use during each drain.

    python -m bench.fairness            # full: A 10,000 + B, C, D 20 each; shares 4 x 1,500
    python -m bench.fairness --small    # CI size: A 600 + 10 each; shares 4 x 100

Exit code: 1 if a quest was lost or ended otherwise than expected (the run is not
meaningful), else 0, whether or not a target is met (each is printed, met or NOT met).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx
import psutil
import psycopg
import redis

from bench.stack import Stack, percentile, stack
from messages.payloads import QUESTS
from messages.redis_keys import acks_key, fair_prefix, queue_key
from store import Database
from store import limits as limits_store
from store.limits import LimitOverrides
from system2.procs import Proc, free_port, wait_workers

PROCESSES = 2
IN_FLIGHT = 50
SCRIPT = "brief"  # one step; Claude's reply held 0.3 s after message_start
CANCEL_SCRIPT = "slow"  # held 30 s after message_start: still in its call when cancelled
SUBMIT_CONCURRENCY = 32
OTHERS = ("B", "C", "D")
LABELS = ("A", *OTHERS)
TARGET_CANCEL_P99_MS = 250.0
TARGET_THROUGHPUT_RATIO = 0.9
TARGET_SHARE_TOLERANCE = 0.10  # relative to an equal share
TARGET_START_P99_MS = 1_000.0  # the fair run's B/C/D first-step delay p99 (issue 18)


@dataclass(frozen=True)
class Size:
    backlog: int  # A's quests
    others: int  # each of B, C, D
    cancels: int  # B's quests cancelled
    shares: int  # each company's in the share scenario
    warm: int  # A's quests started before B, C, D submit


FULL = Size(backlog=10_000, others=20, cancels=20, shares=1_500, warm=300)
SMALL = Size(backlog=600, others=10, cancels=10, shares=100, warm=60)


@dataclass(frozen=True)
class Submitted:
    label: str
    quest_id: str
    accepted: float  # time.time() when the 202 was read


@dataclass(frozen=True)
class Row:
    quest_id: str
    status: str
    started: float | None
    finished: float | None


@dataclass
class Backlog:
    """What one run of the backlog scenario measured."""

    submit_rate: float = 0.0  # A's submits a second
    queued_at_others: int = 0  # A's quests queued when B, C, D submitted
    queued_at_cancel: int = 0  # A's quests queued when the cancels began
    start_ms: dict[str, list[float]] = field(default_factory=dict)
    done_s: dict[str, list[float]] = field(default_factory=dict)
    a_rate: float = 0.0
    total_rate: float = 0.0
    cancel_ms: list[float] = field(default_factory=list)
    cancel_db_ms: list[float] = field(default_factory=list)
    cancel_running: int = 0  # of the cancelled quests, those already in their Claude call
    submitted: int = 0
    ended_as_expected: int = 0
    unexpected: dict[str, int] = field(default_factory=dict)
    ran: int = 0  # quests that ran to their end (not cancelled)
    queue_left: int = 0  # entries left in the quests queue (intake, lanes) after the drain
    machine_cpu_pct: float = 0.0
    worker_cores: float = 0.0
    worker_cpu_s: float = 0.0
    redis_cpu_s: float = 0.0  # the Redis server's, shared with whatever else uses it
    loop_lag_ms: list[float] = field(default_factory=list)

    def others_start_ms(self) -> list[float]:
        return [v for label in OTHERS for v in self.start_ms.get(label, [])]

    def others_done_s(self) -> list[float]:
        return [v for label in OTHERS for v in self.done_s.get(label, [])]


@dataclass
class Shares:
    """What one run of the share scenario measured."""

    started: dict[str, int] = field(default_factory=dict)  # quests started in the window
    window_s: float = 0.0
    total_rate: float = 0.0
    submitted: int = 0
    ended_as_expected: int = 0
    queue_left: int = 0

    def share(self, label: str) -> float:
        total = sum(self.started.values())
        return self.started.get(label, 0) / total if total else 0.0


@dataclass
class Run:
    fair: bool
    backlog: Backlog
    shares: Shares

    @property
    def clean(self) -> bool:
        return (
            self.backlog.ended_as_expected == self.backlog.submitted
            and self.shares.ended_as_expected == self.shares.submitted
            and self.backlog.queue_left == 0
            and self.shares.queue_left == 0
        )


@dataclass
class Comparison:
    size: Size
    fifo: Run
    fair: Run


# --- the stack's parts ---------------------------------------------------------------------


Tenants = dict[str, tuple[uuid.UUID, str]]


def tenants(s: Stack, tag: str) -> Tenants:
    """Companies A, B, C, D, each with an admin of its own; A's admission limits raised."""
    made = s.companies([f"bench-{tag}-{label.lower()}" for label in LABELS])
    found = dict(zip(LABELS, made, strict=True))
    raise_limits(s, found["A"][0])
    return found


def raise_limits(s: Stack, company: uuid.UUID) -> None:
    """A's own limits, as ``system2 guard set --per-minute --running`` sets them, so admission
    never holds its backlog back (the queue is under test, not the guard)."""
    overrides = LimitOverrides(quests_per_minute=10**9, max_running_quests=10**6)

    async def put() -> None:
        async with (
            Database(s.settings.database_url, max_size=1) as db,
            db.tenant(company) as tx,
        ):
            await limits_store.put(tx, overrides)

    asyncio.run(put())


def start_workers(s: Stack, fair: bool) -> tuple[Proc, str]:
    """The worker group, and the URL of its metrics endpoint."""
    port = free_port()
    workers = s.start(
        "workers",
        "worker",
        "--processes",
        str(PROCESSES),
        "--in-flight",
        str(IN_FLIGHT),
        S2_FAIR_DISPATCH="true" if fair else "false",
        S2_METRICS_PORT=str(port),
        S2_METRICS_HOST="127.0.0.1",
    )
    wait_workers(s.settings.redis_url, PROCESSES, proc=workers, timeout=60)
    return workers, f"http://127.0.0.1:{port}/metrics"


class LoopLag:
    """Samples the worker group's ``s2_event_loop_lag_seconds`` (its worst process) every
    half second while the drain runs: above 0.1 s, the loops are CPU-bound."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LoopLag:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with httpx.Client(timeout=2) as http:
            while not self._stop.wait(0.5):
                try:
                    text = http.get(self.url).text
                except httpx.HTTPError:
                    continue
                for line in text.splitlines():
                    if line.startswith("s2_event_loop_lag_seconds "):
                        self.samples_ms.append(1000 * float(line.split()[1]))


def group_cpu_s(workers: Proc) -> float:
    parent = psutil.Process(workers.pid)
    total = 0.0
    for p in [parent, *parent.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def redis_cpu_s(s: Stack) -> float:
    """CPU the Redis server has used (all its databases: other work on it counts too)."""
    r = redis.Redis.from_url(s.settings.redis_url)
    try:
        info = r.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    finally:
        r.close()


Job = tuple[str, uuid.UUID, str, str]  # label, company, token, goal


def submit(s: Stack, jobs: list[Job], concurrency: int = SUBMIT_CONCURRENCY) -> list[Submitted]:
    """Each job submitted over HTTP, ``concurrency`` at a time; its 202 timed as it is read."""

    async def run() -> list[Submitted]:
        gate = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=s.ingress_url, timeout=60, limits=limits) as http:

            async def one(label: str, company: uuid.UUID, token: str, goal: str) -> Submitted:
                async with gate:
                    resp = await http.post(
                        f"/v1/companies/{company}/quests",
                        json={"goal": goal},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    accepted = time.time()
                if resp.status_code != 202:
                    raise SystemExit(f"submit answered {resp.status_code}: {resp.text}")
                return Submitted(label, str(resp.json()["quest_id"]), accepted)

            return list(await asyncio.gather(*(one(*job) for job in jobs)))

    return asyncio.run(run())


def jobs(found: Tenants, label: str, n: int, script: str = SCRIPT) -> list[Job]:
    company, token = found[label]
    return [(label, company, token, f"[script:{script}] {label} quest {i}") for i in range(n)]


def interleaved(*groups: list[Job]) -> list[Job]:
    """B1, C1, D1, B2, C2, D2, ...: no company's submits all come first."""
    return [job for batch in zip(*groups, strict=True) for job in batch]


Admin = psycopg.Connection[tuple[object, ...]]


def count(admin: Admin, where: str, params: Iterable[object] = ()) -> int:
    row = admin.execute(f"SELECT count(*) FROM quests WHERE {where}", tuple(params)).fetchone()
    return int(str(row[0])) if row else 0


def check_alive(s: Stack, workers: Proc) -> None:
    """Fail at once, not at the timeout, if the worker group stopped under the run (on a
    shared machine, something else may have signalled it)."""
    if not workers.alive():
        raise SystemExit(
            f"the worker group stopped mid-run (exit code {workers.popen and workers.popen.poll()})"
            f"; see {s.logs}"
        )


def wait_until(
    s: Stack, workers: Proc, admin: Admin, where: str, at_least: int, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while count(admin, where) < at_least:
        check_alive(s, workers)
        if time.monotonic() > deadline:
            raise SystemExit(f"fewer than {at_least} quests with {where} after {timeout:.0f} s")
        time.sleep(0.05)


def wait_ended(s: Stack, workers: Proc, admin: Admin, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (left := count(admin, "status IN ('queued', 'running')")) > 0:
        check_alive(s, workers)
        if time.monotonic() > deadline:
            raise SystemExit(
                f"{left} of {expected} quests still queued or running after {timeout:.0f} s; "
                f"see {s.logs}"
            )
        time.sleep(0.25)


def rows(admin: Admin, ids: list[str]) -> dict[str, Row]:
    found = admin.execute(
        "SELECT id::text, status, extract(epoch FROM started_at)::float8,"
        " extract(epoch FROM finished_at)::float8 FROM quests WHERE id = ANY(%s::uuid[])",
        (ids,),
    ).fetchall()
    return {
        str(qid): Row(
            str(qid),
            str(status),
            float(str(started)) if started is not None else None,
            float(str(finished)) if finished is not None else None,
        )
        for qid, status, started, finished in found
    }


def queue_left(s: Stack, *, held: bool = False) -> int:
    """Entries still waiting in the quests queue: Dramatiq's list (the intake) and every
    lane; with ``held``, those fetched by a worker and not yet acked too."""
    r = redis.Redis.from_url(s.settings.redis_url)
    try:
        left = int(r.llen(queue_key(QUESTS)))
        for key in r.scan_iter(f"{fair_prefix(QUESTS)}:*:*"):
            if r.type(key) == b"list":
                left += int(r.llen(key))
        if held:
            left += sum(int(r.scard(key)) for key in r.scan_iter(acks_key("*", QUESTS)))
        return left
    finally:
        r.close()


def stop_drained(s: Stack, workers: Proc) -> int:
    """Stop the workers once the queue is empty and nothing is held (a cancelled quest's step
    may still be on its way to be skipped when every quest has ended); then return what is
    left on the queue, which must be nothing."""
    deadline = time.monotonic() + 30
    while queue_left(s, held=True) and time.monotonic() < deadline:
        check_alive(s, workers)
        time.sleep(0.1)
    workers.stop()
    return queue_left(s)


# --- the backlog scenario ------------------------------------------------------------------


def cancel_all(
    s: Stack, found: Tenants, quests: list[Submitted], admin: Admin, out: Backlog
) -> None:
    """Cancel each of ``quests`` over HTTP, one after another, 25 ms apart; time each from
    just before its request to its row reading ``cancelled`` (cancel.py's clock)."""
    company, token = found["B"]
    ids = [q.quest_id for q in quests]
    out.cancel_running = count(admin, "id = ANY(%s::uuid[]) AND status = 'running'", (ids,))
    out.queued_at_cancel = count(admin, "company_id = %s AND status = 'queued'", (found["A"][0],))
    sent: dict[str, float] = {}
    done: dict[str, float] = {}

    def watch() -> None:
        with psycopg.connect(s.settings.admin_database_url, autocommit=True) as own:
            deadline = time.monotonic() + 60
            while len(done) < len(ids) and time.monotonic() < deadline:
                seen = own.execute(
                    "SELECT id::text FROM quests WHERE id = ANY(%s::uuid[]) AND status = 'cancelled'",
                    (ids,),
                ).fetchall()
                now = time.perf_counter()
                for (qid,) in seen:
                    done.setdefault(str(qid), now)
                time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=s.ingress_url, timeout=10, headers=headers) as http:
        for qid in ids:
            sent[qid] = time.perf_counter()
            resp = http.post(
                f"/v1/companies/{company}/quests/{qid}/cancel", json={"reason": "bench"}
            )
            if resp.status_code != 202:
                raise SystemExit(f"cancel answered {resp.status_code}: {resp.text}")
            time.sleep(0.025)
    watcher.join()
    missing = [qid for qid in ids if qid not in done]
    if missing:
        raise SystemExit(f"{len(missing)} cancelled quests never read 'cancelled'; see {s.logs}")
    out.cancel_ms = [1000 * (done[q] - sent[q]) for q in ids]
    recorded = admin.execute(
        "SELECT extract(epoch FROM finished_at - cancel_requested_at)::float8 * 1000"
        " FROM quests WHERE id = ANY(%s::uuid[])",
        (ids,),
    ).fetchall()
    out.cancel_db_ms = [float(str(r[0])) for r in recorded]


def backlog(s: Stack, size: Size, fair: bool, admin: Admin) -> Backlog:
    out = Backlog()
    found = tenants(s, "backlog")
    began = time.monotonic()
    a_quests = submit(s, jobs(found, "A", size.backlog))
    out.submit_rate = size.backlog / (time.monotonic() - began)

    workers, metrics = start_workers(s, fair)
    cpu_at, _ = group_cpu_s(workers), psutil.cpu_percent(None)
    redis_at = redis_cpu_s(s)
    drain_began = time.monotonic()
    with LoopLag(metrics) as lag:
        wait_until(s, workers, admin, "started_at IS NOT NULL", size.warm, timeout=120)
        a_company = found["A"][0]
        out.queued_at_others = count(admin, "company_id = %s AND status = 'queued'", (a_company,))
        others = submit(
            s, interleaved(*(jobs(found, label, size.others) for label in OTHERS)), concurrency=3
        )
        doomed = submit(s, jobs(found, "B", size.cancels, CANCEL_SCRIPT), concurrency=3)
        time.sleep(1.0)  # in its turn (fair), a doomed quest is in its Claude call by now
        cancel_all(s, found, doomed, admin, out)
        everything = a_quests + others + doomed
        out.submitted = len(everything)
        wait_ended(s, workers, admin, len(everything), timeout=120 + len(everything) / 20)
    out.loop_lag_ms = lag.samples_ms
    out.worker_cpu_s = group_cpu_s(workers) - cpu_at
    out.redis_cpu_s = redis_cpu_s(s) - redis_at
    out.worker_cores = out.worker_cpu_s / (time.monotonic() - drain_began)
    out.machine_cpu_pct = psutil.cpu_percent(None)
    out.queue_left = stop_drained(s, workers)

    found_rows = rows(admin, [q.quest_id for q in everything])
    cancelled = {q.quest_id for q in doomed}
    ran: list[Row] = []
    for q in everything:
        row = found_rows.get(q.quest_id)
        status = row.status if row else "lost"
        want = "cancelled" if q.quest_id in cancelled else "succeeded"
        if status != want:
            key = f"{q.label} {status}"
            out.unexpected[key] = out.unexpected.get(key, 0) + 1
            continue
        out.ended_as_expected += 1
        if row is None or q.quest_id in cancelled:
            continue
        assert row.started is not None and row.finished is not None
        ran.append(row)
        out.start_ms.setdefault(q.label, []).append(1000 * (row.started - q.accepted))
        out.done_s.setdefault(q.label, []).append(row.finished - q.accepted)
    a_ids = {q.quest_id for q in a_quests}
    out.a_rate = rate([r for r in ran if r.quest_id in a_ids])
    out.total_rate = rate(ran)
    out.ran = len(ran)
    return out


def rate(ran: list[Row]) -> float:
    """Quests a second from the first one's start to the last one's end."""
    if not ran:
        return 0.0
    first = min(r.started for r in ran if r.started is not None)
    last = max(r.finished for r in ran if r.finished is not None)
    return len(ran) / (last - first) if last > first else 0.0


# --- the share scenario --------------------------------------------------------------------


def shares(s: Stack, size: Size, fair: bool, admin: Admin) -> Shares:
    out = Shares()
    found = tenants(s, "shares")
    for label in OTHERS:  # every company has a backlog here
        raise_limits(s, found[label][0])
    submitted: list[Submitted] = []
    for label in LABELS:  # A's backlog first, then B's, C's, D's
        submitted += submit(s, jobs(found, label, size.shares))
    out.submitted = len(submitted)
    workers, _ = start_workers(s, fair)
    wait_ended(s, workers, admin, len(submitted), timeout=120 + len(submitted) / 20)
    out.queue_left = stop_drained(s, workers)
    found_rows = rows(admin, [q.quest_id for q in submitted])
    by_label: dict[str, list[float]] = {label: [] for label in LABELS}
    ran: list[Row] = []
    for q in submitted:
        row = found_rows.get(q.quest_id)
        if row is None or row.status != "succeeded" or row.started is None:
            continue
        out.ended_as_expected += 1
        ran.append(row)
        by_label[q.label].append(row.started)
    out.total_rate = rate(ran)
    if all(by_label.values()):
        opens = min(min(v) for v in by_label.values())
        closes = min(max(v) for v in by_label.values())  # the first company out of work
        out.window_s = closes - opens
        out.started = {
            label: sum(1 for t in v if opens <= t < closes) for label, v in by_label.items()
        }
    return out


# --- the runs and the report ---------------------------------------------------------------


def run(size: Size, fair: bool) -> Run:
    with stack() as s:
        s.start_claude()
        s.start_ingress()
        with psycopg.connect(s.settings.admin_database_url, autocommit=True) as admin:
            measured = backlog(s, size, fair, admin)
            shared = shares(s, size, fair, admin)
    return Run(fair, measured, shared)


def measure(size: Size) -> Comparison:
    """The same scenarios twice, each on a fresh stack: FIFO first, then fair."""
    return Comparison(size, run(size, fair=False), run(size, fair=True))


def _ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p):,.0f}" if values else "-"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _ended(run: Run) -> str:
    b, sh = run.backlog, run.shares
    text = (
        f"{b.ended_as_expected + sh.ended_as_expected:,} / {b.submitted + sh.submitted:,}, "
        f"{b.queue_left + sh.queue_left}"
    )
    return text + (f" ({b.unexpected})" if b.unexpected else "")


def report(c: Comparison) -> bool:
    """Print the side-by-side table; True if the runs were clean (every quest ended as
    expected, nothing left on the queue). Targets are printed, met or not."""
    fifo, fair = c.fifo.backlog, c.fair.backlog
    fs, ff = c.fifo.shares, c.fair.shares
    n = c.size
    print(
        f"A: {n.backlog:,} quests, then B, C, D: {n.others} each (and {n.cancels} of B's "
        f"cancelled); {PROCESSES} worker processes x {IN_FLIGHT} in flight; each quest one "
        f"step, Claude's reply held 0.3 s. Shares: 4 companies x {n.shares:,} quests, A's first."
    )
    print()
    print("| | FIFO (`S2_FAIR_DISPATCH=false`) | fair (`true`) | target | |")
    print("| --- | --- | --- | --- | --- |")

    def line(what: str, a: str, b: str, target: str = "", verdict: str = "") -> None:
        print(f"| {what} | {a} | {b} | {target} | {verdict} |")

    line("A's submits over HTTP (a second)", f"{fifo.submit_rate:.0f}", f"{fair.submit_rate:.0f}")
    line(
        "A's quests queued when B, C, D submitted",
        f"{fifo.queued_at_others:,}",
        f"{fair.queued_at_others:,}",
    )
    fifo_start, fair_start = fifo.others_start_ms(), fair.others_start_ms()
    line("B/C/D first-step start delay p50 (ms)", _ms(fifo_start, 50), _ms(fair_start, 50))
    start_ok = bool(fair_start) and percentile(fair_start, 99) <= TARGET_START_P99_MS
    line(
        "B/C/D first-step start delay p99 (ms)",
        _ms(fifo_start, 99),
        _ms(fair_start, 99),
        f"fair <= {TARGET_START_P99_MS:,.0f}",
        _met(start_ok),
    )
    for label in OTHERS:
        line(
            f"  {label}: start delay p50 / max (ms)",
            f"{_ms(fifo.start_ms.get(label, []), 50)} / {_ms(fifo.start_ms.get(label, []), 100)}",
            f"{_ms(fair.start_ms.get(label, []), 50)} / {_ms(fair.start_ms.get(label, []), 100)}",
        )
    fifo_done, fair_done = fifo.others_done_s(), fair.others_done_s()
    line(
        "B/C/D completion p50 / p99 (s, 202 -> finished)",
        f"{percentile(fifo_done, 50):.2f} / {percentile(fifo_done, 99):.2f}" if fifo_done else "-",
        f"{percentile(fair_done, 50):.2f} / {percentile(fair_done, 99):.2f}" if fair_done else "-",
    )
    for label in OTHERS:
        a, b = fifo.done_s.get(label, []), fair.done_s.get(label, [])
        line(
            f"  {label}: all its quests done after (s)",
            f"{max(a):.2f}" if a else "-",
            f"{max(b):.2f}" if b else "-",
        )
    line("A's throughput over its drain (quests/s)", f"{fifo.a_rate:.1f}", f"{fair.a_rate:.1f}")
    ratio = fair.total_rate / fifo.total_rate if fifo.total_rate else 0.0
    line(
        "total throughput (quests/s)",
        f"{fifo.total_rate:.1f}",
        f"{fair.total_rate:.1f}",
        f"fair >= {TARGET_THROUGHPUT_RATIO:g} x FIFO",
        f"{_met(ratio >= TARGET_THROUGHPUT_RATIO)} ({ratio:.3f} x)",
    )
    line(
        "workers' CPU during the drain (cores) / machine CPU busy",
        f"{fifo.worker_cores:.2f} / {fifo.machine_cpu_pct:.0f} %",
        f"{fair.worker_cores:.2f} / {fair.machine_cpu_pct:.0f} %",
    )
    line(
        "workers' CPU per quest run (ms)",
        f"{1000 * fifo.worker_cpu_s / max(1, fifo.ran):.1f}",
        f"{1000 * fair.worker_cpu_s / max(1, fair.ran):.1f}",
    )
    line(
        "Redis server's CPU per quest run (ms; the server is shared)",
        f"{1000 * fifo.redis_cpu_s / max(1, fifo.ran):.2f}",
        f"{1000 * fair.redis_cpu_s / max(1, fair.ran):.2f}",
    )
    line(
        "workers' event-loop lag during the drain, median / max (ms)",
        f"{_ms(fifo.loop_lag_ms, 50)} / {_ms(fifo.loop_lag_ms, 100)}",
        f"{_ms(fair.loop_lag_ms, 50)} / {_ms(fair.loop_lag_ms, 100)}",
    )
    line(
        "cancels: A's quests queued then / B's cancelled quests already running",
        f"{fifo.queued_at_cancel:,} / {fifo.cancel_running} of {len(fifo.cancel_ms)}",
        f"{fair.queued_at_cancel:,} / {fair.cancel_running} of {len(fair.cancel_ms)}",
    )
    line(
        "cancel latency p50 (ms, request -> cancelled)",
        _ms(fifo.cancel_ms, 50),
        _ms(fair.cancel_ms, 50),
    )
    cancel_ok = (
        bool(fifo.cancel_ms and fair.cancel_ms)
        and max(percentile(fifo.cancel_ms, 99), percentile(fair.cancel_ms, 99))
        <= TARGET_CANCEL_P99_MS
    )
    line(
        "cancel latency p99 (ms, request -> cancelled)",
        _ms(fifo.cancel_ms, 99),
        _ms(fair.cancel_ms, 99),
        f"<= {TARGET_CANCEL_P99_MS:.0f} (both)",
        _met(cancel_ok),
    )
    line(
        "  as Postgres recorded them, p99 (ms, requested -> finished)",
        _ms(fifo.cancel_db_ms, 99),
        _ms(fair.cancel_db_ms, 99),
    )
    line(
        "quests ended as expected / submitted, steps left on the queue (both scenarios)",
        _ended(c.fifo),
        _ended(c.fair),
        "all, none",
        _met(c.fifo.clean and c.fair.clean),
    )
    equal = 1 / len(LABELS)
    low, high = equal * (1 - TARGET_SHARE_TOLERANCE), equal * (1 + TARGET_SHARE_TOLERANCE)
    shares_ok = bool(ff.started) and all(low <= ff.share(label) <= high for label in LABELS)
    line(
        "shares of quests started while all 4 had work: A / B / C / D",
        " / ".join(f"{100 * fs.share(label):.1f} %" for label in LABELS),
        " / ".join(f"{100 * ff.share(label):.1f} %" for label in LABELS),
        f"fair: each {100 * low:.1f} % to {100 * high:.1f} %",
        _met(shares_ok),
    )
    line(
        "  that window: length / quests started in it",
        f"{fs.window_s:.1f} s / {sum(fs.started.values()):,}",
        f"{ff.window_s:.1f} s / {sum(ff.started.values()):,}",
    )
    line(
        "  share scenario: total throughput (quests/s), ended as expected",
        f"{fs.total_rate:.1f}, {fs.ended_as_expected:,} / {fs.submitted:,}",
        f"{ff.total_rate:.1f}, {ff.ended_as_expected:,} / {ff.submitted:,}",
    )
    return c.fifo.clean and c.fair.clean


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.fairness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--small", action="store_true", help="CI size")
    args = parser.parse_args(argv)
    comparison = measure(SMALL if args.small else FULL)
    return 0 if report(comparison) else 1


if __name__ == "__main__":
    sys.exit(main())
