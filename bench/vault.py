"""Encrypt+decrypt pairs per second of a 200-byte token through the vault, beside raw AESGCM
on the same data in the same run.

  raw AESGCM       AESGCM.encrypt + decrypt of the token's bytes with a fresh os.urandom(12)
                   nonce and the same associated data the vault uses (what any correct use
                   of AESGCM must do at least)
  vault (memory)   Vault.encrypt + Vault.decrypt with MemoryEncryptionCounter: the binary
                   ciphertext built and its header checked, the binding's associated data,
                   the count spent, the plaintext decoded into a Secret
  vault (redis)    the same with RedisEncryptionCounter on S2_REDIS_URL (a throwaway key
                   prefix, deleted afterwards), reserving counts in blocks of --reserve and
                   up (see vault.vault)
  vault (UUIDs)    vault (memory) with the company and credential ids as uuid.UUID objects
                   rather than their text: same associated data, but hashing a UUID is a
                   Python-level call, twice per encrypt and per decrypt

The vault is called as application code calls it, with the binding as keyword arguments.
Rounds alternate between the sides, in a rotating order, so that drift of the machine hits
all of them alike; each side's figure is its median round.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault import (
    EncryptionCounter,
    MemoryEncryptionCounter,
    RedisEncryptionCounter,
    Secret,
    Vault,
    associated_data,
    describe,
    new_key_entry,
    parse_keyring,
)

COMPANY = uuid.uuid4()
CREDENTIAL = uuid.uuid4()
INTEGRATION = "demo"
# The binding as text (the canonical UUID forms) and as UUID objects: both bind alike.
TEXT = (str(COMPANY), INTEGRATION, str(CREDENTIAL))
UUIDS = (COMPANY, INTEGRATION, CREDENTIAL)


def raw_pairs(aead: AESGCM, data: bytes, aad: bytes, n: int) -> float:
    urandom, encrypt, decrypt = os.urandom, aead.encrypt, aead.decrypt
    t0 = time.perf_counter()
    for _ in range(n):
        nonce = urandom(12)
        decrypt(nonce, encrypt(nonce, data, aad), aad)
    return n / (time.perf_counter() - t0)


def vault_pairs(
    vault: Vault, token: Secret, binding: tuple[uuid.UUID | str, str, uuid.UUID | str], n: int
) -> float:
    encrypt, decrypt = vault.encrypt, vault.decrypt
    company, integration, credential = binding
    t0 = time.perf_counter()
    for _ in range(n):
        decrypt(
            encrypt(token, company_id=company, integration=integration, credential_id=credential),
            company_id=company,
            integration=integration,
            credential_id=credential,
        )
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-n", type=int, default=50_000, help="pairs per round")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--reserve", type=int, default=1000, help="counts reserved per Redis INCRBY")
    args = ap.parse_args()

    token = Secret(secrets.token_urlsafe(150))
    assert len(token.reveal().encode()) == 200
    keyring = parse_keyring(new_key_entry(datetime.now(UTC)), source="bench")
    kid = keyring.primary.kid
    aead, data = keyring.primary.aead, token.reveal().encode()
    aad = associated_data(kid, COMPANY, INTEGRATION, CREDENTIAL)

    url = os.environ.get("S2_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url)
    prefix = f"s2bench:vault:{uuid.uuid4().hex}:"
    binding: dict[str, Any] = {
        "company_id": COMPANY,
        "integration": INTEGRATION,
        "credential_id": CREDENTIAL,
    }

    def vault_with(counter: EncryptionCounter) -> Vault:
        v = Vault(keyring, counter, reserve=args.reserve)
        assert v.decrypt(v.encrypt(token, **binding), **binding) == token
        return v

    memory = vault_with(MemoryEncryptionCounter())
    shared = vault_with(RedisEncryptionCounter(client, prefix=prefix))
    sample = memory.encrypt(token, **binding)
    sides: dict[str, Callable[[], float]] = {
        "raw AESGCM": lambda: raw_pairs(aead, data, aad, args.n),
        "vault (memory)": lambda: vault_pairs(memory, token, TEXT, args.n),
        "vault (redis)": lambda: vault_pairs(shared, token, TEXT, args.n),
        "vault (UUIDs)": lambda: vault_pairs(memory, token, UUIDS, args.n),
    }
    names = list(sides)
    rates: dict[str, list[float]] = {name: [] for name in names}
    try:
        for side in sides.values():  # warm-up
            side()
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                rates[name].append(sides[name]())
        reserved = shared.encryptions(kid)
    finally:
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
        client.close()

    median = {name: statistics.median(rs) for name, rs in rates.items()}
    raw = median["raw AESGCM"]
    print(f"200-byte token, {args.rounds} rounds x {args.n:,} encrypt+decrypt pairs, median round")
    for name, rate in median.items():
        spread = f"{min(rates[name]):,.0f}-{max(rates[name]):,.0f}"
        print(
            f"  {name:16s} {rate:>10,.0f} pairs/s   {1e6 / rate:6.2f} us/pair   "
            f"{rate / raw:.2f} x raw   (rounds {spread})"
        )
    header = len(sample) - 12 - 200 - 16
    print(f"  a ciphertext: {describe(sample)} ({header} header, 12 nonce, 200 text, 16 tag)")
    print(
        f"  redis counter: {reserved:,} encryptions reserved under {kid} "
        f"in blocks of {args.reserve:,} and up (at most {shared.max_reserve:,})"
    )
    print(
        f"vault/raw ratio: memory {median['vault (memory)'] / raw:.2f}, "
        f"redis {median['vault (redis)'] / raw:.2f}"
    )


if __name__ == "__main__":
    main()
