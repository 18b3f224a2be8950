"""Access tokens shaped like Supabase Auth's: for the demo, smoke tests and local work.

``mint`` signs with the legacy shared secret (HS256); a ``DevSigningKey`` signs ES256 as a
project on signing keys does, and publishes its JWKS for the ingress to verify with.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def claims(
    user_id: str, *, ttl_s: int = 900, audience: str = "authenticated", issuer: str | None = None
) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": user_id,
        "aud": audience,
        "role": "authenticated",
        "iat": now,
        "exp": now + ttl_s,
        **({"iss": issuer} if issuer else {}),
    }


def mint(
    secret: str,
    user_id: str,
    *,
    ttl_s: int = 900,
    audience: str = "authenticated",
    issuer: str | None = None,
) -> str:
    return jwt.encode(
        claims(user_id, ttl_s=ttl_s, audience=audience, issuer=issuer), secret, algorithm="HS256"
    )


@dataclass(frozen=True)
class DevSigningKey:
    """An EC P-256 signing key kept in a PEM file: what a Supabase project on signing keys
    holds, for a laptop."""

    kid: str
    private: ec.EllipticCurvePrivateKey

    @classmethod
    def load_or_create(cls, path: Path) -> DevSigningKey:
        """The key in ``path``, made (readable by its owner only) when there is none."""
        if not path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} does not hold an EC private key")
        return cls(_kid(loaded.public_key()), loaded)

    def jwks(self) -> dict[str, Any]:
        """The public key set, as ``/auth/v1/.well-known/jwks.json`` answers it."""
        public = jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.kid, "alg": "ES256", "use": "sig"}]}

    def mint(
        self,
        user_id: str,
        *,
        ttl_s: int = 900,
        audience: str = "authenticated",
        issuer: str | None = None,
    ) -> str:
        return jwt.encode(
            claims(user_id, ttl_s=ttl_s, audience=audience, issuer=issuer),
            self.private,
            algorithm="ES256",
            headers={"kid": self.kid},
        )


def _kid(public: ec.EllipticCurvePublicKey) -> str:
    """A stable id for a key: the start of its JWK thumbprint (RFC 7638)."""
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:16]
