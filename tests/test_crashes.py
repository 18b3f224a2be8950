"""Workers killed with SIGKILL mid-step: the step is redelivered within seconds, resumes from
what was stored, and repeats no mutation, audit row or charge. A step that keeps killing its
worker is dead-lettered. Real worker processes, Redis, Postgres, offline Claude, demo provider."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from typing import Any

import httpx
import pytest
import redis

from store import activity as activity_store
from store import charges as charges_store
from store import notes as notes_store
from store.activity import ActivityFilter
from system2.procs import Proc
from tests.conftest import Stack, Tenant, system2
from tests.support import InTenant, provider_faults, quest_state, submit, wait_finished, wait_for
from tests.test_integrations import connect, fresh_key, provider_stats

pytestmark = pytest.mark.slow
FAST = {"S2_BROKER_HEARTBEAT_MS": "5000", "S2_BROKER_MAINTENANCE_CHANCE": "1000000"}


def kill(proc: Proc) -> float:
    """SIGKILL the worker group (the Dramatiq parent and its children); returns when."""
    proc.signal(signal.SIGKILL)
    assert proc.popen is not None
    proc.popen.wait(10)
    return time.monotonic()


def charges(in_tenant: InTenant, tenant: Tenant, quest_id: Any) -> list[charges_store.Charge]:
    return in_tenant(tenant.id, lambda tx: charges_store.for_quest(tx, quest_id))


def audit(in_tenant: InTenant, tenant: Tenant, quest_id: Any, action: str) -> list[Any]:
    wanted = ActivityFilter(quest_id=quest_id, action=action)
    rows, _ = in_tenant(tenant.id, lambda tx: activity_store.page(tx, wanted))
    return rows


def redelivered(
    in_tenant: InTenant, tenant: Tenant, quest_id: Any, seen: int, killed_at: float
) -> float:
    """Seconds from the kill to the step running again (a new claim or a new charge)."""
    before = quest_state(in_tenant, tenant.id, quest_id).step_claimed_at

    def again() -> bool:
        q = quest_state(in_tenant, tenant.id, quest_id)
        return (
            len(charges(in_tenant, tenant, quest_id)) > seen
            or q.step_claimed_at != before
            or q.finished
        )

    wait_for(again, timeout=30, every=0.05)
    return time.monotonic() - killed_at


def test_killed_during_a_claude_call_the_step_is_redelivered_and_charged_once(
    stack: Stack, in_tenant: InTenant, tenant: Tenant
) -> None:
    first = stack.start_workers("first", processes=1, **FAST)
    quest = submit(
        in_tenant,
        stack.settings.redis_url,
        tenant.id,
        "[script:brief_hold_notes] remember the plan",
    )
    wait_for(
        lambda: [c.status for c in charges(in_tenant, tenant, quest.id)] == ["open"], timeout=20
    )
    killed_at = kill(first)
    stack.start_workers("second", processes=1, **FAST)
    assert redelivered(in_tenant, tenant, quest.id, 1, killed_at) < 15
    done = wait_finished(in_tenant, tenant.id, quest.id, timeout=30)
    assert done.status == "succeeded"
    statuses = [c.status for c in charges(in_tenant, tenant, quest.id)]
    assert statuses == ["kept", "settled", "settled"]
    assert len(in_tenant(tenant.id, notes_store.recent)) == 1
    wait_for(lambda: audit(in_tenant, tenant, quest.id, "quest.succeeded"))
    assert len(audit(in_tenant, tenant, quest.id, "note.added")) == 1
    assert len(audit(in_tenant, tenant, quest.id, "quest.started")) == 1


@pytest.fixture
def connected(stack: Stack, tenant: Tenant, demo_provider: str) -> str:
    stack.base_env.update(S2_VAULT_KEYS=fresh_key(), S2_DEMO_PROVIDER_URL=demo_provider)
    httpx.delete(demo_provider + "/_faults")
    connect(stack, tenant)
    return demo_provider


def test_killed_during_a_tool_call_the_provider_mutates_once(
    stack: Stack, in_tenant: InTenant, tenant: Tenant, connected: str
) -> None:
    with provider_faults(connected, delay_s=3, paths=["/api/v1/tasks"], methods=["POST"]):
        first = stack.start_workers("first", processes=1, **FAST)
        quest = submit(
            in_tenant, stack.settings.redis_url, tenant.id, "[script:tasks] renew the lease"
        )
        wait_for(
            lambda: quest_state(in_tenant, tenant.id, quest.id).cost_usd_micros > 0, timeout=20
        )  # Claude replied
        time.sleep(0.5)  # the tool call is in flight at the provider
        killed_at = kill(first)
    stack.start_workers("second", processes=1, **FAST)
    assert redelivered(in_tenant, tenant, quest.id, 1, killed_at) < 15
    assert wait_finished(in_tenant, tenant.id, quest.id, timeout=30).status == "succeeded"
    assert provider_stats(connected, tenant.id)["mutations"] == 1
    assert [c.status for c in charges(in_tenant, tenant, quest.id)] == ["settled", "settled"], (
        "Claude not asked again"
    )
    wait_for(lambda: audit(in_tenant, tenant, quest.id, "quest.succeeded"))
    assert len(audit(in_tenant, tenant, quest.id, "task.created")) == 1


def test_killed_after_a_tool_call_before_the_ack_nothing_repeats(
    stack: Stack, in_tenant: InTenant, tenant: Tenant, connected: str
) -> None:
    with provider_faults(connected, delay_s=4, paths=["/api/v1/tasks"], methods=["GET"]):
        first = stack.start_workers("first", processes=1, **FAST)
        quest = submit(
            in_tenant, stack.settings.redis_url, tenant.id, "[script:tasks_two_tools] order chairs"
        )
        wait_for(lambda: provider_stats(connected, tenant.id)["mutations"] == 1, timeout=20)
        time.sleep(0.5)  # the task is created, the list call hangs, the message is unacked
        killed_at = kill(first)
    stack.start_workers("second", processes=1, **FAST)
    assert redelivered(in_tenant, tenant, quest.id, 1, killed_at) < 15
    assert wait_finished(in_tenant, tenant.id, quest.id, timeout=30).status == "succeeded"
    stats = provider_stats(connected, tenant.id)
    assert stats["mutations"] == 1 and stats["idempotent_replays"] == 0, (
        "the recorded result was reused"
    )
    wait_for(lambda: audit(in_tenant, tenant, quest.id, "quest.succeeded"))
    assert len(audit(in_tenant, tenant, quest.id, "task.created")) == 1


def test_a_step_that_keeps_killing_its_worker_is_dead_lettered_and_the_rest_goes_on(
    stack: Stack, in_tenant: InTenant, tenant: Tenant, rds: redis.Redis
) -> None:
    quest = submit(
        in_tenant, stack.settings.redis_url, tenant.id, "[script:brief_hold_notes] the poison"
    )
    # One step at a time (and one audit batch): a group of 2, which a first crash leaves as
    # it is and a second halves, so the step runs alone after its second crash and its third
    # makes it poison (workers.crash_isolation).
    env = {
        **FAST,
        "S2_MAX_STEP_CRASHES": "2",
        "S2_WORKER_IN_FLIGHT": "1",
        "S2_WORKER_AUDIT_IN_FLIGHT": "1",
    }
    for attempt in range(1, 4):  # three crashes...
        workers = stack.start_workers(f"crash-{attempt}", processes=1, **env)
        wait_for(lambda n=attempt: len(charges(in_tenant, tenant, quest.id)) == n, timeout=30)
        kill(workers)
    stack.start_workers("survivor", processes=1, **env)  # ...then the fourth delivery is refused
    done = wait_finished(in_tenant, tenant.id, quest.id, timeout=30)
    assert done.status == "failed"
    assert "crashed its worker 3 times" in (done.reason or "")
    dead = wait_for(lambda: rds.zrange("dramatiq:quests.XQ", 0, -1), timeout=10)
    assert len(dead) == 1
    listed = subprocess.run(
        system2("dlq", "list"), env=stack.env(), capture_output=True, text=True, check=True
    )
    (entry,) = json.loads(listed.stdout)
    assert entry["quest_id"] == str(quest.id) and "crashed its worker" in entry["reason"]
    other = submit(
        in_tenant, stack.settings.redis_url, tenant.id, "[script:answer] business as usual"
    )
    assert wait_finished(in_tenant, tenant.id, other.id).status == "succeeded"


def test_the_steps_beside_a_poison_step_are_not_dead_lettered_with_it(
    stack: Stack, in_tenant: InTenant, tenant: Tenant, rds: redis.Redis
) -> None:
    """Four steps in flight when the process dies are each charged a crash; the suspects'
    group halves with each crash after the first, until the poison step crashes alone and is
    dead-lettered, and the bystanders, alone, succeed."""
    # 4 quest steps and 4 audit batches at once: a group of 8, alone from 4 crashes, poison
    # at the second crash alone (S2_MAX_STEP_CRASHES=2): 5 crashes.
    env = {
        **FAST,
        "S2_MAX_STEP_CRASHES": "2",
        "S2_WORKER_IN_FLIGHT": "4",
        "S2_WORKER_AUDIT_IN_FLIGHT": "4",
    }
    url = stack.settings.redis_url
    poison = submit(in_tenant, url, tenant.id, "[script:brief_hold_notes] the poison")
    innocents = [
        submit(in_tenant, url, tenant.id, f"[script:brief_hold_notes] bystander {i}")
        for i in range(3)
    ]
    workers = stack.start_workers("crash-1", processes=1, **env)
    # All four are in their Claude call at once when the process dies: each is charged a crash.
    wait_for(
        lambda: all(charges(in_tenant, tenant, q.id) for q in (poison, *innocents)), timeout=30
    )
    kill(workers)
    for attempt in range(2, 7):  # each time the poison is in its call again, it crashes
        workers = stack.start_workers(f"crash-{attempt}", processes=1, **env)
        wait_for(
            lambda n=attempt: (
                len(charges(in_tenant, tenant, poison.id)) >= n
                or quest_state(in_tenant, tenant.id, poison.id).finished
            ),
            timeout=60,
        )
        if quest_state(in_tenant, tenant.id, poison.id).finished:
            break
        kill(workers)
    done = wait_finished(in_tenant, tenant.id, poison.id, timeout=60)
    assert done.status == "failed" and "crashed its worker 5 times" in (done.reason or "")
    for bystander in innocents:
        ended = wait_finished(in_tenant, tenant.id, bystander.id, timeout=60)
        assert ended.status == "succeeded", ended.reason
    # The quest is ended before its message is dead-lettered: wait for the dead letter.
    dead = wait_for(lambda: rds.zrange("dramatiq:quests.XQ", 0, -1), timeout=10)
    assert len(dead) == 1


def test_a_dead_letter_replayed_after_the_cause_is_fixed_is_processed(
    stack: Stack, in_tenant: InTenant, tenant: Tenant, rds: redis.Redis
) -> None:
    from messages import Actor, ActorType, AuditBatch, AuditEvent, Envelope
    from messages.transport import Publisher, build_broker
    from store import companies as companies_store

    missing = uuid.uuid4()
    event = AuditEvent(
        idempotency_key="late:1", actor=Actor(type=ActorType.ted, id="ted"), action="a", target="t"
    )
    broker = build_broker(stack.settings.redis_url)
    Publisher(broker).publish(
        Envelope[AuditBatch](
            company_id=missing,
            actor=event.actor,
            correlation_id=uuid.uuid4(),
            payload=AuditBatch(events=[event]),
        )
    )
    broker.close()
    stack.start_workers(processes=1)
    (entry,) = wait_for(lambda: json.loads(_cli(stack, "dlq", "list")) or None, timeout=20)
    assert entry["queue"] == "audit" and "does not exist" in entry["reason"]
    # the cause, fixed: the company now exists
    in_tenant(missing, lambda tx: companies_store.create(tx, "Late Co"))
    _cli(stack, "dlq", "replay", entry["id"])
    wait_for(lambda: [r.action for r in _rows(in_tenant, missing)] == ["a"], timeout=20)
    assert json.loads(_cli(stack, "dlq", "list")) == []


def _cli(stack: Stack, *args: str) -> str:
    done = subprocess.run(
        system2(*args), env=stack.env(), capture_output=True, text=True, check=True
    )
    return done.stdout


def _rows(in_tenant: InTenant, company_id: uuid.UUID) -> list[Any]:
    rows, _ = in_tenant(company_id, lambda tx: activity_store.page(tx, ActivityFilter()))
    return rows
