"""A step's end in the store: one statement marks the step done with what it sent, stores
a reply not saved before, counts its cost and the steps done, and ends the quest only if it
is still open."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

from store import TenantTx
from store import charges as charges_store
from store import quests as quests_store
from store.charges import Charge
from store.quests import Final, NewCharge, Quest, Reply, Step
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


def test_a_last_step_stores_its_reply_settles_its_charge_and_ends_the_quest(
    in_tenant: InTenant, tenant: Tenant
) -> None:
    quest_id = new_quest(in_tenant, tenant.id)
    reply = replace(REPLY, charge_key="k1")

    async def last_step(tx: TenantTx) -> list[Charge]:
        at = datetime.now(UTC)
        await charges_store.open_charge(tx, quest_id, 1, "k1", "m", 9_000, created_at=at)
        await quests_store.complete_step(
            tx,
            quest_id,
            1,
            model="m",
            reply=reply,
            tool_results=[],
            events=[{"e": 1}],
            final=Final("succeeded", result="done: é"),
        )
        return await charges_store.for_quest(tx, quest_id)

    (charge,) = in_tenant(tenant.id, last_step)
    assert (charge.status, charge.cost_micros) == ("settled", 1_250)
    quest, (step,) = read(in_tenant, tenant, quest_id)
    assert (quest.status, quest.result, quest.steps_done) == ("succeeded", "done: é", 1)
    assert quest.cost_usd_micros == 1_250 and quest.finished_at is not None
    assert (step.status, step.content, step.stop_reason) == ("done", REPLY.content, "end_turn")
    assert (step.usage, step.cost_usd_micros) == ({"output_tokens": 4}, 1_250)
    assert step.events == [{"e": 1}] and step.finished_at is not None


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


def test_a_claim_opens_its_charge_only_if_the_quest_is_still_as_the_step_saw_it(
    in_tenant: InTenant, tenant: Tenant
) -> None:
    quest_id = new_quest(in_tenant, tenant.id)
    seen, _ = read(in_tenant, tenant, quest_id)
    at = datetime.now(UTC)

    async def cancel_then_claim(tx: TenantTx) -> Quest | None:
        await quests_store.request_cancel(tx, quest_id, by="user:ops", reason="stop")
        return await quests_store.claim_step(
            tx, seen, 1, "m1", NewCharge("late", "m", 900, created_at=at)
        )

    assert in_tenant(tenant.id, cancel_then_claim) is None, "the quest moved: no claim"
    moved, _ = read(in_tenant, tenant, quest_id)
    assert (moved.status, moved.step_claimed, moved.step_holder) == ("queued", 0, None)

    async def claim(tx: TenantTx) -> tuple[Quest | None, list[Charge]]:
        claimed = await quests_store.claim_step(
            tx, moved, 1, "m2", NewCharge("k1", "m", 900, created_at=at)
        )
        return claimed, await charges_store.for_quest(tx, quest_id)

    claimed, charges = in_tenant(tenant.id, claim)
    assert claimed is not None and claimed.cancel_requested_at is not None
    assert (claimed.status, claimed.step_claimed, claimed.step_holder) == ("running", 1, "m2")
    assert [(c.charge_key, c.status, c.reserved_micros) for c in charges] == [("k1", "open", 900)]
    again = in_tenant(tenant.id, lambda tx: quests_store.claim_step(tx, moved, 1, "m3"))
    assert again is None, "claimed meanwhile: a second claim as of the same look fails"
