"""The step loop in real worker processes: each stop reason ends or continues the quest."""

from __future__ import annotations

import pytest

from store import activity as activity_store
from store import quests as quests_store
from store.activity import Activity, ActivityFilter
from tests.conftest import Stack, Tenant
from tests.support import InTenant, submit, wait_finished, wait_for

pytestmark = pytest.mark.slow

CASES = {
    # goal marker: (status, steps, stop reasons, reason contains)
    "answer": ("succeeded", ["end_turn"], None),
    "notes": ("succeeded", ["tool_use", "end_turn"], None),
    "pause": ("succeeded", ["pause_turn", "end_turn"], None),
    "refusal": ("failed", ["refusal"], "declined"),
    "max_tokens": ("failed", ["max_tokens"], "max_tokens"),
    "context": ("failed", ["model_context_window_exceeded"], "context window"),
    "loop": ("failed", ["tool_use", "tool_use", "tool_use"], "step limit"),
}


def test_each_stop_reason_ends_or_continues_the_quest(
    stack: Stack, tenant: Tenant, in_tenant: InTenant
) -> None:
    stack.settings = stack.settings.model_copy(update={"max_steps": 3})
    stack.start_workers()
    quests = {
        name: submit(
            in_tenant, stack.settings.redis_url, tenant.id, f"[script:{name}] do the {name} thing"
        )
        for name in CASES
    }
    for name, (status, stops, reason) in CASES.items():
        quest = wait_finished(in_tenant, tenant.id, quests[name].id)
        steps = in_tenant(tenant.id, lambda tx, q=quest: quests_store.steps(tx, q.id))
        assert quest.status == status, (name, quest.reason)
        assert [s.stop_reason for s in steps] == stops, name
        if reason:
            assert reason in (quest.reason or ""), (name, quest.reason)
        else:
            assert quest.result, name

    # The looping quest wrote one note per step, each audited with Claude's rationale.
    def audit_rows() -> list[Activity] | None:
        wanted = ActivityFilter(quest_id=quests["loop"].id)
        rows, _ = in_tenant(tenant.id, lambda tx: activity_store.page(tx, wanted, limit=50))
        return rows if len(rows) >= 5 else None

    rows = wait_for(audit_rows)
    actions = sorted(r.action for r in rows)
    assert actions == ["note.added"] * 3 + ["quest.failed", "quest.started"]
    assert all(r.rationale for r in rows if r.action == "note.added")


def test_a_model_without_a_price_is_refused_before_any_call(
    stack: Stack, tenant: Tenant, in_tenant: InTenant
) -> None:
    stack.start_workers(processes=1)
    quest = submit(
        in_tenant, stack.settings.redis_url, tenant.id, "hello", model="claude-unpriced-9"
    )
    done = wait_finished(in_tenant, tenant.id, quest.id)
    assert done.status == "failed"
    assert "no price" in (done.reason or "")
    assert done.cost_usd_micros == 0
    steps = in_tenant(tenant.id, lambda tx: quests_store.steps(tx, quest.id))
    assert [s.content for s in steps] == [None], "no Claude reply was recorded"
