"""Cancelling a quest: recorded on its row (durable), announced to the workers (prompt), and
queued on ``control`` (never behind quest steps). Shared by the HTTP route and the CLI."""

from __future__ import annotations

from uuid import uuid4

import redis

from messages import Actor, ActorType, CancelQuest, Envelope
from messages.notices import announce_cancel
from messages.transport import Publisher
from store import TenantTx
from store import quests as quests_store
from store.quests import Quest


async def request_cancel(tx: TenantTx, quest: Quest, *, by: Actor, reason: str) -> Quest:
    """Record the request on the row (within the caller's transaction)."""
    updated = await quests_store.request_cancel(tx, quest.id, by=by.ref, reason=reason)
    return updated or quest


def send_cancel(
    client: redis.Redis, publisher: Publisher, quest: Quest, *, by: Actor, reason: str
) -> None:
    """After the commit: tell the running worker at once, and queue the control message.
    Blocking (Redis): an async caller runs it in a worker thread."""
    announce_cancel(client, quest.id)
    publisher.publish(
        Envelope[CancelQuest](
            company_id=quest.company_id,
            actor=by,
            correlation_id=quest.correlation_id or uuid4(),
            payload=CancelQuest(quest_id=quest.id, reason=reason),
        )
    )


def may_cancel(role: str, user_id: str, quest: Quest) -> bool:
    """Admins cancel any of the company's quests; a member cancels the quests they submitted."""
    return role == "admin" or quest.created_by == Actor(type=ActorType.user, id=user_id).ref
