"""Encrypt+decrypt pairs per second of a 200-byte token through the vault, beside raw AESGCM
on the same data in the same run.

  raw AESGCM       AESGCM.encrypt + decrypt of the token's bytes with a fresh os.urandom(12)
                   nonce and the same associated data the vault uses (what any correct use
                   of AESGCM must do at least)
  raw + base64url  the same plus the cheapest stdlib base64url round trip of the
                   nonce||ciphertext||tag body: the floor of any text ciphertext format
  vault (memory)   Vault.encrypt + Vault.decrypt with MemoryEncryptionCounter
  vault (redis)    the same with RedisEncryptionCounter on S2_REDIS_URL (a throwaway key
                   prefix, deleted afterwards), reserving counts in blocks of --reserve

Rounds alternate between the sides so that drift of the machine hits all of them alike;
each side's figure is its best round.
"""

from __future__ import annotations

import argparse
import binascii
import os
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import redis
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault import (
    EncryptionCounter,
    MemoryEncryptionCounter,
    RedisEncryptionCounter,
    Secret,
    Vault,
    associated_data,
    new_key_entry,
    parse_keyring,
)

COMPANY = uuid.uuid4()
BINDING = {"company_id": str(COMPANY), "integration": "demo", "credential_id": str(uuid.uuid4())}


def raw_pairs(aead: AESGCM, data: bytes, aad: bytes, n: int) -> float:
    urandom, encrypt, decrypt = os.urandom, aead.encrypt, aead.decrypt
    t0 = time.perf_counter()
    for _ in range(n):
        nonce = urandom(12)
        decrypt(nonce, encrypt(nonce, data, aad), aad)
    return n / (time.perf_counter() - t0)


def raw_b64_pairs(aead: AESGCM, data: bytes, aad: bytes, n: int) -> float:
    """The cheapest stdlib base64url round trip: no checks, no header, no padding games."""
    urandom, encrypt, decrypt = os.urandom, aead.encrypt, aead.decrypt
    b2a, a2b = binascii.b2a_base64, binascii.a2b_base64
    to_url, from_url = bytes.maketrans(b"+/", b"-_"), bytes.maketrans(b"-_", b"+/")
    t0 = time.perf_counter()
    for _ in range(n):
        nonce = urandom(12)
        text = b2a(nonce + encrypt(nonce, data, aad), newline=False).translate(to_url)
        body = a2b(text.translate(from_url))
        decrypt(body[:12], body[12:], aad)
    return n / (time.perf_counter() - t0)


def vault_pairs(vault: Vault, token: Secret, n: int) -> float:
    encrypt, decrypt = vault.encrypt, vault.decrypt
    t0 = time.perf_counter()
    for _ in range(n):
        decrypt(encrypt(token, **BINDING), **BINDING)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-n", type=int, default=50_000, help="pairs per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reserve", type=int, default=1000, help="counts reserved per Redis INCRBY")
    args = ap.parse_args()

    token = Secret(secrets.token_urlsafe(150))
    assert len(token.reveal().encode()) == 200
    keyring = parse_keyring(new_key_entry(datetime.now(UTC)), source="bench")
    kid = keyring.primary.kid
    aead, data = keyring.primary.aead, token.reveal().encode()
    aad = associated_data(kid, **BINDING)

    url = os.environ.get("S2_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url)
    prefix = f"s2bench:vault:{uuid.uuid4().hex}:"

    def vault_with(counter: EncryptionCounter) -> Vault:
        v = Vault(keyring, counter, reserve=args.reserve)
        assert v.decrypt(v.encrypt(token, **BINDING), **BINDING) == token
        return v

    memory = vault_with(MemoryEncryptionCounter())
    shared = vault_with(RedisEncryptionCounter(client, prefix=prefix))
    sides: dict[str, Callable[[], float]] = {
        "raw AESGCM": lambda: raw_pairs(aead, data, aad, args.n),
        "raw + base64url": lambda: raw_b64_pairs(aead, data, aad, args.n),
        "vault (memory)": lambda: vault_pairs(memory, token, args.n),
        "vault (redis)": lambda: vault_pairs(shared, token, args.n),
    }
    best = dict.fromkeys(sides, 0.0)
    try:
        for side in sides.values():  # warm-up
            side()
        for _ in range(args.rounds):
            for name, side in sides.items():
                best[name] = max(best[name], side())
        reserved = shared.encryptions(kid)
    finally:
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
        client.close()

    raw = best["raw AESGCM"]
    print(f"200-byte token, {args.rounds} rounds x {args.n:,} encrypt+decrypt pairs, best round")
    for name, rate in best.items():
        print(
            f"  {name:16s} {rate:>10,.0f} pairs/s   {1e6 / rate:6.2f} us/pair   {rate / raw:.2f} x raw"
        )
    print(
        f"  redis counter: {reserved:,} encryptions reserved under {kid} in blocks of {args.reserve}"
    )
    print(
        f"vault/raw ratio: memory {best['vault (memory)'] / raw:.2f}, redis {best['vault (redis)'] / raw:.2f}"
    )


if __name__ == "__main__":
    main()
