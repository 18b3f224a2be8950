"""Errors of the guard."""


class GuardError(Exception):
    """Base of every error raised by ``guard``."""


class UnpricedModel(GuardError):
    """The model has no price in the table: the call is refused rather than priced at zero."""
