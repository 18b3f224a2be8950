"""Prometheus metrics as ops would read them, scraped from real processes.

A demo-sized batch of quests is submitted over HTTP while no worker runs, so the ``quests``
queue fills; then worker processes (each serving its own metrics port) drain it. The
ingress's ``/metrics`` and every worker port are scraped before, during and after, and the
numbers must tell that story: the depth rises and falls to zero, and the counters add up to
the quests and steps that ran. Also: an ingress of several processes counts all of them, a
cancel is timed, a dead-lettered message is counted and shown in its queue.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import httpx
import pytest
import redis
from dramatiq import Message
from prometheus_client.parser import text_string_to_metric_families

from messages.transport import build_broker
from system2.procs import Proc, free_port, wait_http
from tests.conftest import Stack, Tenant, system2
from tests.support import InTenant, quest_state, submit, wait_finished, wait_for

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


def worker_ports(stack: Stack) -> list[int]:
    lines = [
        json.loads(x) for x in stack.procs["workers"].output().splitlines() if x.startswith("{")
    ]
    return sorted(line["port"] for line in lines if line.get("event") == "metrics served")


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
    ports = wait_for(lambda: ports if len(ports := worker_ports(stack)) == 2 else None)
    depths, seen_by_workers = [], []
    for _ in range(200):  # while the batch runs: the depth falls as workers take the quests
        depths.append(total(scrape(f"{ingress}/metrics"), "s2_queue_depth", queue="quests"))
        during = scrape(f"http://127.0.0.1:{ports[0]}/metrics")
        seen_by_workers.append(total(during, "s2_queue_depth", queue="quests"))
        if depths[-1] == 0:
            break
        time.sleep(0.05)
    finished = [wait_finished(in_tenant, tenant.id, q, timeout=60) for q in quest_ids]
    assert {q.status for q in finished} == {"succeeded"}

    after = scrape(f"{ingress}/metrics")
    workers = [s for port in ports for s in scrape(f"http://127.0.0.1:{port}/metrics")]
    base = scrape(f"http://127.0.0.1:{ports[0]}/metrics")
    assert max(depths) <= QUESTS and depths[-1] == 0 and max(seen_by_workers) <= QUESTS
    for samples in (after, base):  # both report the queues, and they are empty now
        assert total(samples, "s2_queue_depth", queue="quests") == 0
        assert total(samples, "s2_queue_in_progress", queue="quests") == 0
        assert total(samples, "s2_queue_dead_letters", queue="quests") == 0
    assert total(base, "s2_provider_breaker_state", provider="demo", state="closed") == 1

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
