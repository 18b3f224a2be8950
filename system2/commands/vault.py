"""Encryption keys of integration credentials."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import redis
import typer

from system2.cli_support import app_db, emit, say, settings

app = typer.Typer(help="Encryption keys of integration credentials.", no_args_is_help=True)


@app.command("new-key")
def vault_new_key() -> None:
    """Print one fresh KID=BASE64KEY entry for the secrets store (put it first to make it
    the primary, then run `system2 vault rewrap`)."""
    from datetime import UTC, datetime

    from vault import new_key_entry

    emit(new_key_entry(datetime.now(UTC)))


@app.command("status")
def vault_status() -> None:
    """Per key id: how many ciphertexts use it and how many encryptions it made; the
    primary's age against S2_VAULT_ROTATE_DAYS."""
    from system2.vault_admin import key_usage

    s = settings()

    async def usage() -> dict[str, Any]:
        async with app_db(s) as db:
            return await key_usage(s, db, redis.Redis.from_url(s.redis_url))

    emit(asyncio.run(usage()))


@app.command("rewrap")
def vault_rewrap(
    wait: Annotated[bool, typer.Option(help="wait until no credential uses another key")] = False,
    timeout: Annotated[int, typer.Option(help="seconds to wait")] = 600,
) -> None:
    """Re-encrypt every credential under the primary key (a Dramatiq actor, per company,
    in batches; resumable and safe to run twice, beside live workers)."""
    from system2.vault_admin import queue_rewrap, wait_rewrapped

    s = settings()

    async def rewrap() -> None:
        async with app_db(s) as db:
            queued, primary = await queue_rewrap(s, db)
            say(f"rewrap under {primary} queued for {queued} companies")
            if wait:
                await wait_rewrapped(s, db, primary, timeout)
                say(f"every credential is under {primary}")

    asyncio.run(rewrap())


@app.command("retire")
def vault_retire(kid: str) -> None:
    """Check that a key may leave the secrets store: refused while any credential uses it."""
    from system2.vault_admin import check_retire

    s = settings()

    async def check() -> None:
        async with app_db(s) as db:
            await check_retire(s, db, kid)

    asyncio.run(check())
    say(f"{kid} protects no credential: remove it from S2_VAULT_KEYS, then restart the processes")
