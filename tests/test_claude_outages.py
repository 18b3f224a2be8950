"""Claude down, or failing in each way the real API can: the quest waits for it at most
S2_CLAUDE_OUTAGE_MAX_S, visibly, then fails `claude unavailable`; and each attempt is charged
what it may have cost — nothing if it never reached the API or was answered with an error,
its reservation if it was sent and never answered, what its stream reported if it was cut.
Real worker processes, Redis and Postgres; the offline Claude scripted to misbehave, or no
Claude at all (a closed port)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from ingress.submit import QuestSpec, create_quest
from messages import Envelope, QuestStep
from messages.redis_keys import quest_stream_key
from messages.transport import build_broker, to_message
from runtime.loop_thread import LoopThread
from store import TenantTx
from store import activity as activity_store
from store import charges as charges_store
from store.activity import ActivityFilter
from store.quests import Quest
from system2.procs import free_port
from tests.conftest import Stack, Tenant
from tests.support import OPERATOR, InTenant, submit, wait_finished, wait_for
from workers.app import QUEST_STEP_RETRIES
from workers.waits import WaitClock

pytestmark = pytest.mark.slow
OUTAGE_MAX_S = 4


def quest_events(rds: redis.Redis, quest_id: uuid.UUID) -> list[dict[str, Any]]:
    entries = rds.xrange(quest_stream_key(quest_id))
    return [json.loads(fields[b"e"])["payload"] for _, fields in entries]


def charged_rows(in_tenant: InTenant, tenant: Tenant, quest_id: uuid.UUID) -> list[dict[str, Any]]:
    wanted = ActivityFilter(quest_id=quest_id, action="claude.call_charged")
    rows, _ = in_tenant(tenant.id, lambda tx: activity_store.page(tx, wanted))
    return [r.payload for r in rows]


def run_until_given_up(
    stack: Stack, in_tenant: InTenant, tenant: Tenant, goal: str, **env: str
) -> tuple[Any, list[charges_store.Charge]]:
    stack.start_workers(processes=1, S2_CLAUDE_OUTAGE_MAX_S=str(OUTAGE_MAX_S), **env)
    quest = submit(in_tenant, stack.settings.redis_url, tenant.id, goal)
    done = wait_finished(in_tenant, tenant.id, quest.id, timeout=OUTAGE_MAX_S + 40)
    charges = in_tenant(tenant.id, lambda tx: charges_store.for_quest(tx, quest.id))
    return done, charges


def assert_gave_up(done: Any, charges: list[charges_store.Charge], rds: redis.Redis) -> None:
    assert done.status == "failed", done
    assert done.reason.startswith("claude unavailable: "), done.reason
    assert len(charges) >= 2, "it tried again before giving up"
    assert all(c.status != "open" for c in charges)
    events = quest_events(rds, done.id)
    assert "step.waiting" in [e["kind"] for e in events], "the wait is visible on its events"
    states = [e["data"]["status"] for e in events if e["kind"] == "quest.state"]
    assert states[-1] == "failed", "its stream ends with its ending"


def test_claude_unreachable_charges_nothing_and_fails_the_quest_after_the_bound(
    stack: Stack, in_tenant: InTenant, tenant: Tenant, rds: redis.Redis
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # connection refused: nothing is sent
    done, charges = run_until_given_up(
        stack, in_tenant, tenant, "[script:answer] hello", ANTHROPIC_BASE_URL=closed
    )
    assert_gave_up(done, charges, rds)
    assert "ConnectError" in done.reason
    assert [(c.status, c.cost_micros) for c in charges] == [("settled", 0)] * len(charges)
    assert done.cost_usd_micros == 0, "an outage spends none of the company's budget"
    assert charged_rows(in_tenant, tenant, done.id) == []


def test_claude_answering_5xx_charges_nothing_and_fails_the_quest_after_the_bound(
    stack: Stack, in_tenant: InTenant, tenant: Tenant, rds: redis.Redis
) -> None:
    done, charges = run_until_given_up(stack, in_tenant, tenant, "[script:server_error] hello")
    assert_gave_up(done, charges, rds)
    assert "500 api_error" in done.reason
    assert [(c.status, c.cost_micros) for c in charges] == [("settled", 0)] * len(charges)
    assert done.cost_usd_micros == 0


def test_a_call_sent_and_never_answered_keeps_its_reservation(
    stack: Stack, in_tenant: InTenant, tenant: Tenant, rds: redis.Redis
) -> None:
    """A read timeout before the first byte: the API has the request and may bill it."""
    done, charges = run_until_given_up(
        stack, in_tenant, tenant, "[script:slow_start] hello", S2_CLAUDE_TIMEOUT_S="1"
    )
    assert_gave_up(done, charges, rds)
    assert all(c.status == "kept" and c.cost_micros == c.reserved_micros for c in charges)
    assert done.cost_usd_micros == sum(c.reserved_micros for c in charges)
    rows = wait_for(
        lambda: r if len(r := charged_rows(in_tenant, tenant, done.id)) == len(charges) else None
    )
    assert {r["basis"] for r in rows} == {"the reservation: sent, never answered"}
    assert {r["sent"] for r in rows} == {"unanswered"}


def test_a_call_cut_mid_stream_is_charged_what_its_stream_reported(
    stack: Stack, in_tenant: InTenant, tenant: Tenant, rds: redis.Redis
) -> None:
    """message_start came (the prompt's usage), then the API's `error` event: the prompt as
    reported is charged, with all the output it might have produced (none was reported)."""
    done, charges = run_until_given_up(
        stack, in_tenant, tenant, "[script:overloaded_mid_stream] hi"
    )
    assert_gave_up(done, charges, rds)
    assert "overloaded_error" in done.reason
    assert all(c.status == "settled" and 0 < c.cost_micros < c.reserved_micros for c in charges)
    assert done.cost_usd_micros == sum(c.cost_micros or 0 for c in charges)
    rows = wait_for(
        lambda: r if len(r := charged_rows(in_tenant, tenant, done.id)) == len(charges) else None
    )
    assert {r["basis"] for r in rows} == {
        "cut mid-stream: the prompt as reported, max_tokens of output"
    }
    assert sorted(r["charged_usd_micros"] for r in rows) == sorted(
        c.cost_micros or 0 for c in charges
    )


def test_a_brief_outage_is_waited_out_and_the_quest_succeeds(
    stack: Stack, in_tenant: InTenant, tenant: Tenant
) -> None:
    """One overload, then an answer: the retry is the step's, and the failed attempt cost
    nothing."""
    stack.start_workers(processes=1, S2_CLAUDE_OUTAGE_MAX_S="60")
    quest = submit(in_tenant, stack.settings.redis_url, tenant.id, "[script:flaky] hello")
    done = wait_finished(in_tenant, tenant.id, quest.id, timeout=30)
    assert done.status == "succeeded", done
    charges = in_tenant(tenant.id, lambda tx: charges_store.for_quest(tx, quest.id))
    assert [c.status for c in charges] == ["settled", "settled"]
    assert charges[0].cost_micros == 0 and (charges[1].cost_micros or 0) > 0


def test_a_step_out_of_retries_ends_its_quest_instead_of_leaving_it_running(
    stack: Stack, in_tenant: InTenant, tenant: Tenant
) -> None:
    """The backstop under the outage bound: whatever keeps a step waiting (here Claude,
    unreachable, with a bound far away), its last retry ends the quest with the reason
    rather than dead-lettering the step and leaving the quest `running` with nothing in
    flight. The message arrives as its 101st delivery would."""
    closed = f"http://127.0.0.1:{free_port()}"
    stack.start_workers(processes=1, S2_CLAUDE_OUTAGE_MAX_S="3600", ANTHROPIC_BASE_URL=closed)

    async def create(tx: TenantTx) -> Quest:
        quest, _ = await create_quest(
            tx, OPERATOR, QuestSpec(goal="hello", model="claude-sonnet-5-5")
        )
        return quest

    quest = in_tenant(tenant.id, create)
    envelope = Envelope[QuestStep](
        message_id=quest.origin_message_id,
        company_id=tenant.id,
        actor=OPERATOR,
        correlation_id=quest.correlation_id,
        payload=QuestStep(quest_id=quest.id, step=1),
    )
    message = to_message(envelope).copy(options={"retries": QUEST_STEP_RETRIES})
    broker = build_broker(stack.settings.redis_url)
    try:
        broker.enqueue(message)
    finally:
        broker.close()
    done = wait_finished(in_tenant, tenant.id, quest.id, timeout=30)
    assert done.status == "failed"
    assert done.reason.startswith(f"step 1 gave up after {QUEST_STEP_RETRIES} retries: "), (
        done.reason
    )
    assert "Claude unreachable: ConnectError" in done.reason


def test_a_wait_is_timed_from_its_first_failure_until_it_is_done(
    rds: redis.Redis, guard_redis: AsyncRedis, call_loop: LoopThread
) -> None:
    """The outage bound counts from the step's first failed call, not from its first charge
    (a crashed attempt) nor its latest one."""
    clock = WaitClock(guard_redis, prefix="s2:test-wait")
    first = call_loop.run(clock.waiting_since("q:1", bound_s=10))
    time.sleep(0.05)
    assert call_loop.run(clock.waiting_since("q:1", bound_s=10)) == first
    assert 0 < rds.ttl("s2:test-wait:q:1") <= 60
    call_loop.run(clock.done("q:1"))
    assert call_loop.run(clock.waiting_since("q:1", bound_s=10)) > first
