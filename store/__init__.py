"""Postgres: the schema, its migrations, and tenant-scoped access to every row.

A leaf of the house: it imports only third-party code, never another package of ours
(``make lint`` checks).
"""

from store.cursors import BadCursor
from store.db import BatchTx, Database, TenantTx
from store.errors import (
    Conflict,
    MigrationError,
    NoTenantContext,
    StoreError,
    StoreUnavailable,
)

__all__ = [
    "BadCursor",
    "BatchTx",
    "Conflict",
    "Database",
    "MigrationError",
    "NoTenantContext",
    "StoreError",
    "StoreUnavailable",
    "TenantTx",
]
