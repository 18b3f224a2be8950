from enum import StrEnum

class IntegrationViewStatus(StrEnum):
    CONNECTED = "connected"
    DISABLED = "disabled"
    NEEDS_RECONNECT = "needs_reconnect"

    def __str__(self) -> str:
        return str(self.value)
