from enum import StrEnum

class SpendViewTier(StrEnum):
    HALT = "halt"
    OK = "ok"
    SLOW = "slow"
    WARN = "warn"

    def __str__(self) -> str:
        return str(self.value)
