"""How the demo's users sign in: HS256 with the shared secret, as a project on Supabase's
legacy secret does; or ES256 with a signing key made for this demo, whose JWKS a stand-in of
Supabase's endpoint serves to the ingress (``system2 demo --signing-keys``, and whenever the
settings turn HS256 off: a real project's private keys are not ours to mint with)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from runtime.settings import Settings
from standins.supabase_jwks import JwksStandin, serving
from system2.dev_tokens import DevSigningKey, mint

DEMO_ISSUER = "http://127.0.0.1/auth/v1"  # the demo's stand-in project


@dataclass
class DemoAuth:
    mint: Callable[[str], str]  # a session token for a user
    env: dict[str, str]  # what the demo's processes are told of it
    description: str
    _stack: ExitStack = field(default_factory=ExitStack)

    @classmethod
    def open(cls, settings: Settings, *, signing_keys: bool, directory: Path) -> DemoAuth:
        secret = settings.jwt_hs256_secret()
        if secret is not None and not signing_keys:
            issuer = settings.jwt_issuer
            return cls(
                lambda user: mint(secret, user, issuer=issuer),
                {},
                "sessions: HS256 tokens signed with S2_JWT_SECRET",
            )
        key = DevSigningKey.load_or_create(directory / "jwt-signing-key.pem")
        stack = ExitStack()
        jwks = stack.enter_context(serving(JwksStandin(keys=key.jwks()["keys"])))
        env = {"S2_JWT_JWKS_URL": jwks.url, "S2_JWT_ISSUER": DEMO_ISSUER, "S2_JWT_SECRET": ""}
        return cls(
            lambda user: key.mint(user, issuer=DEMO_ISSUER),
            env,
            f"sessions: ES256 tokens of signing key {key.kid}, its JWKS at {jwks.url}",
            stack,
        )

    def close(self) -> None:
        self._stack.close()
