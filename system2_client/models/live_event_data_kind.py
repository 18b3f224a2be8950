from enum import StrEnum

class LiveEventDataKind(StrEnum):
    GUARD_SLOWED = "guard.slowed"
    QUEST_STATE = "quest.state"
    STEP_FINISHED = "step.finished"
    STEP_WAITING = "step.waiting"
    TOOL_CALLED = "tool.called"
    TOOL_FINISHED = "tool.finished"

    def __str__(self) -> str:
        return str(self.value)
