"""Every payload that travels on a queue or a stream. Nothing else defines a message shape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID

from pydantic import Field

from messages.envelope import Actor, Payload, Route

QUESTS = "quests"
CONTROL = "control"
AUDIT = "audit"
MAINTENANCE = "maintenance"
WEBHOOKS = "webhooks"
QUEUES = (QUESTS, CONTROL, AUDIT, MAINTENANCE, WEBHOOKS)


class QuestStep(Payload):
    """Run step ``step`` (1-based) of a quest. The first one is sent by the ingress."""

    route: ClassVar[Route | None] = Route(queue=QUESTS, actor="quest_step")

    quest_id: UUID
    step: int = Field(ge=1)


class CancelQuest(Payload):
    """An operator's request to stop a quest; travels on ``control``, never behind steps."""

    route: ClassVar[Route | None] = Route(queue=CONTROL, actor="cancel_quest")

    quest_id: UUID
    reason: str = Field("", max_length=2000)


class AuditEvent(Payload):
    """One agent-initiated state change, destined for ``activity_log``.

    ``idempotency_key`` is unique per company: a redelivered event writes nothing twice.
    """

    idempotency_key: str = Field(min_length=1, max_length=300)
    actor: Actor
    action: str = Field(min_length=1, max_length=200)
    target: str = Field(min_length=1, max_length=500)
    rationale: str | None = Field(None, max_length=20_000)
    originating_message_id: UUID | None = None
    quest_id: UUID | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class AuditBatch(Payload):
    """The audit events of one step (or one operator action), all of the envelope's company."""

    route: ClassVar[Route | None] = Route(queue=AUDIT, actor="write_audit")

    events: list[AuditEvent] = Field(min_length=1, max_length=1000)


class RewrapCredentials(Payload):
    """Re-encrypt the company's credentials under ``primary_kid``, a batch per message."""

    route: ClassVar[Route | None] = Route(queue=MAINTENANCE, actor="rewrap_credentials")

    primary_kid: str = Field(min_length=1, max_length=32)
    batch: int = Field(50, ge=1, le=1000)


class QuestEvent(Payload):
    """One entry of a quest's live stream: what an operator watching the quest sees."""

    quest_id: UUID
    kind: str = Field(min_length=1, max_length=100)
    step: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class DispatchWebhooks(Payload):
    """Send the company's webhook deliveries that are due (a nudge: the deliveries are rows
    in Postgres, so a lost or repeated nudge loses or repeats nothing)."""

    route: ClassVar[Route | None] = Route(queue=WEBHOOKS, actor="dispatch_webhooks")
