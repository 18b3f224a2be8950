from enum import StrEnum

class SpendViewScope(StrEnum):
    DAY = "day"
    MONTH = "month"
    QUEST = "quest"

    def __str__(self) -> str:
        return str(self.value)
