"""Errors of the ingress. Each becomes an answer with a status and a machine-readable reason
(``ingress.error_handlers``); none is ever shown as a stack trace."""

from __future__ import annotations


class IngressError(Exception):
    """Base of every error raised by ``ingress``."""


class VaultUnavailable(IngressError):
    """The ingress has no vault keys, so it cannot store credentials."""


class SubmissionRefused(IngressError):
    """The quest may not be created as asked (e.g. a cap above the company's ceiling)."""


class Throttled(IngressError):
    """The company may not start a quest now; nothing was created. ``reason`` is the
    machine-readable word for why (the 429's ``reason``), the message the words for people."""

    def __init__(self, detail: str, retry_after_s: int, reason: str = "throttled") -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
        self.reason = reason
