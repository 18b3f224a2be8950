"""Encryption keys of integration credentials."""

from __future__ import annotations

from typing import Annotated

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
    with app_db(s) as db:
        emit(key_usage(s, db, redis.Redis.from_url(s.redis_url)))


@app.command("rewrap")
def vault_rewrap(
    wait: Annotated[bool, typer.Option(help="wait until no credential uses another key")] = False,
    timeout: Annotated[int, typer.Option(help="seconds to wait")] = 600,
) -> None:
    """Re-encrypt every credential under the primary key (a Dramatiq actor, per company,
    in batches; resumable and safe to run twice, beside live workers)."""
    from system2.vault_admin import queue_rewrap, wait_rewrapped

    s = settings()
    with app_db(s) as db:
        queued, primary = queue_rewrap(s, db)
        say(f"rewrap under {primary} queued for {queued} companies")
        if wait:
            wait_rewrapped(s, db, primary, timeout)
            say(f"every credential is under {primary}")


@app.command("retire")
def vault_retire(kid: str) -> None:
    """Check that a key may leave the secrets store: refused while any credential uses it."""
    from system2.vault_admin import check_retire

    s = settings()
    with app_db(s) as db:
        check_retire(s, db, kid)
    say(f"{kid} protects no credential: remove it from S2_VAULT_KEYS, then restart the processes")
