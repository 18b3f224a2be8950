"""Errors of the workers. Each says what happened in words an operator can act on."""


class WorkerError(Exception):
    """Base of every error raised by ``workers``."""


class QuestFailed(WorkerError):
    """The quest cannot go on: it ends ``failed`` with this reason."""


class QuestHalted(WorkerError):
    """Spending must stop: the quest ends ``halted`` with this reason."""


class TryLater(WorkerError):
    """A dependency is down or busy; the step is retried with backoff, nothing is lost."""
