"""Webhook endpoints (their signing secrets sealed) and their deliveries.

A delivery is made in the transaction that writes its event's audit row (``FAN_OUT``, used
by ``store.activity``): the audit trail is the one seam every event passes, a redelivered
audit row (same idempotency key) makes no second delivery, and an event whose row is
committed is delivered at least once. Its id is the ``webhook-id`` of every attempt.

A quest's deliveries to one endpoint go out in order: ``due`` offers a delivery only when
no earlier one of the same quest and endpoint is still pending.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from store.db import TenantTx

# The audit actions that are webhook events, and the event each one is.
EVENT_OF_ACTION = {
    "quest.succeeded": "quest.succeeded",
    "quest.failed": "quest.failed",
    "quest.cancelled": "quest.cancelled",
    "quest.halted": "quest.halted",
    "guard.warn": "guard.tier_changed",
    "guard.slow": "guard.tier_changed",
    "guard.halt": "guard.tier_changed",
    "integration.needs_reconnect": "integration.needs_reconnect",
}
EVENT_TYPES = tuple(sorted(set(EVENT_OF_ACTION.values())))
ERROR_MAX = 500

_EVENT_TYPE_SQL = (
    "CASE a.action "
    + " ".join(f"WHEN '{action}' THEN '{event}'" for action, event in EVENT_OF_ACTION.items())
    + " END"
)
# What a delivery's ``data`` holds, per kind of event: ids, words and numbers of ours (the
# audit row's), never a secret nor content from Claude.
_DATA_SQL = """jsonb_strip_nulls(CASE
  WHEN a.action LIKE 'quest.%%' THEN jsonb_build_object(
    'quest_id', a.quest_id, 'status', substr(a.action, 7), 'reason', a.rationale,
    'ended_by', a.actor_type)
  WHEN a.action LIKE 'guard.%%' THEN jsonb_build_object(
    'tier', substr(a.action, 7), 'scope', a.payload->>'scope', 'quest_id', a.quest_id,
    'target', a.target, 'spent_usd_micros', a.payload->'spent_usd_micros',
    'cap_usd_micros', a.payload->'cap_usd_micros', 'reason', a.rationale)
  ELSE jsonb_build_object(
    'integration', substr(a.target, 13), 'quest_id', a.quest_id, 'reason', a.rationale)
END)"""

# Appended to the audit rows' INSERT ... RETURNING (``added``): one delivery per new row that
# is an event and endpoint of the company subscribed to it, in the rows' order.
FAN_OUT = f"""
, fanned AS (
  INSERT INTO webhook_deliveries
    (company_id, endpoint_id, activity_id, event_type, quest_id, occurred_at, data)
  SELECT a.company_id, e.id, a.id, {_EVENT_TYPE_SQL}, a.quest_id, a.occurred_at, {_DATA_SQL}
  FROM added a JOIN webhook_endpoints e
    ON e.company_id = a.company_id AND e.disabled_at IS NULL
   AND {_EVENT_TYPE_SQL} = ANY (e.event_types)
  ORDER BY a.id, e.id
)
"""
ADDED_COLUMNS = (
    "id, company_id, occurred_at, actor_type, action, target, rationale, quest_id, payload"
)

_ENDPOINT = (
    "id, url, event_types, description, key_id, secret, created_by, created_at, "
    "failed_streak, disabled_at, disabled_reason"
)
_DELIVERY = (
    "id, endpoint_id, activity_id, event_type, quest_id, occurred_at, data, status, attempts, "
    "next_attempt_at, last_attempt_at, last_status, last_error, delivered_at, created_at"
)


@dataclass(frozen=True)
class Endpoint:
    id: UUID
    url: str
    event_types: list[str]
    description: str | None
    key_id: str
    secret: bytes  # sealed by the vault; never leaves a worker's memory opened
    created_by: str
    created_at: datetime
    failed_streak: int
    disabled_at: datetime | None
    disabled_reason: str | None

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True)
class Delivery:
    id: UUID
    endpoint_id: UUID
    activity_id: int  # its event's audit row: the order of the events
    event_type: str
    quest_id: UUID | None
    occurred_at: datetime
    data: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class NewEndpoint:
    id: UUID
    url: str
    event_types: list[str]
    description: str | None
    key_id: str
    secret: bytes
    created_by: str


async def add_endpoint(tx: TenantTx, new: NewEndpoint) -> Endpoint:
    found = await tx.first(
        Endpoint,
        "INSERT INTO webhook_endpoints (id, company_id, url, event_types, description, key_id, "
        f"secret, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_ENDPOINT}",
        (
            new.id,
            tx.company_id,
            new.url,
            new.event_types,
            new.description,
            new.key_id,
            new.secret,
            new.created_by,
        ),
    )
    assert found is not None
    return found


async def endpoints(tx: TenantTx) -> list[Endpoint]:
    return await tx.rows(
        Endpoint,
        f"SELECT {_ENDPOINT} FROM webhook_endpoints WHERE company_id = %s ORDER BY created_at, id",
        (tx.company_id,),
    )


async def endpoint(tx: TenantTx, endpoint_id: UUID) -> Endpoint | None:
    return await tx.first(
        Endpoint,
        f"SELECT {_ENDPOINT} FROM webhook_endpoints WHERE company_id = %s AND id = %s",
        (tx.company_id, endpoint_id),
    )


async def remove_endpoint(tx: TenantTx, endpoint_id: UUID) -> bool:
    """Remove the endpoint and its deliveries (pending ones are never sent)."""
    cur = await tx.execute(
        "DELETE FROM webhook_endpoints WHERE company_id = %s AND id = %s",
        (tx.company_id, endpoint_id),
    )
    return cur.rowcount == 1


async def deliveries(
    tx: TenantTx, endpoint_id: UUID, *, before: int | None = None, limit: int = 50
) -> list[Delivery]:
    """The endpoint's deliveries, newest first (``before``: the ``activity_id`` the previous
    page ended on)."""
    return await tx.rows(
        Delivery,
        f"SELECT {_DELIVERY} FROM webhook_deliveries WHERE company_id = %s AND endpoint_id = %s "
        "AND activity_id < %s ORDER BY activity_id DESC LIMIT %s",
        (tx.company_id, endpoint_id, before or 2**62, limit),
    )


async def due(tx: TenantTx, *, limit: int, lease_s: float) -> list[Delivery]:
    """Claim up to ``limit`` deliveries whose attempt is due, each the earliest pending one of
    its quest at its endpoint, for ``lease_s`` (a worker that dies mid-send leaves it to be
    claimed again then: at least once). Skips rows another transaction is claiming."""
    claimed = await tx.rows(
        Delivery,
        "UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => %s) "
        "WHERE (d.company_id, d.id) IN ("
        "  SELECT c.company_id, c.id FROM webhook_deliveries c "
        "  WHERE c.company_id = %s AND c.status = 'pending' AND c.next_attempt_at <= now() "
        "  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.company_id = c.company_id "
        "    AND p.endpoint_id = c.endpoint_id AND p.quest_id = c.quest_id "
        "    AND p.status = 'pending' AND p.activity_id < c.activity_id) "
        "  ORDER BY c.activity_id LIMIT %s FOR UPDATE SKIP LOCKED) "
        f"RETURNING {', '.join('d.' + c.strip() for c in _DELIVERY.split(','))}",
        (lease_s, tx.company_id, limit),
    )
    return sorted(claimed, key=lambda d: d.activity_id)  # UPDATE ... RETURNING keeps no order


async def has_due(tx: TenantTx) -> bool:
    """Whether a delivery of the company waits for an attempt now."""
    row = await tx.one(
        "SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE company_id = %s "
        "AND status = 'pending' AND next_attempt_at <= now())",
        (tx.company_id,),
    )
    return bool(row and row[0])


async def delivered(tx: TenantTx, delivery: Delivery, status: int) -> None:
    """The endpoint answered 2xx: the delivery is done and the endpoint's streak reset."""
    await tx.execute(
        "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, "
        "last_attempt_at = now(), last_status = %s, last_error = NULL, delivered_at = now() "
        "WHERE company_id = %s AND id = %s AND status = 'pending'",
        (status, tx.company_id, delivery.id),
    )
    await tx.execute(
        "UPDATE webhook_endpoints SET failed_streak = 0 WHERE company_id = %s AND id = %s "
        "AND failed_streak <> 0",
        (tx.company_id, delivery.endpoint_id),
    )


async def attempt_failed(
    tx: TenantTx,
    delivery: Delivery,
    *,
    status: int | None,
    error: str,
    retry_in_s: float | None,
) -> int | None:
    """Record a failed attempt: the next one in ``retry_in_s``, or (None) the delivery is
    given up. Returns the endpoint's streak of given-up deliveries when it gave up."""
    given_up = retry_in_s is None
    await tx.execute(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, last_attempt_at = now(), "
        "last_status = %s, last_error = %s, "
        "status = CASE WHEN %s THEN 'failed' ELSE status END, "
        "next_attempt_at = now() + make_interval(secs => %s) "
        "WHERE company_id = %s AND id = %s AND status = 'pending'",
        (status, error[:ERROR_MAX], given_up, retry_in_s or 0, tx.company_id, delivery.id),
    )
    if not given_up:
        return None
    row = await tx.one(
        "UPDATE webhook_endpoints SET failed_streak = failed_streak + 1 "
        "WHERE company_id = %s AND id = %s RETURNING failed_streak",
        (tx.company_id, delivery.endpoint_id),
    )
    return int(row[0]) if row else None


async def disable(tx: TenantTx, endpoint_id: UUID, reason: str) -> Endpoint | None:
    """Disable the endpoint (if enabled): its pending deliveries are given up with it.
    Returns it as disabled, or None if this call changed nothing."""
    found = await tx.first(
        Endpoint,
        "UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = %s "
        "WHERE company_id = %s AND id = %s AND disabled_at IS NULL "
        f"RETURNING {_ENDPOINT}",
        (reason[:ERROR_MAX], tx.company_id, endpoint_id),
    )
    if found is not None:
        await tx.execute(
            "UPDATE webhook_deliveries SET status = 'failed', "
            "last_error = coalesce(last_error, 'the endpoint was disabled') "
            "WHERE company_id = %s AND endpoint_id = %s AND status = 'pending'",
            (tx.company_id, endpoint_id),
        )
    return found


async def key_counts(tx: TenantTx) -> Counter[str]:
    """How many signing secrets of the company each vault key id protects."""
    rows = await tx.all(
        "SELECT key_id, count(*) FROM webhook_endpoints WHERE company_id = %s GROUP BY key_id",
        (tx.company_id,),
    )
    return Counter({str(kid): int(n) for kid, n in rows})


async def under(tx: TenantTx, key_ids: list[str], limit: int) -> list[Endpoint]:
    """Endpoints of the company whose secret is sealed under one of ``key_ids``."""
    return await tx.rows(
        Endpoint,
        f"SELECT {_ENDPOINT} FROM webhook_endpoints WHERE company_id = %s AND key_id = ANY(%s) "
        "ORDER BY id LIMIT %s",
        (tx.company_id, key_ids, limit),
    )


async def replace_secret(tx: TenantTx, endpoint: Endpoint, key_id: str, secret: bytes) -> bool:
    """Store the secret sealed again (rewrap) if the row still holds what was read."""
    cur = await tx.execute(
        "UPDATE webhook_endpoints SET key_id = %s, secret = %s "
        "WHERE company_id = %s AND id = %s AND secret = %s",
        (key_id, secret, tx.company_id, endpoint.id, endpoint.secret),
    )
    return cur.rowcount == 1
