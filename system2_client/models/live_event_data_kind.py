from enum import StrEnum

class LiveEventDataKind(StrEnum):
    CLAUDE_REPLIED = "claude.replied"
    GUARD_SLOWED = "guard.slowed"
    GUARD_TIER = "guard.tier"
    QUEST_STATE = "quest.state"
    STEP_FINISHED = "step.finished"
    STEP_STARTED = "step.started"
    STEP_WAITING = "step.waiting"
    TOOL_CALLED = "tool.called"
    TOOL_FINISHED = "tool.finished"

    def __str__(self) -> str:
        return str(self.value)
