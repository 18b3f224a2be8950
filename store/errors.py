"""Errors of the store, with messages an operator can act on."""


class StoreError(Exception):
    """Base of every error raised by ``store``."""


class NoTenantContext(StoreError):
    """A tenant's rows were about to be touched without a company set for the transaction."""


class StoreUnavailable(StoreError):
    """Postgres did not answer; the work can be retried later."""


class MigrationError(StoreError):
    """A migration could not be applied, or the database is not in the state it expects."""


class Conflict(StoreError):
    """The request conflicts with what is stored (e.g. an idempotency key reused for
    a different request)."""
