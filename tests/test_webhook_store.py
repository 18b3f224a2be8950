"""Deliveries are made with their events' audit rows, once, for the endpoints subscribed;
a quest's deliveries to one endpoint are offered one at a time, in order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from store import TenantTx
from store import activity as activity_store
from store import webhooks as webhooks_store
from store.activity import NewActivity
from store.webhooks import Delivery, NewEndpoint
from tests.conftest import Tenant
from tests.support import InTenant

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def endpoint(in_tenant: InTenant, tenant: Tenant, *events: str) -> uuid.UUID:
    new = NewEndpoint(
        id=uuid.uuid4(),
        url="https://hooks.example.com/x",
        event_types=list(events),
        description=None,
        key_id="k",
        secret=b"sealed",  # the store keeps what it is given; sealing is the vault's
        created_by="user:test",
    )
    in_tenant(tenant.id, lambda tx: webhooks_store.add_endpoint(tx, new))
    return new.id


def row(action: str, *, quest: uuid.UUID | None = None, n: int = 0, **extra: Any) -> NewActivity:
    return NewActivity(
        idempotency_key=f"{action}:{quest}:{n}",
        occurred_at=T0 + timedelta(seconds=n),
        actor_type="ted",
        actor_id="ted",
        action=action,
        target=extra.pop("target", f"quest:{quest}"),
        rationale=extra.pop("rationale", None),
        originating_message_id=None,
        quest_id=quest,
        payload=extra,
    )


def append(in_tenant: InTenant, tenant: Tenant, *rows: NewActivity) -> int:
    return int(in_tenant(tenant.id, lambda tx: activity_store.append(tx, list(rows))))


def listed(in_tenant: InTenant, tenant: Tenant, endpoint_id: uuid.UUID) -> list[Delivery]:
    return list(
        reversed(in_tenant(tenant.id, lambda tx: webhooks_store.deliveries(tx, endpoint_id)))
    )


def test_each_event_becomes_one_delivery_per_subscribed_endpoint(
    in_tenant: InTenant, tenant: Tenant, other_tenant: Tenant
) -> None:
    everything = endpoint(
        in_tenant,
        tenant,
        "quest.succeeded",
        "quest.halted",
        "guard.tier_changed",
        "integration.needs_reconnect",
    )
    failures = endpoint(in_tenant, tenant, "quest.failed")
    theirs = endpoint(in_tenant, other_tenant, "quest.succeeded")
    quest = uuid.uuid4()
    rows = [
        row("note.added", quest=quest, n=1),
        row(
            "guard.slow",
            quest=quest,
            n=2,
            scope="quest",
            spent_usd_micros=8,
            cap_usd_micros=10,
            rationale="spend reached 80% of the quest's cap",
        ),
        row("quest.halted", quest=quest, n=3, rationale="the quest's cap is spent"),
        row(
            "integration.needs_reconnect",
            quest=quest,
            n=4,
            target="integration:github",
            rationale="the token was refused after a refresh",
        ),
    ]
    assert append(in_tenant, tenant, *rows) == 4
    assert append(in_tenant, tenant, *rows) == 0, "a row seen before"

    made = listed(in_tenant, tenant, everything)
    assert [d.event_type for d in made] == [
        "guard.tier_changed",
        "quest.halted",
        "integration.needs_reconnect",
    ], "one each, in the events' order, none again for the repeated rows"
    guard, halted, reconnect = (d.data for d in made)
    assert guard == {
        "tier": "slow",
        "scope": "quest",
        "quest_id": str(quest),
        "target": f"quest:{quest}",
        "spent_usd_micros": 8,
        "cap_usd_micros": 10,
        "reason": "spend reached 80% of the quest's cap",
    }
    assert halted == {
        "quest_id": str(quest),
        "status": "halted",
        "reason": "the quest's cap is spent",
        "ended_by": "ted",
    }
    assert reconnect == {
        "integration": "github",
        "quest_id": str(quest),
        "reason": "the token was refused after a refresh",
    }
    assert all(d.status == "pending" and d.attempts == 0 for d in made)
    assert listed(in_tenant, tenant, failures) == []
    assert listed(in_tenant, other_tenant, theirs) == []


def test_a_quests_deliveries_are_offered_one_at_a_time_in_order(
    in_tenant: InTenant, tenant: Tenant
) -> None:
    endpoint(in_tenant, tenant, "quest.succeeded", "guard.tier_changed")
    first, second = uuid.uuid4(), uuid.uuid4()
    append(
        in_tenant,
        tenant,
        row("guard.warn", quest=first, n=1, scope="quest"),
        row("guard.warn", quest=second, n=2, scope="quest"),
        row("quest.succeeded", quest=first, n=3),
    )

    async def claim(tx: TenantTx) -> list[Delivery]:
        return await webhooks_store.due(tx, limit=10, lease_s=60)

    offered = in_tenant(tenant.id, claim)
    assert [(d.quest_id, d.event_type) for d in offered] == [
        (first, "guard.tier_changed"),
        (second, "guard.tier_changed"),
    ], "the first quest's second delivery waits for its first"
    assert in_tenant(tenant.id, claim) == [], "claimed ones are leased"

    async def outcome(tx: TenantTx) -> None:
        await webhooks_store.delivered(tx, offered[0], 200)
        await webhooks_store.attempt_failed(
            tx, offered[1], status=500, error="answered HTTP 500", retry_in_s=0
        )

    in_tenant(tenant.id, outcome)
    now = in_tenant(tenant.id, claim)
    assert sorted((d.quest_id, d.event_type) for d in now) == sorted(
        [(first, "quest.succeeded"), (second, "guard.tier_changed")]
    )
    retried = next(d for d in now if d.quest_id == second)
    assert retried.id == offered[1].id and retried.attempts == 1
