"""Bad messages are dead-lettered with their reason; the worker keeps working."""

from __future__ import annotations

import uuid

import dramatiq
import pytest
import redis

from ingress.submit import QuestSpec, create_quest
from messages.transport import build_broker
from store import Database
from tests.conftest import Stack, Tenant
from tests.support import OPERATOR, quest_state, submit, wait_finished, wait_for

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
