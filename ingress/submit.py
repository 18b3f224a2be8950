"""Submitting a quest: the row, then its first step on the queue.

Shared by the HTTP route and ``system2 quest submit``. The row is committed first, then the
first step is published and the row marked as enqueued. If the queue does not take it, the
row is deleted again and the caller is told so — nothing is claimed to be queued that is
not. If the submitter dies between the two, a retry with the same idempotency key publishes
the first step (a duplicate, should one exist, is dropped by the worker's step claim).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from uuid import UUID, uuid4

from messages import Actor, Envelope, QuestStep
from messages.errors import PublishFailed
from messages.transport import Publisher
from store import Conflict, Database, TenantTx
from store import quests as quests_store
from store.quests import NewQuest, Quest


@dataclass(frozen=True)
class QuestSpec:
    goal: str
    model: str
    max_usd_micros: int | None = None
    idempotency_key: str | None = None

    def request_hash(self) -> str:
        body = {"goal": self.goal, "model": self.model, "max_usd_micros": self.max_usd_micros}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def create_quest(
    tx: TenantTx, actor: Actor, spec: QuestSpec, *, correlation_id: UUID | None = None
) -> tuple[Quest, bool]:
    """Insert the quest (or find the one this idempotency key made). True if its first step
    must now be published."""
    new = NewQuest(
        id=uuid4(),
        goal=spec.goal,
        model=spec.model,
        max_usd_micros=spec.max_usd_micros,
        created_by=f"{actor.type.value}:{actor.id}",
        correlation_id=correlation_id or uuid4(),
        origin_message_id=uuid4(),
        idempotency_key=spec.idempotency_key,
        request_hash=spec.request_hash() if spec.idempotency_key else None,
    )
    quest, stored_hash, created = quests_store.create(tx, new)
    if not created and stored_hash != new.request_hash:
        raise Conflict("this Idempotency-Key was already used for a different request")
    return quest, created or quest.needs_first_step


def enqueue_first_step(db: Database, publisher: Publisher, quest: Quest, actor: Actor) -> None:
    envelope = Envelope[QuestStep](
        message_id=quest.origin_message_id,
        company_id=quest.company_id,
        actor=actor,
        correlation_id=quest.correlation_id,
        payload=QuestStep(quest_id=quest.id, step=1),
    )
    try:
        publisher.publish(envelope)
    except PublishFailed:
        with db.tenant(quest.company_id) as tx:
            quests_store.delete_unstarted(tx, quest.id)
        raise
    with db.tenant(quest.company_id) as tx:
        quests_store.mark_first_step_enqueued(tx, quest.id)
