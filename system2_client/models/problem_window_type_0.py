from enum import StrEnum

class ProblemWindowType0(StrEnum):
    DAILY = "daily"
    MONTHLY = "monthly"

    def __str__(self) -> str:
        return str(self.value)
