"""Errors of the guard."""


class GuardError(Exception):
    """Base of every error raised by ``guard``."""


class UnpricedModel(GuardError):
    """The model has no price in the table: the call is refused rather than priced at zero."""


class GuardUnavailable(GuardError):
    """Redis did not answer: no call may be made until the guard can count it."""
