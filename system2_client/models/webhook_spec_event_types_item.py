from enum import StrEnum

class WebhookSpecEventTypesItem(StrEnum):
    GUARD_TIER_CHANGED = "guard.tier_changed"
    INTEGRATION_NEEDS_RECONNECT = "integration.needs_reconnect"
    QUEST_CANCELLED = "quest.cancelled"
    QUEST_FAILED = "quest.failed"
    QUEST_HALTED = "quest.halted"
    QUEST_SUCCEEDED = "quest.succeeded"

    def __str__(self) -> str:
        return str(self.value)
