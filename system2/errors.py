"""Errors of the command line and the demo."""


class System2Error(Exception):
    """Base of errors raised by the ``system2`` package: one readable line each."""
