"""A step's look: the quest and everything its step reads, in one statement, equal to what
the single reads return, and bound to the tenant like each of them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from store import TenantTx
from store import charges as charges_store
from store import companies as companies_store
from store import credentials as credentials_store
from store import limits as limits_store
from store import quests as quests_store
from store.credentials import NewTokens
from store.limits import LimitOverrides
from store.quest_look import QuestLook, look
from tests.conftest import Tenant
from tests.support import InTenant
from tests.test_store_tenancy import new_quest

REPLY = [{"type": "tool_use", "id": "toolu_1", "name": "note", "input": {"text": "é ✓"}}]


async def claim(tx: TenantTx, quest_id: uuid.UUID, step: int, holder: str) -> None:
    seen = await quests_store.get(tx, quest_id)
    assert seen is not None
    assert await quests_store.claim_step(tx, seen, step, holder) is not None


async def a_quest_two_steps_in(tx: TenantTx, quest_id: uuid.UUID) -> None:
    """Step 1 done with a tool call, step 2 claimed with its reply saved; a settled and an
    open charge; limits overridden; one integration connected."""
    at = datetime(2026, 12, 4, 3, 0, 1, 123456, tzinfo=UTC)
    await charges_store.open_charge(tx, quest_id, 1, "k1", "m", 900, created_at=at)
    await charges_store.settle(tx, "k1", 400, {"input_tokens": 3})
    await claim(tx, quest_id, 1, "w1")
    await quests_store.save_reply(
        tx, quest_id, 1, model="m", content=REPLY, stop_reason="tool_use",
        usage={"input_tokens": 3}, cost_usd_micros=400,
    )  # fmt: skip
    await quests_store.complete_step(
        tx, quest_id, 1, model="m", reply=None, tool_results=[{"type": "tool_result"}],
        events=[{"e": 1}],
    )  # fmt: skip
    later = at + timedelta(seconds=5)
    await charges_store.open_charge(tx, quest_id, 2, "k2", "m", 700, created_at=later)
    await claim(tx, quest_id, 2, "w2")
    await limits_store.put(tx, LimitOverrides(quest_cap_micros=5_000_000, slow_pct=70))
    tokens = NewTokens("kid", b"sealed-access", None, None)
    await credentials_store.connect(
        tx, uuid.uuid4(), "demo", tokens, account=None, scopes=[], connected_by="user:t"
    )


def test_the_look_is_what_the_single_reads_return(in_tenant: InTenant, tenant: Tenant) -> None:
    quest_id = new_quest(in_tenant, tenant.id)
    in_tenant(tenant.id, lambda tx: a_quest_two_steps_in(tx, quest_id))

    async def both(tx: TenantTx) -> tuple[QuestLook | None, QuestLook]:
        company = await companies_store.get(tx)
        single = QuestLook(
            quest=await quests_store.get(tx, quest_id),  # type: ignore[arg-type]
            steps=await quests_store.steps(tx, quest_id),
            charges=await charges_store.for_quest(tx, quest_id),
            limits=await limits_store.get(tx),
            integrations=await credentials_store.integrations(tx),
            company_name=company.name if company else "",
        )
        return await look(tx, quest_id), single

    found, single = in_tenant(tenant.id, both)
    assert found == single
    assert [s.step for s in found.steps] == [1] and found.steps[0].content == REPLY
    assert [c.charge_key for c in found.charges] == ["k1", "k2"]
    assert found.charges[0].created_at == datetime(2026, 12, 4, 3, 0, 1, 123456, tzinfo=UTC)
    assert found.limits.slow_pct == 70 and found.integrations == {"demo"}
    assert found.company_name == "Acme Robotics" and found.quest.step_claimed == 2


def test_a_new_quest_looks_empty_and_another_company_finds_nothing(
    in_tenant: InTenant, tenant: Tenant, other_tenant: Tenant
) -> None:
    quest_id = new_quest(in_tenant, tenant.id)
    found = in_tenant(tenant.id, lambda tx: look(tx, quest_id))
    assert found is not None and found.quest.id == quest_id
    assert (found.steps, found.charges, found.integrations) == ([], [], set())
    assert found.limits == LimitOverrides()
    assert in_tenant(other_tenant.id, lambda tx: look(tx, quest_id)) is None
