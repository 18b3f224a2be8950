"""Operators' vault work across every company: key usage, rewrap, retire."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import redis

from messages import Actor, ActorType, Envelope, RewrapCredentials
from messages.transport import publisher
from runtime.settings import Settings
from runtime.wiring import build_vault
from store import Database
from store import companies as companies_store
from store import credentials as credentials_store
from store import webhooks as webhooks_store
from system2.errors import System2Error
from vault import RedisEncryptionCounter

OPERATOR = Actor(type=ActorType.operator, id="vault")


async def _company_ids(db: Database) -> list[uuid.UUID]:
    async with db.connection() as conn:
        return await companies_store.all_ids(conn)


async def ciphertexts_per_key(db: Database) -> Counter[str]:
    """How many ciphertexts each key id protects, over every company (a tenant at a time)."""
    total: Counter[str] = Counter()
    for company_id in await _company_ids(db):
        async with db.tenant(company_id) as tx:
            total.update(await credentials_store.key_counts(tx))
            total.update(await webhooks_store.key_counts(tx))  # endpoints' signing secrets
    return total


async def key_usage(settings: Settings, db: Database, client: redis.Redis) -> dict[str, Any]:
    vault = build_vault(settings, client)
    counter = RedisEncryptionCounter(client)
    used = await ciphertexts_per_key(db)
    now = datetime.now(UTC)
    primary = vault.keyring.primary
    age = primary.age_days(now)
    keys = [
        {
            "key_id": key.kid,
            "primary": key.kid == primary.kid,
            "ciphertexts": used.get(key.kid, 0),
            "encryptions": counter.get(key.kid),
            "age_days": key.age_days(now),
        }
        for key in vault.keyring
    ]
    missing = sorted(k for k in used if k not in vault.keyring)
    return {
        "primary": primary.kid,
        "primary_age_days": age,
        "rotate_days": settings.vault_rotate_days,
        "rotation_due": age is not None and age >= settings.vault_rotate_days,
        "keys": keys,
        "unknown_key_ids_in_use": missing,  # ciphertexts no key here can open: restore that key
    }


async def queue_rewrap(settings: Settings, db: Database) -> tuple[int, str]:
    primary = build_vault(settings, redis.Redis.from_url(settings.redis_url)).keyring.primary.kid
    with publisher(settings.redis_url) as queue:
        companies = await _company_ids(db)
        for company_id in companies:
            queue.publish(
                Envelope[RewrapCredentials](
                    company_id=company_id,
                    actor=OPERATOR,
                    correlation_id=uuid.uuid4(),
                    payload=RewrapCredentials(primary_kid=primary),
                )
            )
    return len(companies), primary


async def wait_rewrapped(settings: Settings, db: Database, primary: str, timeout_s: int) -> None:
    """Wait until no ciphertext uses another key of the keyring (ciphertexts under keys the
    keyring lacks cannot be rewrapped; `vault status` lists them)."""
    older = set(build_vault(settings, redis.Redis.from_url(settings.redis_url)).keyring.kids) - {
        primary
    }
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = sum(n for kid, n in (await ciphertexts_per_key(db)).items() if kid in older)
        if left == 0:
            return
        await asyncio.sleep(0.5)
    raise System2Error(f"credentials still use older keys after {timeout_s}s: are workers running?")


async def check_retire(settings: Settings, db: Database, kid: str) -> None:
    vault = build_vault(settings, redis.Redis.from_url(settings.redis_url))
    if kid == vault.keyring.primary.kid:
        raise System2Error(f"{kid} is the primary key: make another key primary and rewrap first")
    in_use = (await ciphertexts_per_key(db)).get(kid, 0)
    if in_use:
        raise System2Error(
            f"{kid} still protects {in_use} ciphertexts: run `system2 vault rewrap --wait` first"
        )
