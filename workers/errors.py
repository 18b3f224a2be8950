"""Errors of the workers. Each says what happened in words an operator can act on."""


class WorkerError(Exception):
    """Base of every error raised by ``workers``."""


class QuestFailed(WorkerError):
    """The quest cannot go on: it ends ``failed`` with this reason."""


class QuestHalted(WorkerError):
    """Spending must stop: the quest ends ``halted`` with this reason."""


class TryLater(WorkerError):
    """A dependency is down or busy; the step is retried later, nothing is lost.
    ``retry_after_ms``: when to try again, if the dependency said (else backoff decides)."""

    def __init__(self, message: str, *, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class NotStarted(TryLater):
    """The message could not begin its work now (its quest's step is running elsewhere): it
    is tried again later, and this start is not counted as one that ended
    (``workers.crash_isolation``)."""


class ProviderUnavailable(TryLater):
    """An integration's provider failed (timeouts, 5xx, its breaker is open)."""


class NotConnected(QuestFailed):
    """The company has not connected the integration a tool needs."""


class QuestCancelled(WorkerError):
    """The quest was cancelled while this step ran; nothing after the cut runs."""
