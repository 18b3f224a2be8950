"""Bad messages are dead-lettered with their reason; the worker keeps working."""

from __future__ import annotations

import json
import uuid

import dramatiq
import pytest
import redis

from ingress.submit import QuestSpec, create_quest
from messages.transport import build_broker
from store import Database
from system2.settings import Settings
from tests.conftest import Stack, Tenant
from tests.support import OPERATOR, quest_state, submit, wait_finished, wait_for
from workers.app import worker_broker
from workers.dead_letters import REASONS

pytestmark = pytest.mark.slow


def raw_message(queue: str, actor: str, arg: object) -> dramatiq.Message[object]:
    return dramatiq.Message(queue_name=queue, actor_name=actor, args=(arg,), kwargs={}, options={})


def test_malformed_messages_are_dead_lettered_with_a_reason(
    stack: Stack, tenant: Tenant, other_tenant: Tenant, db: Database, rds: redis.Redis
) -> None:
    with db.tenant(other_tenant.id) as tx:  # a real quest, never enqueued by its company
        theirs, _ = create_quest(tx, OPERATOR, QuestSpec(goal="theirs", model="claude-sonnet-5-5"))
    stack.start_workers(processes=1)
    good = {
        "message_id": str(uuid.uuid4()),
        "schema_version": 1,
        "company_id": str(tenant.id),
        "actor": {"type": "user", "id": "u"},
        "issued_at": "2026-11-29T00:00:00Z",
        "correlation_id": str(uuid.uuid4()),
        "payload": {"quest_id": str(uuid.uuid4()), "step": 1},
    }
    no_company = {k: v for k, v in good.items() if k != "company_id"}
    newer = {**good, "schema_version": 99}
    wrong_schema = {**good, "payload": {"quest_id": "not-a-uuid", "step": "first"}}
    stolen = {**good, "payload": {"quest_id": str(theirs.id), "step": 1}}
    cases = {
        "not an envelope": raw_message("quests", "quest_step", "just text"),
        "no company id": raw_message("quests", "quest_step", no_company),
        "unknown version": raw_message("quests", "quest_step", newer),
        "quest of nobody": raw_message("quests", "quest_step", good),
        "wrong schema": raw_message("quests", "quest_step", wrong_schema),
        "another company's quest": raw_message("quests", "quest_step", stolen),
        "cancel that is not JSON": raw_message("control", "cancel_quest", [1, 2]),
        "audit for no company": raw_message(
            "audit",
            "write_audit",
            {
                **good,
                "company_id": str(uuid.uuid4()),
                "payload": {
                    "events": [
                        {
                            "idempotency_key": "k",
                            "actor": {"type": "ted", "id": "ted"},
                            "action": "a",
                            "target": "t",
                        }
                    ]
                },
            },
        ),
    }
    broker = build_broker(stack.settings.redis_url)
    for message in cases.values():
        broker.enqueue(message)
    broker.close()

    def dead() -> set[str] | None:
        ids = {
            m.decode()
            for q in ("quests", "audit", "control")
            for m in rds.zrange(f"dramatiq:{q}.XQ", 0, -1)
        }
        return ids if len(ids) == len(cases) else None

    wait_for(dead, timeout=30)
    log = stack.procs["workers"].output()
    for reason in (
        "not JSON",
        "company_id: Field required",
        "schema_version 99",
        "no such quest",
        "does not exist",
        "quest_id",
    ):
        assert reason in log, reason
    assert log.count("message dead-lettered") == len(cases)
    reasons = rds.hgetall("s2:dlq:reasons")
    assert len(reasons) == len(cases), reasons
    # The stamped company could not see the other's quest, so nothing of it ran.
    untouched = quest_state(db, other_tenant.id, theirs.id)
    assert (untouched.status, untouched.steps_done) == ("queued", 0)

    quest = submit(db, stack.settings.redis_url, tenant.id, "[script:answer] still working?")
    assert wait_finished(db, tenant.id, quest.id).status == "succeeded"


def test_a_message_out_of_retries_is_dead_lettered_with_its_reason(
    settings: Settings, rds: redis.Redis
) -> None:
    """Our middleware sees Dramatiq's verdict: the reason is kept for ``system2 dlq``."""
    broker = worker_broker(settings)

    def always_fails(n: int) -> None:
        raise RuntimeError(f"the provider said no to {n}")

    actor = dramatiq.actor(
        always_fails, broker=broker, queue_name="test-retries", max_retries=1, min_backoff=10
    )
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        sent = actor.send(7)
        raw = wait_for(lambda: rds.hget(REASONS, sent.message_id), timeout=20)
    finally:
        worker.stop()
        broker.close()
    record = json.loads(raw)
    assert record["reason"] == "the provider said no to 7"
    assert (record["queue"], record["actor"]) == ("test-retries", "always_fails")
