from enum import StrEnum

class ActivityViewActorType(StrEnum):
    OPERATOR = "operator"
    SYSTEM = "system"
    TED = "ted"
    USER = "user"

    def __str__(self) -> str:
        return str(self.value)
