"""The wire contract: every message on a queue or a stream, and how it is published.

A leaf of the house: it imports only third-party code, never another package of ours
(``make lint`` checks).
"""

from messages.envelope import (
    SCHEMA_VERSION,
    Actor,
    ActorType,
    Envelope,
    Payload,
    Route,
    open_envelope,
)
from messages.errors import BadMessage, MessagesError, PublishFailed
from messages.payloads import (
    AUDIT,
    CONTROL,
    MAINTENANCE,
    QUESTS,
    QUEUES,
    WEBHOOKS,
    AuditBatch,
    AuditEvent,
    CancelQuest,
    DispatchWebhooks,
    QuestEvent,
    QuestStep,
    RewrapCredentials,
)

__all__ = [
    "AUDIT",
    "CONTROL",
    "MAINTENANCE",
    "QUESTS",
    "QUEUES",
    "SCHEMA_VERSION",
    "WEBHOOKS",
    "Actor",
    "ActorType",
    "AuditBatch",
    "AuditEvent",
    "BadMessage",
    "CancelQuest",
    "DispatchWebhooks",
    "Envelope",
    "MessagesError",
    "Payload",
    "PublishFailed",
    "QuestEvent",
    "QuestStep",
    "RewrapCredentials",
    "Route",
    "open_envelope",
]
