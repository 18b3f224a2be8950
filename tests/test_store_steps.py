"""A step's end in the store: one statement marks the step done with what it sent, stores
a reply not saved before, counts its cost and the steps done, and ends the quest only if it
is still open."""

from __future__ import annotations

import uuid

from store import TenantTx
from store import quests as quests_store
from store.quests import Final, Quest, Reply, Step
from tests.conftest import Tenant
from tests.support import InTenant
from tests.test_store_tenancy import new_quest

REPLY = Reply([{"type": "text", "text": "done: é"}], "end_turn", {"output_tokens": 4}, 1_250)


def read(in_tenant: InTenant, tenant: Tenant, quest_id: uuid.UUID) -> tuple[Quest, list[Step]]:
    async def both(tx: TenantTx) -> tuple[Quest, list[Step]]:
        quest = await quests_store.get(tx, quest_id)
        assert quest is not None
        return quest, await quests_store.steps(tx, quest_id)

    result: tuple[Quest, list[Step]] = in_tenant(tenant.id, both)
    return result


def test_a_last_step_stores_its_reply_counts_its_cost_and_ends_the_quest(
    in_tenant: InTenant, tenant: Tenant
) -> None:
    quest_id = new_quest(in_tenant, tenant.id)
    in_tenant(
        tenant.id,
        lambda tx: quests_store.complete_step(
            tx,
            quest_id,
            1,
            model="m",
            reply=REPLY,
            tool_results=[],
            events=[{"e": 1}],
            final=Final("succeeded", result="done: é"),
        ),
    )
    quest, (step,) = read(in_tenant, tenant, quest_id)
    assert (quest.status, quest.result, quest.steps_done) == ("succeeded", "done: é", 1)
    assert quest.cost_usd_micros == 1_250 and quest.finished_at is not None
    assert (step.status, step.content, step.stop_reason) == ("done", REPLY.content, "end_turn")
    assert (step.usage, step.cost_usd_micros, step.events) == (
        {"output_tokens": 4},
        1_250,
        [{"e": 1}],
    )
    assert step.finished_at is not None


def test_a_step_whose_reply_was_saved_keeps_it_and_is_not_charged_again(
    in_tenant: InTenant, tenant: Tenant
) -> None:
    quest_id = new_quest(in_tenant, tenant.id)

    async def tool_step(tx: TenantTx) -> None:
        await quests_store.save_reply(
            tx, quest_id, 1, model="m", content=REPLY.content, stop_reason="tool_use",
            usage=REPLY.usage, cost_usd_micros=REPLY.cost_usd_micros,
        )  # fmt: skip
        await quests_store.complete_step(
            tx, quest_id, 1, model="m", reply=None, tool_results=[{"type": "tool_result"}],
            events=[],
        )  # fmt: skip

    in_tenant(tenant.id, tool_step)
    quest, (step,) = read(in_tenant, tenant, quest_id)
    assert (quest.status, quest.steps_done, quest.cost_usd_micros) == ("queued", 1, 1_250)
    assert (step.status, step.stop_reason, step.content) == ("done", "tool_use", REPLY.content)
    assert step.tool_results == [{"type": "tool_result"}]


def test_an_ending_does_not_overwrite_a_quest_already_ended(
    in_tenant: InTenant, tenant: Tenant
) -> None:
    quest_id = new_quest(in_tenant, tenant.id)
    in_tenant(tenant.id, lambda tx: quests_store.finish(tx, quest_id, "cancelled", reason="ops"))
    in_tenant(
        tenant.id,
        lambda tx: quests_store.complete_step(
            tx,
            quest_id,
            1,
            model="m",
            reply=None,
            tool_results=[],
            events=[],
            final=Final("failed", reason="late"),
        ),
    )
    quest, (step,) = read(in_tenant, tenant, quest_id)
    assert (quest.status, quest.reason, quest.steps_done) == ("cancelled", "ops", 1)
    assert (step.status, step.content, step.cost_usd_micros) == ("done", None, 0)
