"""Supabase's signing keys: the public keys of a project's JWKS
(``/auth/v1/.well-known/jwks.json``), fetched, cached and refreshed for ``TokenVerifier``.

A token names its key by ``kid``; the key's algorithm is the JWK's own (ES256 for EC P-256,
RS256 for RSA), never the token's. The set is refetched when it is older than its TTL or when
a token names a ``kid`` it lacks — at most once per ``min_refresh_s``, so made-up kids cannot
make us hammer Supabase. Concurrent verifications wait for one shared fetch; a fetch that
fails (unreachable, slow, garbage, no usable key) keeps the last good set.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import structlog
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from ingress.errors import IngressError

log = structlog.get_logger(__name__)

JWKS_MAX_BYTES = 65_536  # Supabase publishes a handful of keys: a few KB
MIN_RSA_BITS = 2048
# kty -> (the algorithm its keys sign with, the curve an EC key must be on)
KEY_TYPES: dict[str, tuple[str, str | None]] = {"EC": ("ES256", "P-256"), "RSA": ("RS256", None)}
ALGORITHMS = frozenset(alg for alg, _ in KEY_TYPES.values())

PublicKey = EllipticCurvePublicKey | RSAPublicKey


class JwksUnavailable(IngressError):
    """No signing key set has been fetched yet (Supabase unreachable since start)."""


class JwksInvalid(IngressError):
    """The JWKS URL answered something that is not a usable key set."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str  # pinned by the key: a token claiming another algorithm is refused
    key: PublicKey


@dataclass(frozen=True)
class JwksConfig:
    url: str
    ttl_s: float = 600.0
    min_refresh_s: float = 30.0
    timeout_s: float = 5.0


class SigningKeys:
    """The project's signing keys, fetched on first use and kept fresh. Used from one event
    loop at a time (the server's); nothing is fetched in the constructor."""

    def __init__(self, config: JwksConfig, *, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self._clock = clock
        self._keys: dict[str, SigningKey] = {}
        self._fetched_at: float | None = None  # when the set in hand was fetched
        self._tried_at: float | None = None  # when a fetch last began, good or not
        self._fetch: asyncio.Task[None] | None = None

    async def get(self, kid: str) -> SigningKey | None:
        """The key ``kid`` names, refetching the set first if it is stale or lacks ``kid``
        (and a fetch is allowed now); None when the set has no such key."""
        now = self._clock()
        fresh = self._fetched_at is not None and now - self._fetched_at < self.config.ttl_s
        if not (fresh and kid in self._keys) and self._may_fetch(now):
            await self._refresh()
        if self._fetched_at is None:
            raise JwksUnavailable
        return self._keys.get(kid)

    def _may_fetch(self, now: float) -> bool:
        if self._running() is not None:
            return True  # join the fetch under way
        return self._tried_at is None or now - self._tried_at >= self.config.min_refresh_s

    def _running(self) -> asyncio.Task[None] | None:
        task = self._fetch
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            return None
        return task

    async def _refresh(self) -> None:
        task = self._running()
        if task is None:
            self._tried_at = self._clock()
            task = asyncio.get_running_loop().create_task(self._fetch_set())
            self._fetch = task
        # shielded: a caller that goes away does not cancel the fetch the others wait for
        await asyncio.shield(task)

    async def _fetch_set(self) -> None:
        try:
            body = await self._download()
            keys = parse_jwks(body)
        except (httpx.HTTPError, JwksInvalid, TimeoutError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            log.warning("jwks fetch failed; keeping the last good set", error=reason)
            return
        except Exception:  # a waiter must get the last good set, not this task's crash
            log.exception("jwks fetch crashed; keeping the last good set")
            return
        self._keys = keys
        self._fetched_at = self._clock()
        log.info("jwks fetched", kids=sorted(keys))

    async def _download(self) -> bytes:
        timeout = httpx.Timeout(self.config.timeout_s)
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            # the whole exchange is bounded, not each read: a trickle must not hold us
            async with asyncio.timeout(self.config.timeout_s):
                async with client.stream("GET", self.config.url) as response:
                    if response.status_code != 200:
                        raise JwksInvalid(f"the JWKS URL answered {response.status_code}")
                    body = b""
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > JWKS_MAX_BYTES:
                            raise JwksInvalid(f"the JWKS is larger than {JWKS_MAX_BYTES} bytes")
                    return body


def parse_jwks(body: bytes) -> dict[str, SigningKey]:
    """The usable signing keys of a JWKS document by kid. A key that is not an EC P-256 or
    RSA (2048 bits or more) verification key, or whose ``alg`` is not its type's, is left
    out; a document with no usable key is refused (more likely a fault than intended)."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise JwksInvalid("the JWKS is not JSON") from None
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise JwksInvalid("the JWKS has no 'keys' list")
    keys = {k.kid: k for k in (signing_key(e) for e in entries) if k is not None}
    if not keys:
        raise JwksInvalid("the JWKS holds no usable signing key")
    return keys


def signing_key(jwk: Any) -> SigningKey | None:
    """One JWK as a signing key, or None when it is not one we verify with."""
    alg = _algorithm(jwk)
    if alg is None:
        return None
    try:
        key = jwt.PyJWK(jwk, algorithm=alg).key
    except (jwt.PyJWTError, TypeError, ValueError):
        return None
    usable = isinstance(key, EllipticCurvePublicKey) or (
        isinstance(key, RSAPublicKey) and key.key_size >= MIN_RSA_BITS
    )  # not a private key published by mistake, nor a short RSA key
    return SigningKey(jwk["kid"], alg, key) if usable else None


def _algorithm(jwk: Any) -> str | None:
    """The algorithm a JWK's key signs with, from its type (and curve), when it is a
    verification key of a type we take and its own ``alg``, if any, agrees."""
    if not isinstance(jwk, dict):
        return None
    kid, kty, ops = jwk.get("kid"), jwk.get("kty"), jwk.get("key_ops")
    if not isinstance(kid, str) or not kid or not isinstance(kty, str) or kty not in KEY_TYPES:
        return None
    alg, curve = KEY_TYPES[kty]
    wrong = (
        jwk.get("alg", alg) != alg
        or jwk.get("use", "sig") != "sig"
        or (ops is not None and (not isinstance(ops, list) or "verify" not in ops))
        or (curve is not None and jwk.get("crv") != curve)
    )
    return None if wrong else alg
