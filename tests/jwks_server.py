"""Signing keys made here with ``cryptography`` as a Supabase project holds them, tokens
signed with them by PyJWT, and the stand-in of the project's JWKS endpoint publishing them
(standins/supabase_jwks.py), which counts its requests and misbehaves on demand."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from standins.supabase_jwks import JwksStandin, serving

ISSUER = "https://project-ref.supabase.co/auth/v1"
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass
class Key:
    """A signing key as Supabase holds it: the private half signs, the JWK is published."""

    kid: str
    private: PrivateKey
    alg: str

    @classmethod
    def ec(cls, kid: str, curve: ec.EllipticCurve | None = None, alg: str = "ES256") -> Key:
        return cls(kid, ec.generate_private_key(curve or ec.SECP256R1()), alg)

    @classmethod
    def rsa(cls, kid: str, bits: int = 2048) -> Key:
        return cls(kid, rsa.generate_private_key(public_exponent=65537, key_size=bits), "RS256")

    def jwk(self, **overrides: Any) -> dict[str, Any]:
        """The public JWK, as Supabase publishes it (``overrides`` change or, with None,
        drop its members)."""
        algorithm = jwt.algorithms.get_default_algorithms()[self.alg]
        public = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        published = {**public, "kid": self.kid, "alg": self.alg, "use": "sig"}
        published.update(overrides)
        return {k: v for k, v in published.items() if v is not None}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def token(
        self, user: str, *, alg: str | None = None, kid: str | None = "", **claims: Any
    ) -> str:
        """A session token for ``user`` signed with this key (``kid`` "" names this key,
        None names none); ``claims`` change or, with None, drop the standard ones."""
        headers = {} if kid is None else {"kid": kid or self.kid}
        return jwt.encode(
            session_claims(user, **claims), self.private, algorithm=alg or self.alg, headers=headers
        )


def session_claims(user: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": user,
        "aud": "authenticated",
        "role": "authenticated",
        "iss": ISSUER,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def hs256_signed_with(secret: bytes, user: str, kid: str | None = None) -> str:
    """An HS256 token keyed with ``secret`` whatever it is (PyJWT refuses a public key as an
    HMAC secret, an attacker does not): the algorithm-confusion attack."""
    header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}

    def part(value: dict[str, Any]) -> str:
        return b64(json.dumps(value, separators=(",", ":")).encode())

    signing_input = f"{part(header)}.{part(session_claims(user))}"
    return (
        f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"
    )


@contextmanager
def jwks_server() -> Iterator[JwksStandin]:
    """The stand-in on a free loopback port, in a thread of the test process."""
    with serving(JwksStandin()) as server:
        yield server


def publish(server: JwksStandin, *keys: Key) -> None:
    server.keys = [k.jwk() for k in keys]
