from enum import StrEnum

class QuestSummaryViewStatus(StrEnum):
    CANCELLED = "cancelled"
    FAILED = "failed"
    HALTED = "halted"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"

    def __str__(self) -> str:
        return str(self.value)
