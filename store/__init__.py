"""Postgres: the schema, its migrations, and tenant-scoped access to every row."""

from store.db import BatchTx, Database, TenantTx
from store.errors import (
    Conflict,
    MigrationError,
    NoTenantContext,
    StoreError,
    StoreUnavailable,
)

__all__ = [
    "BatchTx",
    "Conflict",
    "Database",
    "MigrationError",
    "NoTenantContext",
    "StoreError",
    "StoreUnavailable",
    "TenantTx",
]
