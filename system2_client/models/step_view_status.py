from enum import StrEnum

class StepViewStatus(StrEnum):
    CALLING = "calling"
    DONE = "done"
    REPLIED = "replied"

    def __str__(self) -> str:
        return str(self.value)
