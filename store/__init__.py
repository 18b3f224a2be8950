"""Postgres: the schema, its migrations, and tenant-scoped access to every row."""

from store.db import BatchTx, Database, TenantTx
from store.errors import (
    Conflict,
    MigrationError,
    NoTenantContext,
    NotFound,
    StoreError,
    StoreUnavailable,
)

__all__ = [
    "BatchTx",
    "Conflict",
    "Database",
    "MigrationError",
    "NoTenantContext",
    "NotFound",
    "StoreError",
    "StoreUnavailable",
    "TenantTx",
]
