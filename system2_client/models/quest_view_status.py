from enum import StrEnum

class QuestViewStatus(StrEnum):
    CANCELLED = "cancelled"
    FAILED = "failed"
    HALTED = "halted"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"

    def __str__(self) -> str:
        return str(self.value)
