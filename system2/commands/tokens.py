"""Access tokens for local work and smoke tests."""

from __future__ import annotations

from typing import Annotated

import typer

from system2.cli_support import emit, settings
from system2.errors import System2Error

app = typer.Typer(help="Access tokens for local work and smoke tests.", no_args_is_help=True)


@app.command("mint")
def token_mint(
    user: Annotated[str, typer.Option(help="the user id (sub)")],
    ttl: Annotated[int, typer.Option(help="seconds until it expires")] = 900,
) -> None:
    """Mint an access token signed with S2_JWT_SECRET (not in production)."""
    from system2.dev_tokens import mint

    s = settings()
    if s.production():
        raise System2Error("refusing to mint tokens in production; use Supabase Auth")
    emit(mint(s.jwt_secret.get_secret_value(), user, ttl_s=ttl, audience=s.jwt_audience))
