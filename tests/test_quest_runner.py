"""The step runner in-process, on real Postgres, Redis and the offline Claude: a redelivered
step repeats nothing, a duplicate is dropped, a step that crashed after Claude replied
resumes from the stored reply."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from ingress.submit import QuestSpec, create_quest
from messages import BadMessage, CancelQuest, Envelope, PublishFailed, QuestStep
from messages.notices import announce_cancel
from runtime.settings import Settings
from store import Database, TenantTx
from store import charges as charges_store
from store import notes as notes_store
from store import quests as quests_store
from store.quests import Quest
from tests.conftest import Tenant
from tests.support import OPERATOR, InTenant, quest_state
from tests.worker_support import InProcess, in_process_worker, publisher_on
from workers.call_scope import CancelWatch
from workers.control import QuestEnder
from workers.control_loop import ControlDatabase, ControlLoop
from workers.tools import AddNote, ToolCall, ToolOutcome


class CrashOnce:
    """add_note that dies the first time, as a worker killed mid-tool would."""

    name = "add_note"
    description = AddNote.description
    input_schema = AddNote.input_schema
    mutates = True

    def __init__(self, db: Database) -> None:
        self.inner = AddNote(db)
        self.calls = 0

    async def run(self, call: ToolCall) -> ToolOutcome:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("worker died mid-tool")
        return await self.inner.run(call)


@pytest.fixture
def worker(
    in_tenant: InTenant,
    rds: redis.Redis,
    guard_redis: AsyncRedis,
    offline_claude: str,
    settings: Settings,
) -> Iterator[InProcess]:
    rds.flushdb()
    with in_process_worker(in_tenant, guard_redis, settings, offline_claude) as w:
        yield w


async def _client(url: str) -> AsyncRedis:
    return AsyncRedis.from_url(url)


def start(in_tenant: InTenant, tenant: Tenant, goal: str) -> Envelope[QuestStep]:
    async def create(tx: TenantTx) -> Quest:
        quest, _ = await create_quest(tx, OPERATOR, QuestSpec(goal=goal, model="claude-sonnet-5-5"))
        return quest

    quest = in_tenant(tenant.id, create)
    return Envelope[QuestStep](
        message_id=quest.origin_message_id,
        company_id=tenant.id,
        actor=OPERATOR,
        correlation_id=quest.correlation_id,
        payload=QuestStep(quest_id=quest.id, step=1),
    )


def queued(rds: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """Envelopes waiting on a Dramatiq queue."""
    bodies = rds.hvals(f"dramatiq:{queue}.msgs")
    return [json.loads(b)["args"][0] for b in bodies]


def audit_keys(batches: list[dict[str, Any]]) -> list[str]:
    return sorted(e["idempotency_key"] for b in batches for e in b["payload"]["events"])


def notes_count(in_tenant: InTenant, tenant: Tenant) -> int:
    return len(in_tenant(tenant.id, lambda tx: notes_store.recent(tx, 50)))


def test_a_redelivered_done_step_resends_the_same_messages_and_repeats_nothing(
    worker: InProcess, in_tenant: InTenant, rds: redis.Redis, tenant: Tenant
) -> None:
    env = start(in_tenant, tenant, "[script:notes] remember the launch date")
    worker.step(env, holder="m1")
    after_first = quest_state(in_tenant, tenant.id, env.payload.quest_id)
    assert after_first.steps_done == 1 and after_first.status == "running"
    assert notes_count(in_tenant, tenant) == 1
    first_audit = queued(rds, "audit")
    assert [q["payload"]["step"] for q in queued(rds, "quests")] == [2]
    rds.flushdb()

    worker.step(env, holder="m1")  # the broker redelivers the same message

    again = quest_state(in_tenant, tenant.id, env.payload.quest_id)
    assert again.cost_usd_micros == after_first.cost_usd_micros, "Claude was not called again"
    assert notes_count(in_tenant, tenant) == 1, "the note was not written twice"
    assert audit_keys(queued(rds, "audit")) == audit_keys(first_audit), (
        "the same audit events, same keys"
    )
    assert [q["payload"]["step"] for q in queued(rds, "quests")] == [2]


def test_a_duplicate_message_for_a_claimed_step_is_dropped(
    worker: InProcess, in_tenant: InTenant, rds: redis.Redis, tenant: Tenant
) -> None:
    env = start(in_tenant, tenant, "[script:answer] hello")

    async def claimed_elsewhere(tx: TenantTx) -> None:
        seen = await quests_store.get(tx, env.payload.quest_id)
        assert seen is not None
        assert await quests_store.claim_step(tx, seen, 1, "the-other-message") is not None

    in_tenant(tenant.id, claimed_elsewhere)
    worker.step(env, holder="a-duplicate")
    quest = quest_state(in_tenant, tenant.id, env.payload.quest_id)
    assert quest.steps_done == 0 and quest.cost_usd_micros == 0
    assert quest.step_holder == "the-other-message"
    assert queued(rds, "quests") == [] and queued(rds, "audit") == []


def test_a_step_that_crashed_after_the_reply_resumes_from_it(
    worker: InProcess,
    in_tenant: InTenant,
    guard_redis: AsyncRedis,
    settings: Settings,
    offline_claude: str,
    tenant: Tenant,
) -> None:
    env = start(in_tenant, tenant, "[script:notes] remember the budget")
    tool = CrashOnce(in_tenant.db)
    parts = (in_tenant, guard_redis, settings, offline_claude)
    with in_process_worker(*parts, tools=lambda _: [tool]) as crashing:
        with pytest.raises(RuntimeError, match="mid-tool"):
            crashing.step(env, holder="m1")
        crashed = quest_state(in_tenant, tenant.id, env.payload.quest_id)
        assert crashed.cost_usd_micros > 0 and crashed.steps_done == 0
        (step,) = in_tenant(tenant.id, lambda tx: quests_store.steps(tx, crashed.id))
        assert step.status == "replied" and step.stop_reason == "tool_use"

        crashing.step(env, holder="m1")  # the retry

    resumed = quest_state(in_tenant, tenant.id, env.payload.quest_id)
    assert resumed.cost_usd_micros == crashed.cost_usd_micros, "no second Claude call"
    assert resumed.steps_done == 1 and tool.calls == 2
    assert notes_count(in_tenant, tenant) == 1


def test_a_quest_of_another_company_is_refused(
    worker: InProcess, in_tenant: InTenant, tenant: Tenant, other_tenant: Tenant
) -> None:
    env = start(in_tenant, tenant, "[script:answer] mine")
    forged = env.model_copy(update={"company_id": other_tenant.id, "message_id": uuid.uuid4()})
    with pytest.raises(BadMessage, match="no such quest"):
        worker.step(forged, holder="m-forged")
    assert quest_state(in_tenant, tenant.id, env.payload.quest_id).status == "queued"


def cancel_message(env: Envelope[QuestStep], reason: str = "not needed") -> Envelope[CancelQuest]:
    return env.follow_up(CancelQuest(quest_id=env.payload.quest_id, reason=reason), actor=OPERATOR)


def test_a_cancel_whose_audit_send_failed_sends_it_on_redelivery(
    worker: InProcess, in_tenant: InTenant, rds: redis.Redis, tenant: Tenant
) -> None:
    env = start(in_tenant, tenant, "[script:answer] never started")
    message = cancel_message(env)
    nowhere = in_tenant.run(_client("redis://127.0.0.1:1/0"))  # nothing listens there
    broken = QuestEnder(
        in_tenant.db, publisher_on(nowhere), worker.runner.events, worker.runner.budget
    )
    with pytest.raises(PublishFailed):
        in_tenant.run(broken.cancel(message))
    assert quest_state(in_tenant, tenant.id, env.payload.quest_id).status == "cancelled"
    assert queued(rds, "audit") == []

    worker.cancel(message)  # the broker redelivers the cancel

    (batch,) = queued(rds, "audit")
    (event,) = batch["payload"]["events"]
    assert event["action"] == "quest.cancelled"
    assert event["idempotency_key"] == f"{env.payload.quest_id}:0:finished"


def test_a_late_cancel_of_a_finished_quest_resends_its_ending_under_the_same_key(
    worker: InProcess, in_tenant: InTenant, rds: redis.Redis, tenant: Tenant
) -> None:
    env = start(in_tenant, tenant, "[script:answer] quick one")
    worker.step(env, holder="m1")
    assert quest_state(in_tenant, tenant.id, env.payload.quest_id).status == "succeeded"
    ending = [k for k in audit_keys(queued(rds, "audit")) if k.endswith(":finished")]
    rds.flushdb()

    worker.cancel(cancel_message(env))  # crossed with the last step

    assert quest_state(in_tenant, tenant.id, env.payload.quest_id).status == "succeeded"
    (batch,) = queued(rds, "audit")
    assert [e["action"] for e in batch["payload"]["events"]] == ["quest.succeeded"]
    assert audit_keys([batch]) == ending, "the log writer drops it as a duplicate"


def test_a_step_cut_by_a_cancel_ends_its_quest_while_every_step_connection_is_taken(
    in_tenant: InTenant,
    rds: redis.Redis,
    guard_redis: AsyncRedis,
    offline_claude: str,
    settings: Settings,
    tenant: Tenant,
) -> None:
    """Control never waits behind quest steps: a step cut by a cancel settles its call and
    ends its quest on the control pool, on the control loop's thread as a worker process has
    it, so the cancel is acted on while other steps hold every connection of the steps' pool."""
    rds.flushdb()
    steps_db = in_tenant.run(Database(settings.database_url, max_size=1, name="steps").open())
    control_loop = ControlLoop()
    control_loop.start()
    control_db = ControlDatabase(control_loop, settings.database_url, max_size=1, name="ctl")
    in_tenant.run(control_db.open())
    cancels = CancelWatch(guard_redis, poll_s=0.2)
    env = start(in_tenant, tenant, "[script:slow] think hard")
    quest_id = env.payload.quest_id
    parts = (in_tenant, guard_redis, settings, offline_claude)
    options: dict[str, Any] = {"db": steps_db, "control_db": control_db, "cancels": cancels}

    async def running() -> bool:
        quest = await steps_db.in_tenant(tenant.id, lambda tx: quests_store.get(tx, quest_id))
        return quest is not None and quest.status == "running"

    async def scenario(w: InProcess) -> float:
        watch = asyncio.create_task(cancels.poll())
        step = asyncio.create_task(w.runner.run(env, "holder-1"))
        try:
            while not await running():
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # in its Claude call, which holds its reply for 30 s
            async with steps_db.connection():  # other steps hold every step connection
                began = time.monotonic()
                asked = await control_db.in_tenant(
                    tenant.id,
                    lambda tx: quests_store.request_cancel(
                        tx, quest_id, by=f"user:{tenant.admin}", reason="wrong repo"
                    ),
                )
                assert asked is not None
                announce_cancel(rds, quest_id)
                await asyncio.wait_for(step, timeout=10)
                return time.monotonic() - began
        finally:
            watch.cancel()
            step.cancel()

    try:
        with in_process_worker(*parts, **options) as w:
            took = in_tenant.run(scenario(w))
    finally:
        in_tenant.run(steps_db.close())
        in_tenant.run(control_db.close())
        control_loop.stop()
    assert took < 5.0
    done = quest_state(in_tenant, tenant.id, quest_id)
    assert done.status == "cancelled"
    assert done.reason == f"cancelled by user:{tenant.admin}: wrong repo"
    (charge,) = in_tenant(tenant.id, lambda tx: charges_store.for_quest(tx, quest_id))
    assert charge.status == "settled" and done.cost_usd_micros == charge.cost_micros > 0
