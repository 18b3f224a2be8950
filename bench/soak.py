"""Soak: quests that mutate at providers while workers are killed and restarted.

Two worker groups (one process each) run N quests; each makes one mutation at a provider, in
turn: a task at the demo provider (which deduplicates by ``Idempotency-Key``), an issue at
the GitHub stand-in and a message at the Slack stand-in (which take no key: our calls carry
a hidden mark and a retry looks for it). Every ``--kill-every`` seconds one group (the two in
turn) is killed with SIGKILL and started again. Each step waits where a real one does: every
mutation is held ``--provider-hold`` seconds at its provider (which performs it even when
the caller is gone) and, with ``--claude-hold``, every Claude call ``--claude-hold`` seconds
before its first byte, so kills land mid-call.

Each kill prints what the killed process held: its steps in flight (the quest-step messages
it had fetched and not acked, read from the broker the moment it died; its beacon's count
of running steps beside it), and how long until every one of those quests ran again in
another process (its step claimed anew, or the quest ended, in Postgres: the quest row's
``step_claimed_at`` / ``finished_at`` after the kill). At the end it prints quests completed /
lost / duplicated mutations (tasks, issues and messages made more than once, counted at
each provider) / duplicated audit rows / double charges and the longest redelivery. Exit code 1 unless every quest succeeded, nothing was done or charged twice and
every held quest ran again within ``REDELIVERY_BOUND_S``.

About 1,000 steps in flight in the killed process (``S2_WORKER_IN_FLIGHT``): the two
processes share the work, so quests per second x seconds a quest waits ~ 2,000, e.g.
``--quests 6000 --rate 60 --claude-hold 16 --kill-every 30`` (every slot of both busy).
``--b-in-flight 2000`` leaves group b room for what a killed a held. ``--access-ttl`` makes
the provider's tokens expire sooner, so kills land on refreshes too. ``kills.json`` and
``provider-stats.json`` in the log directory keep the details.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import psycopg
import redis
import uvicorn

from bench.stack import BIN, Stack, stack
from messages import QUESTS
from messages.redis_keys import (
    WORKER_BEACON_PREFIX,
    acks_key,
    bodies_key,
    heartbeats_key,
    queue_key,
)
from standins.offline_claude import BUILTIN_SCRIPTS, Script, Turn, create_app
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
    # a retry of an unanswered GitHub or Slack call waits 2 x this before looking for it
    "S2_PROVIDER_TIMEOUT_S": "3",
}
PROVIDERS = ("demo", "github", "slack")  # quest i mutates at PROVIDERS[i % 3]
LOGIN, OWNER, REPO, TEAM = "soak-user", "soak", "widgets", "T0000SOAK"
REDELIVERY_BOUND_S = 15.0  # issue 17: a killed process's steps run again within this
POLL_S = 0.2

Admin = psycopg.Connection[tuple[object, ...]]


@dataclass
class Kill:
    """One SIGKILL: what the process held, and when each of its open quests ran again."""

    number: int
    group: str
    pid: int
    at: float  # wall clock (Postgres timestamps compare with it: same machine)
    in_flight: int  # quest-step messages fetched and not acked
    running: int | None  # steps running by the process's last beacon (up to 2 s old)
    acks: list[str] = field(default_factory=list)  # its acks sets: gone once requeued
    messages: set[str] = field(default_factory=set)  # held messages not yet fetched again
    requeued: float | None = None  # seconds until they were back on the queue
    fetched: float | None = None  # seconds until the last was fetched again
    waiting: set[str] = field(default_factory=set)  # open quests not yet running again
    after: dict[str, float] = field(default_factory=dict)  # quest -> seconds to run again
    held_again: int = 0  # quests a later kill caught again before they ran (their wait counts)

    @property
    def longest(self) -> float:
        return max(self.after.values(), default=0.0)

    def line(self) -> str:
        beacon = "?" if self.running is None else str(self.running)
        held = f"kill {self.number}: {self.group} (pid {self.pid}) had {self.in_flight} steps "
        held += f"in flight ({beacon} running by its beacon)"
        if not self.after and not self.waiting:
            return held + "; no open quest among them"
        broker = f"back on the queue after {fmt_s(self.requeued)}, "
        broker += f"all fetched again after {fmt_s(self.fetched)}"
        ran = f"{len(self.after)} quests running again within {self.longest:.1f} s"
        if self.after:
            ran += f" (median {statistics.median(self.after.values()):.1f} s)"
        if self.held_again:
            ran += f", {self.held_again} held again by a later kill first"
        never = f", {len(self.waiting)} NEVER" if self.waiting else ""
        return f"{held}; {broker}; {ran}{never}"


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


@dataclass
class Figures:
    quests: int
    completed: int
    lost: int
    duplicated_mutations: int
    duplicated_audit_rows: int
    double_charges: int
    seconds: float
    submitted_per_s: float
    kills: list[Kill]
    unfinished: dict[str, int]  # "status: reason" -> quests
    refreshes: int  # token refreshes the demo provider made
    refresh_reuse: int  # retired refresh tokens presented (the provider revokes the grant)
    made: dict[str, tuple[int, int]] = field(default_factory=dict)  # provider -> (made, twice)

    @property
    def redelivery_max(self) -> float:
        return max((k.longest for k in self.kills), default=0.0)

    @property
    def never_ran_again(self) -> int:
        return sum(len(k.waiting) for k in self.kills)

    @property
    def ok(self) -> bool:
        return (
            self.completed == self.quests
            and not (
                self.lost
                or self.duplicated_mutations
                or self.duplicated_audit_rows
                or self.double_charges
                or self.never_ran_again
                or self.refresh_reuse
            )
            and self.redelivery_max <= REDELIVERY_BOUND_S
        )


# -- the stack ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What one run does (the command line's options)."""

    quests: int = 200
    kill_every: float = 4.0
    deadline: float = 280.0
    rate: float = 1.0
    provider_hold: float = 0.3
    claude_hold: float = 0.0
    access_ttl: float = 60.0  # the provider's access tokens: refreshed every ttl - 30 s
    b_in_flight: int | None = None  # S2_WORKER_IN_FLIGHT of group b (None: as a)


def serve_held_claude(port: int, hold_s: float) -> None:
    """The offline Claude whose scripts start every reply ``hold_s`` late."""
    held = {
        name: Script(
            turns=tuple(
                dataclasses.replace(t, start_after_s=hold_s)
                for t in BUILTIN_SCRIPTS[name].turns
                if isinstance(t, Turn)
            )
        )
        for name in ("tasks", "github_issue", "slack_post")
    }
    uvicorn.run(create_app(held), host="127.0.0.1", port=port, log_level="warning")


def start_claude(s: Stack, hold_s: float) -> None:
    if not hold_s:
        s.start_claude()
        return
    port = free_port()
    argv = [sys.executable, "-m", "bench.soak", "--serve-claude", str(port), str(hold_s)]
    proc = Proc("held-claude", argv, env=s.env(), log_path=s.logs / "held-claude.log").start()
    s.procs["held-claude"] = proc
    s.claude_url = f"http://127.0.0.1:{port}"
    wait_http(s.claude_url + "/", proc=proc)


@dataclass(frozen=True)
class Providers:
    """The stand-ins' addresses, and the Slack channel the quests post in."""

    demo: str
    github: str
    slack: str
    channel: str = ""


def start_providers(s: Stack, plan: Plan) -> tuple[Providers, dict[str, str]]:
    """The three stand-ins, each holding its mutations ``plan.provider_hold`` seconds; the
    workers' environment that reaches them."""
    ports = {name: free_port() for name in PROVIDERS}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    ttl = ["--access-ttl", str(plan.access_ttl)]
    s.start("demo-provider", "demo-provider", "--port", str(ports["demo"]), *ttl)
    for name in ("github", "slack"):
        argv = [sys.executable, "-m", f"standins.{name}", "--port", str(ports[name]), *ttl]
        s.procs[name] = Proc(name, argv, env=s.env(), log_path=s.logs / f"{name}.log").start()
    for name, url in urls.items():
        wait_http(url + "/", proc=s.procs[name if name != "demo" else "demo-provider"])
    hold = {"delay_s": plan.provider_hold, "methods": ["POST"]}
    faults = {
        "demo": {**hold, "paths": ["/api/v1/tasks"]},
        "github": {**hold, "paths": [f"/repos/{OWNER}/{REPO}/issues"]},
        "slack": {"delay_s": plan.provider_hold, "methods": ["chat.postMessage"]},
    }
    for name, fault in faults.items():
        httpx.post(urls[name] + "/_faults", json=fault).raise_for_status()
    httpx.post(
        urls["github"] + "/_repos", json={"owner": OWNER, "name": REPO, "logins": [LOGIN]}
    ).raise_for_status()
    made = httpx.post(
        urls["slack"] + "/_channels", json={"team": TEAM, "name": "soak", "member": True}
    )
    made.raise_for_status()
    extra = {
        "S2_DEMO_PROVIDER_URL": urls["demo"],
        "S2_GITHUB_PROVIDER_URL": urls["github"],
        "S2_GITHUB_OAUTH_URL": urls["github"],
        "S2_SLACK_PROVIDER_URL": urls["slack"] + "/api",
        "S2_SLACK_OAUTH_URL": urls["slack"],
    }
    return Providers(urls["demo"], urls["github"], urls["slack"], made.json()["id"]), extra


def connect(
    s: Stack, company: uuid.UUID, name: str, login: dict[str, str], env: dict[str, str]
) -> None:
    """The company connects ``name`` as an operator does (``system2 integration connect``),
    its admin's browser approving at the stand-in and landing on the ingress's callback."""
    argv = [str(BIN / "system2"), "integration", "connect", str(company), name, "--no-wait"]
    done = subprocess.run(argv, env=s.env(**env), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    page = httpx.get(httpx.URL(done.stdout.strip()).copy_merge_params(login), follow_redirects=True)
    assert page.status_code == 200, page.text


def start_services(s: Stack, plan: Plan) -> tuple[Providers, uuid.UUID, dict[str, str]]:
    """The providers (their mutations held), Claude, an ingress (for the OAuth callbacks) and
    a company connected to all three; returns the providers, the company and the workers'
    extra environment."""
    key = new_key_entry(datetime.now(UTC))
    providers, reach = start_providers(s, plan)
    ingress_port = free_port()
    public = f"http://127.0.0.1:{ingress_port}"
    extra = {"S2_VAULT_KEYS": key, "S2_PUBLIC_URL": public, **reach, **SOAK_ENV}
    start_claude(s, plan.claude_hold)
    wait_http(
        public + "/healthz",
        proc=s.start("ingress", "ingress", "--port", str(ingress_port), **extra),
    )
    company, _ = s.company()
    logins = {
        "demo": {"login_hint": str(company)},
        "github": {"login": LOGIN},
        "slack": {"team": TEAM},
    }
    for name in PROVIDERS:
        connect(s, company, name, logins[name], extra)
    return providers, company, extra


def start_group(s: Stack, name: str, extra: dict[str, str], plan: Plan) -> Proc:
    if name.startswith("b") and plan.b_in_flight:
        extra = {**extra, "S2_WORKER_IN_FLIGHT": str(plan.b_in_flight)}
    return s.start(f"workers-{name}", "worker", "--processes", "1", **extra)


def goal(i: int, channel: str) -> str:
    """Quest ``i``'s goal: one mutation at ``PROVIDERS[i % 3]``."""
    return {
        "demo": f"[script:tasks] soak task {i}",
        "github": f"[script:github_issue] {OWNER} {REPO} soak issue {i}",
        "slack": f"[script:slack_post] {channel} soak message {i}",
    }[PROVIDERS[i % len(PROVIDERS)]]


async def submit_all(
    s: Stack,
    company: uuid.UUID,
    channel: str,
    n: int,
    rate: float,
    ids: list[str],
    done: list[float],
) -> None:
    """The submitter thread's body, on a loop of its own (``asyncio.run``) with its pool:
    quest ``i`` goes at ``i / rate`` s (later if submitting falls behind)."""
    from ingress.submit import QuestSpec, create_quest, enqueue_first_step
    from messages import Actor, ActorType
    from messages.transport import Publisher, build_broker

    actor = Actor(type=ActorType.operator, id="soak")
    broker = build_broker(s.settings.redis_url)
    t0 = time.monotonic()
    async with Database(s.settings.database_url, max_size=2) as db:
        for i in range(n):
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            async with db.tenant(company) as tx:
                quest, _ = await create_quest(
                    tx,
                    actor,
                    QuestSpec(goal=goal(i, channel), model="claude-sonnet-5-5"),
                )
            await enqueue_first_step(db, Publisher(broker), quest, actor)
            ids.append(str(quest.id))
    broker.close()
    done.append(time.monotonic() - t0)


# -- kills and redelivery ----------------------------------------------------------------


def kill(number: int, name: str, group: Proc, r: redis.Redis, admin: Admin) -> Kill:
    """SIGKILL the group; read, from the broker, the quest steps its process held then."""
    pids = [c.pid for c in psutil.Process(group.pid).children(recursive=True)]
    running = beacon_running(r, pids)
    group.signal(signal.SIGKILL)
    assert group.popen is not None
    group.popen.wait(10)
    at = time.time()
    acks = [acks_key(consumer, QUESTS) for consumer in consumers_of(r, pids)]
    held: list[bytes] = []
    for key in acks:  # untouched until its heartbeat lapses and maintenance requeues them
        held += r.smembers(key)  # type: ignore[arg-type]
    quests = quests_of(r, held)
    open_ = {
        str(q)
        for (q,) in admin.execute(
            "SELECT id FROM quests WHERE id = ANY(%s::uuid[]) AND status IN ('queued', 'running')",
            (list(quests),),
        )
    }
    pid = pids[0] if pids else group.pid
    messages = {m.decode() for m in held}
    return Kill(number, name, pid, at, len(held), running, acks, messages, waiting=open_)


def consumers_of(r: redis.Redis, pids: list[int]) -> list[str]:
    """The broker consumer ids (``host:pid:tag``) of these processes, from the heartbeats."""
    members = [m.decode() for m in r.zrange(heartbeats_key(), 0, -1)]  # type: ignore[union-attr]
    return [m for m in members if any(f":{pid}:" in m for pid in pids)]


def beacon_running(r: redis.Redis, pids: list[int]) -> int | None:
    for key in r.scan_iter(match=f"{WORKER_BEACON_PREFIX}*", count=500):
        raw = r.get(key)
        state = json.loads(raw) if raw else {}
        if state.get("pid") in pids:
            return int(state.get("in_flight", {}).get(QUESTS, 0))
    return None


def quests_of(r: redis.Redis, message_ids: list[bytes]) -> set[str]:
    """The quests of these quest-step messages (their bodies stay until acked)."""
    if not message_ids:
        return set()
    bodies = r.hmget(bodies_key(QUESTS), message_ids)
    return {json.loads(b)["args"][0]["payload"]["quest_id"] for b in bodies if b}


def note_held_again(kills: list[Kill]) -> None:
    """The newest kill caught quests that earlier ones held and that had not run since."""
    newest = kills[-1]
    print(f"kill {newest.number}: {newest.in_flight} in flight", flush=True)  # progress
    for earlier in kills[:-1]:
        earlier.held_again += len(earlier.waiting & newest.waiting)


def follow_messages(r: redis.Redis, kills: list[Kill]) -> None:
    """The broker's side: when a killed process's messages went back on the queue (another
    process's maintenance requeues its acks sets and deletes them) and when the last of
    them left it (fetched by a process; it may still wait there before it runs)."""
    now, moving = time.time(), [k for k in kills if k.messages]
    for k in moving:
        if k.requeued is None and not r.exists(*k.acks):
            k.requeued = now - k.at
    requeued = [k for k in moving if k.requeued is not None]
    if not requeued:
        return
    queued = {m.decode() for m in r.lrange(queue_key(QUESTS), 0, -1)}  # type: ignore[union-attr]
    for k in requeued:
        k.messages &= queued
        if not k.messages:
            k.fetched = now - k.at


def track(admin: Admin, kills: list[Kill]) -> None:
    """A quest a killed process held runs again when its step is claimed anew, or it ends,
    after the kill; the row's timestamps say when."""
    for k in kills:
        if not k.waiting:
            continue
        rows = admin.execute(
            "SELECT id::text, extract(epoch FROM step_claimed_at)::float8, "
            "extract(epoch FROM finished_at)::float8 FROM quests WHERE id = ANY(%s::uuid[])",
            (list(k.waiting),),
        )
        for quest, claimed, finished in rows:
            after = [float(t) - k.at for t in (claimed, finished) if t and float(t) > k.at]  # type: ignore[arg-type]
            if after:
                k.after[str(quest)] = min(after)
                k.waiting.discard(str(quest))


# -- the run -----------------------------------------------------------------------------


def soak(s: Stack, plan: Plan) -> Figures:
    providers, company, extra = start_services(s, plan)
    groups = {name: start_group(s, name, extra, plan) for name in ("a", "b")}
    wait_workers(s.settings.redis_url, 2, timeout=60)
    t0 = time.monotonic()
    ids: list[str] = []
    submitted: list[float] = []
    submitter = threading.Thread(
        target=lambda: asyncio.run(
            submit_all(s, company, providers.channel, plan.quests, plan.rate, ids, submitted)
        )
    )
    submitter.start()
    kills: list[Kill] = []
    turn = itertools.cycle(sorted(groups))
    r = redis.Redis.from_url(s.settings.redis_url)
    with psycopg.connect(s.settings.admin_database_url, autocommit=True) as admin:
        next_kill = time.monotonic() + plan.kill_every
        while time.monotonic() - t0 < plan.deadline and (
            submitter.is_alive() or open_quests(admin, ids)
        ):
            if time.monotonic() >= next_kill:
                name = next(turn)
                kills.append(kill(len(kills) + 1, groups[name].name, groups[name], r, admin))
                track(admin, kills)  # what ran until the kill, before it counts as held again
                note_held_again(kills)
                groups[name] = start_group(s, f"{name}{len(kills)}", extra, plan)
                next_kill = time.monotonic() + plan.kill_every
            follow_messages(r, kills)
            track(admin, kills)
            time.sleep(POLL_S)
        seconds = time.monotonic() - t0
        submitter.join(5)
        track(admin, kills)
        figures = measure(admin, providers, company, ids, s.logs)
    r.close()
    keep = ("messages", "acks", "waiting")
    detail = [{k: v for k, v in dataclasses.asdict(one).items() if k not in keep} for one in kills]
    (s.logs / "kills.json").write_text(json.dumps(detail))
    rate_seen = len(ids) / submitted[0] if submitted and submitted[0] else 0.0
    return dataclasses.replace(
        figures, kills=kills, seconds=round(seconds, 1), submitted_per_s=round(rate_seen, 1)
    )


def open_quests(admin: Admin, ids: list[str]) -> int:
    row = admin.execute(
        "SELECT count(*) FROM quests WHERE id = ANY(%s::uuid[]) AND status IN ('queued', 'running')",
        (ids,),
    ).fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


def measure(
    admin: Admin, providers: Providers, company: uuid.UUID, ids: list[str], logs: Path
) -> Figures:
    time.sleep(3)  # the last audit batches
    completed = admin.execute(
        "SELECT count(*) FROM quests WHERE id = ANY(%s::uuid[]) AND status = 'succeeded'", (ids,)
    ).fetchone()[0]  # type: ignore[index]
    unfinished = {
        f"{status}: {reason}": int(n)  # type: ignore[call-overload]
        for status, reason, n in admin.execute(
            "SELECT status, reason, count(*) FROM quests WHERE id = ANY(%s::uuid[]) "
            "AND status <> 'succeeded' GROUP BY status, reason ORDER BY count(*) DESC",
            (ids,),
        )
    }
    audit_dups = admin.execute(
        "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM activity_log "
        "WHERE company_id = %s AND action = ANY(%s) GROUP BY quest_id) per_quest",
        (company, ["task.created", "github.issue.created", "slack.message.posted"]),
    ).fetchone()[0]  # type: ignore[index]
    double = admin.execute(
        "SELECT count(*) FROM (SELECT quest_id, step FROM charges WHERE company_id = %s "
        "AND status = 'settled' GROUP BY quest_id, step HAVING count(*) > 1) twice",
        (company,),
    ).fetchone()[0]  # type: ignore[index]
    demo = httpx.get(providers.demo + "/_stats").json()
    (logs / "provider-stats.json").write_text(json.dumps(demo, indent=1))
    stats = demo["accounts"].get(str(company), {"mutations": 0, "refreshes": 0})
    succeeded = {
        str(i)
        for (i,) in admin.execute(
            "SELECT id FROM quests WHERE id = ANY(%s::uuid[]) AND status = 'succeeded'", (ids,)
        )
    }
    done = {
        name: sum(1 for n, q in enumerate(ids) if q in succeeded and PROVIDERS[n % 3] == name)
        for name in PROVIDERS
    }
    made = {"demo": (int(stats["mutations"]), max(0, int(stats["mutations"]) - done["demo"]))}
    made |= made_at_github_and_slack(providers)
    return Figures(
        quests=len(ids),
        completed=int(completed),
        lost=len(ids) - int(completed),
        duplicated_mutations=sum(twice for _, twice in made.values()),
        duplicated_audit_rows=int(audit_dups),
        double_charges=int(double),
        seconds=0.0,
        submitted_per_s=0.0,
        kills=[],
        unfinished=unfinished,
        refreshes=int(stats["refreshes"]),
        refresh_reuse=int(demo["totals"]["refresh_reuse_detected"]),
        made=made,
    )


def made_at_github_and_slack(providers: Providers) -> dict[str, tuple[int, int]]:
    """Issues and messages made, and how many of them repeat one already made (by text)."""
    (repo,) = httpx.get(providers.github + "/_state").json()["repos"]
    titles = [issue["title"] for issue in repo["issues"]]
    team = httpx.get(providers.slack + "/_state").json()["teams"][TEAM]
    (channel,) = [c for c in team["channels"] if c["id"] == providers.channel]
    texts = [m["text"] for m in channel["messages"]]
    return {
        "github": (len(titles), len(titles) - len(set(titles))),
        "slack": (len(texts), len(texts) - len(set(texts))),
    }


def report(figures: Figures) -> None:
    for k in figures.kills:
        print(k.line())
    held = [k.in_flight for k in figures.kills]
    print(
        f"quests {figures.quests}: completed {figures.completed} / lost {figures.lost} / "
        f"duplicated mutations {figures.duplicated_mutations} / duplicated audit rows "
        f"{figures.duplicated_audit_rows} / double charges {figures.double_charges}  "
        f"({len(figures.kills)} workers killed, {figures.seconds} s, submitted at "
        f"{figures.submitted_per_s}/s)"
    )
    print(
        "made: "
        + ", ".join(f"{name} {n} ({twice} twice)" for name, (n, twice) in figures.made.items())
    )
    print(
        f"redelivery max {figures.redelivery_max:.1f} s (bound {REDELIVERY_BOUND_S:g} s), "
        f"never ran again {figures.never_ran_again}; in flight at kill max {max(held, default=0)}"
    )
    print(
        f"provider: {figures.refreshes} token refreshes, refresh token reuse detected "
        f"{figures.refresh_reuse} (it revokes the grant)"
    )
    for why, n in figures.unfinished.items():
        print(f"not succeeded: {n} quests {why}")
    summary = {k: v for k, v in dataclasses.asdict(figures).items() if k != "kills"}
    print(json.dumps(summary), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quests", type=int, default=Plan.quests)
    ap.add_argument("--kill-every", type=float, default=Plan.kill_every, help="seconds")
    ap.add_argument("--deadline", type=float, default=Plan.deadline, help="seconds at most")
    ap.add_argument("--rate", type=float, default=Plan.rate, help="quests submitted per second")
    ap.add_argument(
        "--provider-hold",
        type=float,
        default=Plan.provider_hold,
        help="seconds a task creation waits",
    )
    ap.add_argument(
        "--claude-hold", type=float, default=Plan.claude_hold, help="seconds before a reply starts"
    )
    ap.add_argument(
        "--access-ttl", type=float, default=Plan.access_ttl, help="the provider's token lifetime"
    )
    ap.add_argument(
        "--b-in-flight", type=int, help="S2_WORKER_IN_FLIGHT of group b (default: as a)"
    )
    ap.add_argument("--serve-claude", nargs=2, metavar=("PORT", "HOLD_S"), help=argparse.SUPPRESS)
    args = vars(ap.parse_args(argv))
    served = args.pop("serve_claude")
    if served:
        serve_held_claude(int(served[0]), float(served[1]))
        return 0
    with stack() as s:
        figures = soak(s, Plan(**args))
        logs = Path(s.logs)
    report(figures)
    print(f"{'ok' if figures.ok else 'FAILED'}; process logs in {logs}", file=sys.stderr)
    return 0 if figures.ok else 1


if __name__ == "__main__":
    sys.exit(main())
