"""Prometheus metrics as ops would read them, scraped from real processes.

A demo-sized batch of quests is submitted over HTTP while no worker runs, so the ``quests``
queue fills; then a group of worker processes (one metrics port for the group) drains it.
The ingress's ``/metrics`` and the group's port are scraped before, during and after, and
the numbers must tell that story: the depth rises and falls to zero, and the counters add up
to the quests and steps that ran. Also: an ingress of several processes counts all of them,
a worker group's one port sums its processes and outlives a killed one, a worker process run
alone serves its own, a cancel is timed, a dead-lettered message is counted and shown in its
queue, and every Fly process group has its scrape endpoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis
from dramatiq import Message
from prometheus_client.parser import text_string_to_metric_families

from integrations import PROVIDERS
from messages.transport import build_broker
from system2.ops.health import children_of
from system2.procs import Proc, free_port, wait_http, wait_workers
from tests.conftest import Stack, Tenant, system2
from tests.support import InTenant, quest_state, submit, wait_finished, wait_for
from workers.fleet import STARTUP_S

pytestmark = pytest.mark.slow

SUBMIT_ROUTE = "/v1/companies/{company_id}/quests"
QUESTS = 12


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    text = httpx.get(url, timeout=5).text
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def total(samples: Iterable[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(
        value
        for n, have, value in samples
        if n == name and all(have.get(k) == v for k, v in labels.items())
    )


def served(stack: Stack, name: str = "workers") -> list[dict[str, Any]]:
    """The ``metrics served`` log lines of the stack's process ``name``."""
    lines = [json.loads(x) for x in stack.procs[name].output().splitlines() if x.startswith("{")]
    return [line for line in lines if line.get("event") == "metrics served"]


def worker_ports(stack: Stack) -> list[int]:
    """The metrics ports of a worker group: one, its parent's, for all of its processes."""
    return sorted(line["port"] for line in served(stack))


def test_queue_depth_rises_and_falls_and_outcomes_match_the_quests_run(
    stack: Stack, in_tenant: InTenant, tenant: Tenant
) -> None:
    ingress = stack.start_ingress()
    goals = [
        f"[script:{'answer' if i % 2 else 'notes'}] demo quest {i} {uuid.uuid4().hex[:6]}"
        for i in range(QUESTS)
    ]
    quest_ids = []
    for goal in goals:
        resp = httpx.post(
            f"{ingress}/v1/companies/{tenant.id}/quests",
            json={"goal": goal},
            headers=tenant.headers(),
        )
        assert resp.status_code == 202, resp.text
        quest_ids.append(uuid.UUID(resp.json()["quest_id"]))
    time.sleep(0.2)

    queued = scrape(f"{ingress}/metrics")
    assert total(queued, "s2_queue_stats_up") == 1
    assert total(queued, "s2_queue_depth", queue="quests") == QUESTS
    assert total(queued, "s2_queue_oldest_age_seconds", queue="quests") > 0
    assert total(queued, "s2_http_requests_total", route=SUBMIT_ROUTE, status="202") == QUESTS
    assert total(queued, "s2_ingress_submits_total", status="202") == QUESTS

    stack.start_workers(processes=2, S2_METRICS_PORT=str(free_port()))
    (port,) = wait_for(lambda: worker_ports(stack))  # one port for the group's two processes
    depths, seen_by_workers = [], []
    for _ in range(200):  # while the batch runs: the depth falls as workers take the quests
        depths.append(total(scrape(f"{ingress}/metrics"), "s2_queue_depth", queue="quests"))
        during = scrape(f"http://127.0.0.1:{port}/metrics")
        seen_by_workers.append(total(during, "s2_queue_depth", queue="quests"))
        if depths[-1] == 0:
            break
        time.sleep(0.05)
    finished = [wait_finished(in_tenant, tenant.id, q, timeout=60) for q in quest_ids]
    assert {q.status for q in finished} == {"succeeded"}

    after = scrape(f"{ingress}/metrics")
    workers = scrape(f"http://127.0.0.1:{port}/metrics")
    assert worker_ports(stack) == [port]
    assert max(depths) <= QUESTS and depths[-1] == 0 and max(seen_by_workers) <= QUESTS
    for samples in (after, workers):  # both report the queues, and they are empty now
        assert total(samples, "s2_queue_depth", queue="quests") == 0
        assert total(samples, "s2_queue_in_progress", queue="quests") == 0
        assert total(samples, "s2_queue_dead_letters", queue="quests") == 0
    assert total(workers, "s2_provider_breaker_state", provider="demo", state="closed") == 1
    # The group's port reports the queues and the breakers once, not once per process.
    assert sum(1 for n, _, _ in workers if n == "s2_queue_stats_up") == 1
    breakers = sum(1 for n, _, _ in workers if n == "s2_provider_breaker_state")
    assert breakers == 3 * len(PROVIDERS)  # closed, probing, open: for each provider

    steps = sum(q.steps_done for q in finished)  # answer: 1 step, notes: 2
    assert steps == QUESTS // 2 * 3
    assert total(workers, "s2_quests_finished_total", status="succeeded") == QUESTS
    assert total(workers, "s2_quests_finished_total") == QUESTS
    assert total(workers, "s2_quest_steps_total", result="done") == steps
    assert total(workers, "s2_messages_total", actor="quest_step", result="ok") == steps
    assert total(workers, "s2_claude_calls_total", result="ok") == steps
    assert total(workers, "s2_claude_tokens_total", kind="input") > 0
    assert total(workers, "s2_claude_tokens_total", kind="output") > 0
    cost = sum(q.cost_usd_micros for q in finished)
    assert total(workers, "s2_claude_cost_usd_micros_total") == cost > 0
    assert total(workers, "s2_guard_spend_usd_micros_total") == cost
    assert total(workers, "s2_messages_dead_lettered_total") == 0


def test_an_ingress_of_several_processes_reports_the_requests_of_all(stack: Stack) -> None:
    port = free_port()
    proc = Proc(
        "ingress-2",
        system2("ingress", "--port", str(port), "--workers", "2"),
        env=stack.env(),
        log_path=stack.logs / "ingress-2.log",
    ).start()
    stack.procs["ingress-2"] = proc
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", proc=proc)
    for _ in range(30):  # a connection each: the two processes share them out
        assert httpx.get(url + "/readyz").status_code == 200
    for _ in range(5):  # whichever process answers the scrape counts all 30
        assert total(scrape(url + "/metrics"), "s2_http_requests_total", route="/readyz") == 30


def test_a_several_process_ingress_stops_on_sigterm_and_removes_its_metrics_dir(
    stack: Stack,
) -> None:
    port = free_port()
    command = system2("ingress", "--port", str(port), "--workers", "2")
    env = {k: v for k, v in stack.env().items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        # The command became the ingress itself (same PID: its signals are uvicorn's), with
        # the metrics directory in its own environment, not in the caller's.
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        shared = next(e for e in environ if e.startswith(b"PROMETHEUS_MULTIPROC_DIR="))
        directory = Path(shared.split(b"=", 1)[1].decode())
        assert directory.is_dir()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not directory.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def steps_counted(path: Path) -> float:
    """The quest steps one worker process counted done, read from its own metrics file."""
    from prometheus_client.multiprocess import MultiProcessCollector

    return sum(
        sample.value
        for metric in MultiProcessCollector.merge([str(path)])
        for sample in metric.samples
        if sample.name == "s2_messages_total"
        and sample.labels.get("actor") == "quest_step"
        and sample.labels.get("result") == "ok"
    )


def test_a_worker_group_serves_one_port_summing_its_processes_and_outlives_one(
    stack: Stack, in_tenant: InTenant, tenant: Tenant
) -> None:
    # One step at a time per process; a quick stop, as the test ends with steps held by Claude.
    proc = stack.start_workers(
        processes=2, in_flight=1, S2_METRICS_PORT=str(free_port()), S2_SHUTDOWN_GRACE_S="0.5"
    )
    (port,) = wait_for(lambda: worker_ports(stack))
    url = f"http://127.0.0.1:{port}/metrics"
    directory = Path(served(stack)[0]["directory"])
    children = set(children_of(proc.pid))
    assert len(children) == 2
    redis_url = stack.settings.redis_url

    quick = [
        submit(in_tenant, redis_url, tenant.id, f"[script:answer] quick {i}") for i in range(4)
    ]
    for quest in quick:
        assert wait_finished(in_tenant, tenant.id, quest.id).status == "succeeded"
    ran = scrape(url)  # whichever process ran which step, the port counts them all
    assert total(ran, "s2_quests_finished_total", status="succeeded") == 4
    assert total(ran, "s2_messages_total", actor="quest_step", result="ok") == 4
    counted = {pid: steps_counted(directory / f"counter_{pid}.db") for pid in children}
    assert sum(counted.values()) == 4

    def waiting(n: int) -> Any:
        def check() -> Any:
            samples = scrape(url)
            return samples if total(samples, "s2_steps_waiting", on="claude") == n else None

        return check

    # Each process takes one slow step (its one slot) and waits on Claude: the port sums both.
    for i in range(2):
        submit(in_tenant, redis_url, tenant.id, f"[script:slow] hold on {i}")
    both = wait_for(waiting(2), timeout=30)
    assert total(both, "s2_messages_in_progress", actor="quest_step") == 2
    assert {f"gauge_livesum_{pid}.db" for pid in children} <= set(os.listdir(directory))

    # kill -9 the process that counted the most: its gauges go at once, its counts stay, the
    # group's parent starts another process in its place, and the port answers throughout.
    victim = max(counted, key=lambda pid: counted[pid])
    assert counted[victim] > 0
    # Past its own start-up window (from when it started, which a slow machine puts seconds
    # after the group's): a death within it stops the group instead of being replaced.
    time.sleep(max(0.0, psutil.Process(victim).create_time() + STARTUP_S + 1 - time.time()))
    os.kill(victim, signal.SIGKILL)
    one = wait_for(waiting(1), timeout=10)
    assert total(one, "s2_messages_in_progress", actor="quest_step") == 1
    assert total(one, "s2_quests_finished_total", status="succeeded") == 4
    assert total(one, "s2_messages_total", actor="quest_step", result="ok") == 4
    assert not (directory / f"gauge_livesum_{victim}.db").exists()
    now = wait_for(
        lambda: c if len(c := set(children_of(proc.pid))) == 2 and victim not in c else None
    )
    (newcomer,) = now - children
    wait_workers(redis_url, 2, proc=proc)
    # The dead process's step comes back once its heartbeat is stale; the newcomer takes it
    # (the other process's one slot is busy), and its series are summed in as well.
    again = wait_for(waiting(2), timeout=60)
    assert total(again, "s2_messages_in_progress", actor="quest_step") == 2
    assert total(again, "s2_messages_total", actor="quest_step", result="ok") == 4
    assert (directory / f"gauge_livesum_{newcomer}.db").exists()
    assert worker_ports(stack) == [port]

    # SIGTERM to the group's main process: every process stops, and the directory goes.
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.popen is not None
    assert proc.popen.wait(timeout=30) == 0, proc.output()[-2000:]
    assert not directory.exists()


def test_a_worker_process_run_alone_serves_its_own_registry(stack: Stack) -> None:
    port = free_port()
    env = {
        k: v
        for k, v in stack.env(S2_METRICS_PORT=str(port)).items()
        if k != "PROMETHEUS_MULTIPROC_DIR"
    }
    argv = [sys.executable, "-m", "workers.app", "--queues", "control"]
    proc = Proc("alone", argv, env=env, log_path=stack.logs / "alone.log").start()
    stack.procs["alone"] = proc
    wait_http(f"http://127.0.0.1:{port}/metrics", proc=proc, timeout=60)
    samples = scrape(f"http://127.0.0.1:{port}/metrics")
    assert [line["port"] for line in served(stack, "alone")] == [port]
    assert total(samples, "s2_queue_stats_up") == 1  # on the base port: the queues too
    assert any(n == "process_cpu_seconds_total" for n, _, _ in samples)  # its own registry


@pytest.mark.parametrize("env", ["dev", "staging", "production"])
def test_every_fly_process_group_has_its_scrape_endpoint(env: str) -> None:
    fly = Path(__file__).resolve().parents[1] / "deploy" / "fly"
    cfg = tomllib.loads((fly / f"{env}.toml").read_text())
    endpoints = {group: m for m in cfg["metrics"] for group in m["processes"]}
    assert sorted(endpoints) == sorted(cfg["processes"])  # each group once
    assert all(m["path"] == "/metrics" for m in cfg["metrics"])
    assert endpoints["ingress"]["port"] == cfg["http_service"]["internal_port"]
    for group in ("worker", "audit"):  # `system2 worker` groups: their parent serves the port
        assert cfg["processes"][group].startswith("system2 ops run-worker ")
        assert endpoints[group]["port"] == int(cfg["env"]["S2_METRICS_PORT"]) > 0
    assert cfg["env"]["S2_METRICS_HOST"] == "::"  # IPv4 and IPv6 (Fly's private network)
    assert cfg["metrics"] == tomllib.loads((fly / "staging.toml").read_text())["metrics"]


def test_a_cancel_is_counted_with_its_latency(
    stack: Stack, in_tenant: InTenant, tenant: Tenant
) -> None:
    ingress = stack.start_ingress()
    stack.start_workers(processes=1, S2_METRICS_PORT=str(free_port()))
    port = wait_for(lambda: worker_ports(stack))[0]
    quest = submit(in_tenant, stack.settings.redis_url, tenant.id, "[script:slow] take your time")
    wait_for(lambda: quest_state(in_tenant, tenant.id, quest.id).status == "running", timeout=20)
    time.sleep(0.3)  # the step is waiting on the offline Claude, which holds its reply 30 s
    t0 = time.monotonic()
    resp = httpx.post(
        f"{ingress}/v1/companies/{tenant.id}/quests/{quest.id}/cancel",
        json={"reason": "metrics test"},
        headers=tenant.headers(),
    )
    assert resp.status_code == 202
    assert wait_finished(in_tenant, tenant.id, quest.id, timeout=10).status == "cancelled"
    waited = time.monotonic() - t0

    samples = scrape(f"http://127.0.0.1:{port}/metrics")
    assert total(samples, "s2_quests_finished_total", status="cancelled") == 1
    assert total(samples, "s2_cancel_latency_seconds_count") == 1
    assert 0 < total(samples, "s2_cancel_latency_seconds_sum") <= waited + 1
    assert total(samples, "s2_claude_calls_total", result="cancelled") == 1


def test_a_dead_lettered_message_is_counted_and_shown_in_the_queue(
    stack: Stack, tenant: Tenant
) -> None:
    stack.start_workers(processes=1, S2_METRICS_PORT=str(free_port()))
    port = wait_for(lambda: worker_ports(stack))[0]
    nobodys = {  # a valid envelope for a quest that does not exist: its actor refuses it
        "company_id": str(tenant.id),
        "actor": {"type": "user", "id": "u"},
        "correlation_id": str(uuid.uuid4()),
        "payload": {"quest_id": str(uuid.uuid4()), "step": 1},
    }
    broker = build_broker(stack.settings.redis_url)
    try:  # refused at once, never retried: one by its actor, one by the consumer before it
        broker.enqueue(Message("quests", "quest_step", (nobodys,), {}, {}))
        broker.enqueue(Message("quests", "quest_step", ({"not": "an envelope"},), {}, {}))
    finally:
        broker.close()
    client = redis.Redis.from_url(stack.settings.redis_url)
    wait_for(lambda: client.zcard("dramatiq:quests.XQ") == 2, timeout=20)
    samples = wait_for(
        lambda: (
            s
            if total(
                s := scrape(f"http://127.0.0.1:{port}/metrics"),
                "s2_messages_dead_lettered_total",
                queue="quests",
            )
            == 2
            else None
        )
    )
    assert total(samples, "s2_messages_total", queue="quests", result="dead") == 1
    assert total(samples, "s2_messages_dead_lettered_total", actor="quest_step") == 2
    assert (
        total(samples, "s2_messages_rejected_total", queue="quests", reason="invalid_envelope") == 1
    )
    assert total(samples, "s2_queue_dead_letters", queue="quests") == 2
