"""Access tokens for local work and smoke tests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from system2.cli_support import emit, say, settings
from system2.errors import System2Error

app = typer.Typer(help="Access tokens for local work and smoke tests.", no_args_is_help=True)

DEV_KEY = Path(".s2/jwt-signing-key.pem")
KeyOption = Annotated[
    Path | None,
    typer.Option(
        "--key",
        help="an EC P-256 signing key (PEM; made when missing): sign ES256 with it, as a "
        f"Supabase project on signing keys does (e.g. {DEV_KEY})",
    ),
]


@app.command("mint")
def token_mint(
    user: Annotated[str, typer.Option(help="the user id (sub)")],
    ttl: Annotated[int, typer.Option(help="seconds until it expires")] = 900,
    key: KeyOption = None,
) -> None:
    """Mint an access token: HS256 with S2_JWT_SECRET, or ES256 with --key (not in
    production). Its iss is S2_JWT_ISSUER when that is set."""
    from system2.dev_tokens import DevSigningKey, mint

    s = settings()
    if s.production():
        raise System2Error("refusing to mint tokens in production; use Supabase Auth")
    aud, iss = s.jwt_audience, s.jwt_issuer
    if key is not None:
        emit(DevSigningKey.load_or_create(key).mint(user, ttl_s=ttl, audience=aud, issuer=iss))
        return
    secret = s.jwt_hs256_secret()
    if secret is None:
        raise System2Error("HS256 is off (S2_JWT_SECRET is not set); mint with --key")
    emit(mint(secret, user, ttl_s=ttl, audience=aud, issuer=iss))


@app.command("jwks")
def token_jwks(
    key: Annotated[Path, typer.Option(help="the signing key (PEM; made when missing)")] = DEV_KEY,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8791,
) -> None:
    """Serve --key's public key as a Supabase project's JWKS on loopback (not in production):
    point S2_JWT_JWKS_URL at it and mint tokens with `token mint --key`."""
    from standins.supabase_jwks import JwksStandin, serve
    from system2.dev_tokens import DevSigningKey

    if settings().production():
        raise System2Error("refusing to serve dev signing keys in production")
    signing = DevSigningKey.load_or_create(key)
    standin = JwksStandin(host=host, port=port, keys=signing.jwks()["keys"])
    serve(standin, ready=lambda s: say(f"S2_JWT_JWKS_URL={s.url}  (kid {signing.kid})"))
