"""Workers under a supervisor: SIGTERM finishes or requeues the current step and exits 0;
the health check proves a group is consuming, not just alive."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import redis
from typer.testing import CliRunner, Result

from messages.redis_keys import fair_waiting_key, queue_key
from runtime.settings import Settings
from store import quests as quests_store
from system2 import cli
from system2.procs import Proc, free_port, wait_workers
from tests.conftest import Stack, Tenant, running_stack, serve, system2
from tests.support import InTenant, submit, wait_finished, wait_for

pytestmark = pytest.mark.slow

# A stand-in Claude whose replies are held a few seconds: long enough to signal a worker
# mid-call, short enough for CI (the built-in [script:slow] holds 30 s).
HELD_CLAUDE = """
import sys, uvicorn
from standins.offline_claude.server import create_app
from standins.offline_claude.scripts import Script, Text, ToolUse, Turn
scripts = {
    "held": Script(turns=(Turn((Text("Answered after a while."),), hold_s=2.5),)),
    "held_note": Script(turns=(
        Turn((Text("A note, after some thought."), ToolUse("add_note", {"text": "held note"})),
             stop_reason="tool_use", hold_s=2.5),
        Turn((Text("Noted."),)),
    )),
}
uvicorn.run(create_app(scripts), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


@pytest.fixture(scope="module")
def held_claude(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve(
        "held-claude", tmp_path_factory, lambda port: [sys.executable, "-c", HELD_CLAUDE, str(port)]
    )


@pytest.fixture
def held_stack(settings: Settings, held_claude: str, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(settings, held_claude, tmp_path) as s:
        yield s


def start_worker(stack: Stack, name: str, *args: str, **env: str) -> Proc:
    argv = system2("worker", "--processes", "1", *args)
    proc = Proc(name, argv, env=stack.env(**env), log_path=stack.logs / f"{name}.log").start()
    stack.procs[name] = proc
    wait_workers(stack.settings.redis_url, 1, proc=proc)
    return proc


def claimed_at(in_tenant: InTenant, company: uuid.UUID, quest: uuid.UUID) -> datetime | None:
    q = in_tenant(company, lambda tx: quests_store.get(tx, quest))
    assert q is not None
    return q.step_claimed_at if q.steps_done == 0 else None


def in_call(
    in_tenant: InTenant, company: uuid.UUID, quest: uuid.UUID, after: datetime | None
) -> bool:
    """A worker claimed the quest's first step (after ``after``) and has not finished it: it
    is in the held Claude call, which comes right after the claim."""
    at = claimed_at(in_tenant, company, quest)
    if at is None or (after is not None and at <= after):
        return False
    time.sleep(0.3)
    return True


def sigterm_main_process(proc: Proc) -> tuple[int, float]:
    """SIGTERM to the worker's main process only, as a supervisor (Fly's init, Docker,
    systemd) sends it; returns its exit code and how long it took to exit."""
    assert proc.popen is not None
    t0 = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    code = proc.popen.wait(timeout=30)
    return code, time.monotonic() - t0


def quest_steps_waiting(client: redis.Redis) -> int:
    """Quest steps waiting for a worker: in the queue's intake and in the companies' lanes
    (``workers.fair_queue``)."""
    lanes = sum(int(n) for n in client.hvals(fair_waiting_key("quests")))
    return int(client.llen(queue_key("quests"))) + lanes


def test_sigterm_mid_step_hands_it_back_or_finishes_it_and_exits_0(
    held_stack: Stack, in_tenant: InTenant, tenant: Tenant
) -> None:
    # 1. Past its shutdown grace, a worker cuts the step, puts its message back at the head of
    # the queue at once (not after the heartbeat timeout) and exits 0.
    first = start_worker(held_stack, "w1", S2_SHUTDOWN_GRACE_S="0.5")
    quest = submit(
        in_tenant, held_stack.settings.redis_url, tenant.id, "[script:held] stop me twice"
    )
    wait_for(lambda: in_call(in_tenant, tenant.id, quest.id, None), timeout=15)
    code, took = sigterm_main_process(first)
    assert code == 0, first.output()[-2000:]
    assert took < 5, f"took {took:.1f}s to stop"
    left = claimed_at(in_tenant, tenant.id, quest.id)
    assert left is not None  # cut mid-call: not finished, not lost
    rds = redis.Redis.from_url(held_stack.settings.redis_url)
    assert quest_steps_waiting(rds) == 1, "handed back to the queue"

    # 2. The next worker takes it at once and, SIGTERMed mid-call within its grace, finishes
    # the step before exiting 0.
    second = start_worker(held_stack, "w2", S2_SHUTDOWN_GRACE_S="20")
    wait_for(lambda: in_call(in_tenant, tenant.id, quest.id, left), timeout=10)
    code, took = sigterm_main_process(second)
    assert code == 0, second.output()[-2000:]
    assert took < 10, f"took {took:.1f}s to stop"
    done = wait_finished(in_tenant, tenant.id, quest.id, timeout=5)
    assert done.status == "succeeded", done.reason
    assert done.steps_done == 1
    assert held_stack.live_worker_count() == 0  # beacons are removed on a clean stop


def health(settings: Settings, *args: str) -> Result:
    """`system2 ops worker-health …`, in process (the real command; no interpreter start)."""
    return CliRunner().invoke(
        cli.app, ["ops", "worker-health", *args], env={"S2_REDIS_URL": settings.redis_url}
    )


def test_health_proves_the_group_is_consuming_and_run_worker_serves_it(
    held_stack: Stack, in_tenant: InTenant, tenant: Tenant, settings: Settings
) -> None:
    none = health(settings)
    assert none.exit_code == 1
    assert (
        none.stderr.strip() == f"unhealthy: no live worker process on host {socket.gethostname()}"
    )

    # The group as Fly runs it: run-worker supervising `system2 worker`, GET /health for Fly.
    port = free_port()
    argv = system2(
        "ops", "run-worker", "--health-port", str(port), "--health-host", "127.0.0.1",
        "--max-idle-s", "1", "--processes", "1", "--in-flight", "1", "--queues", "quests", "control",
    )  # fmt: skip
    proc = Proc("run-worker", argv, env=held_stack.env(), log_path=held_stack.logs / "rw.log")
    held_stack.procs["run-worker"] = proc.start()
    wait_workers(settings.redis_url, 1, proc=proc)
    url = f"http://127.0.0.1:{port}/health"

    def answer() -> httpx.Response | None:
        r = httpx.get(url, timeout=5)
        return r if r.status_code == 200 else None

    body = wait_for(answer, timeout=10).json()
    assert body["ok"] is True
    assert sorted(body["workers"][0]["queues"]) == ["control", "quests"]

    ok = health(settings, "--queues", "quests", "--queues", "control")
    assert ok.exit_code == 0, ok.stderr
    assert ok.stderr.startswith("ok: 1 worker process consuming control, quests")
    audit = health(settings, "--queues", "audit")
    assert audit.exit_code == 1
    assert "no worker process on host" in audit.stderr and "consumes queue audit" in audit.stderr

    # Alive but not keeping up: its one slot is held, the rest waits on the queue.
    for n in range(4):
        submit(in_tenant, settings.redis_url, tenant.id, f"[script:held] backlog {n}")
    client = redis.Redis.from_url(settings.redis_url)
    wait_for(lambda: quest_steps_waiting(client) > 0, timeout=10)
    stuck = health(settings, "--queues", "quests", "--max-idle-s", "1", "--json")
    assert stuck.exit_code == 1
    assert "waiting messages but no worker process" in stuck.stderr and "stuck" in stuck.stderr
    details = json.loads(stuck.stdout)
    assert details["ok"] is False and details["queues"][0]["waiting"] >= 1
    served = httpx.get(url, timeout=5)
    assert served.status_code == 503 and "stuck" in served.json()["reason"]
    patient = health(settings, "--queues", "quests", "--max-idle-s", "120")
    assert patient.exit_code == 0, patient.stderr

    # run-worker passes SIGTERM to the worker only and exits with its code.
    code, took = sigterm_main_process(proc)
    assert code == 0, proc.output()[-2000:]
    assert took < 10
    assert quest_steps_waiting(client) >= 2  # the backlog is back on the queue, not lost
