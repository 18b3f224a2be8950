"""The vault: AES-256-GCM credentials in a binary format (``bytea``), bound to their company,
integration and credential; keyrings from the secrets store, rotation and rewrap, the per-key
encryption bound and its blocks, ``describe`` for logs, and ``Secret``, which never shows its
value.

Every exception a test provokes goes through ``expect``, which checks that neither the
planted key (bytes or base64) nor the planted plaintext appears in its text, repr, arguments
or chain.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import logging
import os
import pickle
import re
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
import redis
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import vault.vault as vault_module
from system2.procs import free_port
from vault import (
    VERSION_BYTE,
    CounterUnavailable,
    DecryptionFailed,
    EnvKeySource,
    FileKeySource,
    Key,
    KeyExhausted,
    Keyring,
    MalformedCiphertext,
    MemoryEncryptionCounter,
    RedisEncryptionCounter,
    Secret,
    UnknownKey,
    UnsupportedFormat,
    Vault,
    VaultConfigError,
    associated_data,
    describe,
    key_id_of,
    key_source_from_settings,
    kid_date,
    new_key_entry,
    parse_keyring,
)

PLAINTEXT = "demo_rt_planted-refresh-token-" + "Zq9" * 20
KEY = bytes(range(32))  # recognisable, and planted in every keyring below
KEY_B64 = base64.b64encode(KEY).decode()
KEY_B64URL = base64.urlsafe_b64encode(KEY).decode().rstrip("=")
OLD_KID = "k20250101old"
NEW_KID = "k20261129new"
PLANTED = (PLAINTEXT, KEY_B64, KEY_B64URL, KEY_B64[:24], KEY.hex(), repr(KEY)[2:-1])

COMPANY = uuid.UUID("2b0c4c5e-8f7e-4a7e-9a55-1c5b8c4f0d11")
OTHER_COMPANY = uuid.UUID("9d6a7a1e-3b7e-4c1f-8f3e-6f1a2b3c4d5e")
CREDENTIAL = uuid.UUID("7f1d2e3c-1111-4222-8333-123456789012")
OTHER_CREDENTIAL = uuid.UUID("0a0b0c0d-1111-4222-8333-123456789012")
BINDING: dict[str, Any] = {
    "company_id": COMPANY,
    "integration": "demo",
    "credential_id": CREDENTIAL,
}

RAISED: list[BaseException] = []


E = TypeVar("E", bound=BaseException)


def expect(kind: type[E], call: Callable[[], object]) -> E:
    """Run ``call``, which must raise ``kind``; check its texts hold nothing planted."""
    with pytest.raises(kind) as info:
        call()
    assert_clean(info.value)
    RAISED.append(info.value)
    return info.value


def assert_clean(exc: BaseException) -> None:
    seen: BaseException | None = exc
    while seen is not None:
        texts = [str(seen), repr(seen), *(repr(a) for a in seen.args)]
        for text in texts:
            for planted in PLANTED:
                assert planted not in text, f"{type(seen).__name__} leaks a planted value"
        seen = seen.__cause__ or seen.__context__


def b64(material: bytes) -> str:
    return base64.b64encode(material).decode()


def keyring(*kids: str) -> Keyring:
    """Keys with the given ids; the planted key is the last one."""
    entries = [f"{kid}={b64(os.urandom(32))}" for kid in kids[:-1]]
    entries.append(f"{kids[-1]}={KEY_B64}")
    return parse_keyring(", ".join(entries), source="test")


@pytest.fixture
def vault() -> Vault:
    return Vault(keyring(NEW_KID), MemoryEncryptionCounter())


def split(ciphertext: bytes) -> tuple[int, str, bytes, bytes]:
    """(version byte, key id, nonce, AES-GCM ciphertext || tag), read by the documented layout."""
    n = ciphertext[1]
    kid, rest = ciphertext[2 : 2 + n], ciphertext[2 + n :]
    return ciphertext[0], kid.decode("ascii"), rest[:12], rest[12:]


def join(version: int, kid: str | bytes, nonce: bytes, body: bytes) -> bytes:
    kid_bytes = kid.encode() if isinstance(kid, str) else kid
    return bytes((version, len(kid_bytes))) + kid_bytes + nonce + body


def flip(data: bytes, bit: int) -> bytes:
    tampered = bytearray(data)
    tampered[bit // 8] ^= 1 << (bit % 8)
    return bytes(tampered)


# -- round trip and format -----------------------------------------------------------------


def test_round_trip_and_format(vault: Vault) -> None:
    ciphertext = vault.encrypt(Secret(PLAINTEXT), **BINDING)
    assert type(ciphertext) is bytes
    assert ciphertext[0] == VERSION_BYTE == 0x01
    assert ciphertext[1] == len(NEW_KID)
    assert ciphertext[2 : 2 + len(NEW_KID)] == NEW_KID.encode("ascii")
    assert len(ciphertext) == 2 + len(NEW_KID) + 12 + len(PLAINTEXT.encode()) + 16
    assert PLAINTEXT.encode() not in ciphertext
    assert vault.decrypt(ciphertext, **BINDING).reveal() == PLAINTEXT
    assert key_id_of(ciphertext) == NEW_KID
    assert describe(ciphertext) == f"s2v1:{NEW_KID}:{len(ciphertext)} bytes"


def test_the_ciphertext_is_aes_gcm_under_the_documented_associated_data(vault: Vault) -> None:
    """Opened with nothing but AESGCM, the key and the layout and AAD the docs give."""
    ciphertext = vault.encrypt(Secret(PLAINTEXT), **BINDING)
    _, kid, nonce, body = split(ciphertext)
    aad = ciphertext[: 2 + len(kid)] + b"".join(
        len(field).to_bytes(2, "big") + field
        for field in (str(COMPANY).encode(), b"demo", str(CREDENTIAL).encode())
    )
    assert aad == associated_data(NEW_KID, **BINDING)
    assert AESGCM(KEY).decrypt(nonce, body, aad) == PLAINTEXT.encode()


@pytest.mark.parametrize("plaintext", ["", "x", "é✓ 🔑", "lone \ud800 surrogate", "a" * 5000])
def test_round_trip_of_any_text(vault: Vault, plaintext: str) -> None:
    ciphertext = vault.encrypt(Secret(plaintext), **BINDING)
    assert vault.decrypt(ciphertext, **BINDING).reveal() == plaintext


def test_uuid_and_its_text_bind_alike(vault: Vault) -> None:
    ciphertext = vault.encrypt(
        Secret(PLAINTEXT), company_id=str(COMPANY), integration="demo", credential_id=CREDENTIAL
    )
    assert vault.decrypt(ciphertext, **BINDING).reveal() == PLAINTEXT


def test_bytes_likes_open_too(vault: Vault, admin_conn: psycopg.Connection[Any]) -> None:
    """What a ``bytea`` column gives back opens, whichever way the driver hands it over."""
    ciphertext = vault.encrypt(Secret(PLAINTEXT), **BINDING)
    for binary in (False, True):
        with admin_conn.cursor(binary=binary) as cur:
            cur.execute("SELECT %b::bytea", (ciphertext,))
            row = cur.fetchone()
        assert row is not None and row[0] == ciphertext
        assert vault.decrypt(row[0], **BINDING).reveal() == PLAINTEXT
    for like in (bytearray(ciphertext), memoryview(ciphertext)):
        assert vault.decrypt(like, **BINDING).reveal() == PLAINTEXT  # type: ignore[arg-type]
        assert key_id_of(like) == NEW_KID  # type: ignore[arg-type]
        assert describe(like) == describe(ciphertext)  # type: ignore[arg-type]


def test_each_encryption_takes_a_fresh_nonce_from_urandom(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[bytes] = []

    def urandom(n: int) -> bytes:
        assert n == 12
        drawn.append(os.urandom(n))
        return drawn[-1]

    assert vault_module._urandom is os.urandom
    monkeypatch.setattr(vault_module, "_urandom", urandom)
    ciphertexts = [vault.encrypt(Secret(PLAINTEXT), **BINDING) for _ in range(3)]
    assert [split(c)[2] for c in ciphertexts] == drawn and len(set(drawn)) == 3


def test_nonces_are_unique(vault: Vault) -> None:
    secret = Secret(PLAINTEXT)
    nonces = {split(vault.encrypt(secret, **BINDING))[2] for _ in range(10_000)}
    assert len(nonces) == 10_000


def test_encrypt_takes_only_a_secret(vault: Vault) -> None:
    expect(TypeError, lambda: vault.encrypt(PLAINTEXT, **BINDING))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "field, value, kind",
    [
        ("company_id", "", ValueError),
        ("integration", "", ValueError),
        ("credential_id", "", ValueError),
        ("credential_id", "x" * 65536, ValueError),
        ("credential_id", "é" * 32768, ValueError),  # 65536 bytes of UTF-8
        ("company_id", 7, TypeError),
        ("credential_id", COMPANY.bytes, TypeError),
        ("integration", None, TypeError),
    ],
)
def test_binding_fields_must_be_text(field: str, value: object, kind: type[Exception]) -> None:
    counter = MemoryEncryptionCounter()
    v = Vault(keyring(NEW_KID), counter, reserve=1, max_reserve=1)
    ciphertext = v.encrypt(Secret(PLAINTEXT), **BINDING)
    expect(kind, lambda: v.encrypt(Secret(PLAINTEXT), **{**BINDING, field: value}))
    expect(kind, lambda: v.decrypt(ciphertext, **{**BINDING, field: value}))
    assert counter.get(NEW_KID) == 1  # a refused binding spends nothing


def test_binding_fields_may_be_long_and_hold_any_character(vault: Vault) -> None:
    odd = {"company_id": "x" * 65535, "integration": "é" * 21845, "credential_id": "a|b\x00\ud800"}
    ciphertext = vault.encrypt(Secret(PLAINTEXT), **odd)
    assert vault.decrypt(ciphertext, **odd).reveal() == PLAINTEXT


def test_associated_data_encoding() -> None:
    assert associated_data("k1", COMPANY, "demo", "cred-1") == (
        b"\x01\x02k1" + b"\x00\x24" + str(COMPANY).encode() + b"\x00\x04demo" + b"\x00\x06cred-1"
    )
    assert associated_data("k1", COMPANY, "dé", "c") == (
        b"\x01\x02k1\x00\x24" + str(COMPANY).encode() + b"\x00\x03d\xc3\xa9\x00\x01c"
    )
    for bad in ("", "k 1", "k" * 33, "ké"):
        expect(ValueError, partial(associated_data, bad, COMPANY, "demo", "c"))


def test_associated_data_is_unambiguous() -> None:
    """Bindings that a separator or a plain concatenation would confuse all differ."""
    fields = ["a", "b", "ab", "a|b", "b|c", "|", "a\x00", "\x00\x01a", "\x00\x02ab", "é", "\ud800"]
    bindings = {
        (kid, c, i, cr)
        for kid in ("k1", "k1a", "k")
        for c, i, cr in itertools.product(fields, repeat=3)
    }
    aads = {associated_data(*b) for b in bindings}
    assert len(aads) == len(bindings)


# -- binding -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "moved",
    [
        {"company_id": OTHER_COMPANY},
        {"integration": "github"},
        {"credential_id": OTHER_CREDENTIAL},
        {"company_id": OTHER_COMPANY, "credential_id": OTHER_CREDENTIAL},
        {"company_id": CREDENTIAL, "credential_id": COMPANY},  # swapped
        {"company_id": str(COMPANY).upper()},  # not the canonical text of the UUID
    ],
)
def test_a_ciphertext_moved_to_another_row_fails(vault: Vault, moved: dict[str, Any]) -> None:
    ciphertext = vault.encrypt(Secret(PLAINTEXT), **BINDING)
    err = expect(DecryptionFailed, lambda: vault.decrypt(ciphertext, **{**BINDING, **moved}))
    assert type(err) is DecryptionFailed
    assert "ciphertext or its binding is wrong" in str(err)
    assert err.__cause__ is None and err.__context__ is None


def test_fields_cannot_trade_characters(vault: Vault) -> None:
    """With '|' as a separator these two would share associated data; with lengths they don't."""
    first = {"company_id": "a|b", "integration": "c", "credential_id": "d"}
    second = {"company_id": "a", "integration": "b|c", "credential_id": "d"}
    ciphertext = vault.encrypt(Secret(PLAINTEXT), **first)
    assert vault.decrypt(ciphertext, **first).reveal() == PLAINTEXT
    expect(DecryptionFailed, lambda: vault.decrypt(ciphertext, **second))


def test_a_ciphertext_relabelled_with_another_key_id_fails() -> None:
    v = Vault(keyring(NEW_KID, OLD_KID), MemoryEncryptionCounter())
    version, _, nonce, body = split(v.encrypt(Secret(PLAINTEXT), **BINDING))
    relabelled = join(version, OLD_KID, nonce, body)
    err = expect(DecryptionFailed, lambda: v.decrypt(relabelled, **BINDING))
    assert type(err) is DecryptionFailed


def test_the_key_id_is_bound_even_under_the_same_key() -> None:
    """Two ids for one key (a keyring built by hand): only the associated data tells them
    apart, and it does."""
    v = Vault(Keyring([Key(NEW_KID, KEY), Key(OLD_KID, KEY)]), MemoryEncryptionCounter())
    version, _, nonce, body = split(v.encrypt(Secret(PLAINTEXT), **BINDING))
    err = expect(
        DecryptionFailed, lambda: v.decrypt(join(version, OLD_KID, nonce, body), **BINDING)
    )
    assert type(err) is DecryptionFailed and err.kid == OLD_KID


def test_another_key_under_the_same_id_fails(vault: Vault) -> None:
    ciphertext = vault.encrypt(Secret(PLAINTEXT), **BINDING)
    impostor = Vault(Keyring([Key(NEW_KID, os.urandom(32))]), MemoryEncryptionCounter())
    err = expect(DecryptionFailed, lambda: impostor.decrypt(ciphertext, **BINDING))
    assert type(err) is DecryptionFailed


# -- tampering -----------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 199, 200])
def test_every_bit_flip_fails(vault: Vault, length: int) -> None:
    """Every bit of every byte, header and body: always a ``DecryptionFailed``, never a
    crash, and the precise kind that the flipped region calls for."""
    plaintext = PLAINTEXT[:length].ljust(length, "x")
    ciphertext = vault.encrypt(Secret(plaintext), **BINDING)
    kid_end = 2 + len(NEW_KID)
    regions = {"version": range(1), "kid length": range(1, 2), "kid": range(2, kid_end)}
    kinds: dict[str, set[type[DecryptionFailed]]] = {name: set() for name in regions}
    kinds["body"] = set()
    for bit in range(len(ciphertext) * 8):
        tampered = flip(ciphertext, bit)
        err = expect(DecryptionFailed, partial(vault.decrypt, tampered, **BINDING))
        where = next((name for name, span in regions.items() if bit // 8 in span), "body")
        kinds[where].add(type(err))
        if where != "body":  # a body is only opened when it is moved to another key
            expect(DecryptionFailed, partial(vault.rewrap, tampered, **BINDING))
        summary = describe(tampered)
        assert re.fullmatch(r"[ -~]+", summary) and str(len(tampered)) in summary
    assert UnsupportedFormat in kinds["version"]  # 0x00, 0x03, 0x05, 0x09, 0x11
    assert kinds["version"] <= {UnsupportedFormat, MalformedCiphertext}  # 0x21, 0x41, 0x81
    assert MalformedCiphertext in kinds["kid length"]
    assert kinds["kid length"] <= {MalformedCiphertext, UnknownKey}
    assert UnknownKey in kinds["kid"] and kinds["kid"] <= {UnknownKey, MalformedCiphertext}
    assert kinds["body"] == {DecryptionFailed}  # a well-formed ciphertext that does not open


def test_truncated_extended_and_spliced_ciphertexts_fail(vault: Vault) -> None:
    ciphertext = vault.encrypt(Secret(PLAINTEXT), **BINDING)
    other = vault.encrypt(Secret(PLAINTEXT), **BINDING)
    minimum = 2 + len(NEW_KID) + 12 + 16
    for n in range(len(ciphertext)):
        err = expect(DecryptionFailed, partial(vault.decrypt, ciphertext[:n], **BINDING))
        if n < minimum:
            assert type(err) is MalformedCiphertext
        else:
            assert type(err) is DecryptionFailed
    for n in range(1, len(ciphertext)):
        spliced = ciphertext[:n] + other[n:]  # two valid ciphertexts, one header
        if spliced not in (ciphertext, other):
            expect(DecryptionFailed, partial(vault.decrypt, spliced, **BINDING))
    for extended in (ciphertext + b"\x00", ciphertext + ciphertext, b"\x01" + ciphertext):
        expect(DecryptionFailed, partial(vault.decrypt, extended, **BINDING))
    expect(DecryptionFailed, partial(vault.decrypt, ciphertext[:40] + ciphertext[41:], **BINDING))


def test_headers_and_shapes(vault: Vault) -> None:
    ciphertext = vault.encrypt(Secret(PLAINTEXT), **BINDING)
    _, kid, nonce, body = split(ciphertext)
    for version in (0x00, 0x02, 0x11, 0x1F):
        err = expect(
            UnsupportedFormat, partial(vault.decrypt, join(version, kid, nonce, body), **BINDING)
        )
        assert err.version == f"0x{version:02x}"
        assert str(err) == (
            f"unsupported vault ciphertext format 0x{version:02x}; "
            "this code reads s2v1 (version byte 0x01) only"
        )
    unknown = expect(
        UnknownKey, lambda: vault.decrypt(join(1, "k20240101gone", nonce, body), **BINDING)
    )
    assert str(unknown) == "the keyring has no key k20240101gone: was it retired too early?"
    header_len = 2 + len(kid)
    malformed = [
        join(0x20, kid, nonce, body),  # no version byte: data that is no ciphertext
        join(0xFF, kid, nonce, body),
        b"",
        b"\x01",
        bytes((1, 0)) + nonce + body,  # an empty key id
        bytes((1, 33)) + b"k" * 33 + nonce + body,  # too long a key id
        bytes((1, 255)) + ciphertext[2:],  # longer than the whole
        join(1, b"k!", nonce, body),
        join(1, b"k\xff", nonce, body),
        join(1, b"k\n", nonce, body),
        join(1, kid, nonce, body[:15]),  # shorter than a tag
        ciphertext[:header_len] + nonce[:8],
    ]
    for value in malformed:
        expect(MalformedCiphertext, partial(vault.decrypt, value, **BINDING))
        expect(MalformedCiphertext, partial(key_id_of, value))
        assert describe(value) == f"malformed vault ciphertext: {len(value)} bytes"
    # A key id of this keyring named with the wrong length is another (unknown) id.
    expect(UnknownKey, partial(vault.decrypt, bytes((1, 4)) + ciphertext[2:], **BINDING))


def test_what_is_not_a_ciphertext_is_refused_without_being_echoed(vault: Vault) -> None:
    ciphertext = vault.encrypt(Secret(PLAINTEXT), **BINDING)
    text = f"s2v1.{NEW_KID}.{base64.urlsafe_b64encode(ciphertext).decode()}"  # the old format
    err = expect(UnsupportedFormat, partial(vault.decrypt, text.encode(), **BINDING))
    assert err.version == "text s2v1.<kid>.<base64url>"
    for value in (text, PLAINTEXT, "", None, 7, [1, 12], {1: 2}, Secret(PLAINTEXT)):
        bad = expect(MalformedCiphertext, partial(vault.decrypt, value, **BINDING))  # type: ignore[arg-type]
        assert (
            str(bad)
            == f"not a well-formed vault ciphertext: expected bytes, got {type(value).__name__}"
        )
        expect(MalformedCiphertext, partial(vault.rewrap, value, **BINDING))  # type: ignore[arg-type]
        expect(MalformedCiphertext, partial(key_id_of, value))  # type: ignore[arg-type]
        assert describe(value) == f"not a vault ciphertext: {type(value).__name__}"  # type: ignore[arg-type]
    planted = PLAINTEXT.encode()  # a plaintext where a ciphertext belongs: not even its 'd'
    bad = expect(MalformedCiphertext, partial(vault.decrypt, planted, **BINDING))
    assert str(bad) == (
        "not a well-formed vault ciphertext: it does not start with a format version byte"
    )
    expect(MalformedCiphertext, partial(key_id_of, planted))
    assert describe(planted) == f"malformed vault ciphertext: {len(planted)} bytes"
    assert describe(text.encode()) == (
        f"unsupported vault ciphertext format text s2v1.<kid>.<base64url>: {len(text)} bytes"
    )


def test_describe_shows_no_byte_of_the_body(vault: Vault) -> None:
    for plaintext in ("", PLAINTEXT, "x" * 2000):
        ciphertext = vault.encrypt(Secret(plaintext), **BINDING)
        _, _, nonce, body = split(ciphertext)
        summary = describe(ciphertext)
        assert summary == f"s2v1:{NEW_KID}:{len(ciphertext)} bytes"
        shown = summary.encode()
        hidden = nonce + body
        for encoded in (
            hidden,
            hidden.hex().encode(),
            base64.b64encode(hidden),
            base64.urlsafe_b64encode(hidden),
            repr(hidden).encode(),
        ):  # no 8-byte run of the nonce, ciphertext or tag, in any encoding an eye would see
            assert not any(encoded[i : i + 8] in shown for i in range(len(encoded) - 7))


# -- keyrings ------------------------------------------------------------------------------


def test_keyring_from_env_value() -> None:
    other = os.urandom(32)
    value = f"  {NEW_KID} = {KEY_B64} ,{OLD_KID}={base64.urlsafe_b64encode(other).decode()},  "
    ring = EnvKeySource(value).load()
    assert ring.kids == (NEW_KID, OLD_KID)
    assert ring.primary.kid == NEW_KID
    assert OLD_KID in ring and "k1" not in ring
    assert len(ring) == 2
    assert repr(ring) == f"Keyring(primary={NEW_KID!r}, kids=({NEW_KID!r}, {OLD_KID!r}))"
    assert repr(ring.primary) == f"Key({NEW_KID!r})"
    assert repr(EnvKeySource(value)) == "EnvKeySource(S2_VAULT_KEYS)"


def test_keyring_from_file(tmp_path: Path) -> None:
    path = tmp_path / "vault-keys"
    path.write_text(
        "# System2 vault keys: the first is the primary\n"
        f"{NEW_KID}={KEY_B64URL}   # made 2026-11-29, unpadded urlsafe\n"
        "\n"
        f"   k3={b64(os.urandom(32))}, k4={b64(os.urandom(32)).rstrip('=')}\n"
        f"{OLD_KID}={b64(os.urandom(32))}  # to retire once rewrapped\n"
    )
    ring = FileKeySource(path).load()
    assert ring.kids == (NEW_KID, "k3", "k4", OLD_KID)
    v = Vault(ring, MemoryEncryptionCounter())
    assert key_id_of(v.encrypt(Secret(PLAINTEXT), **BINDING)) == NEW_KID


def test_keys_from_env_and_file_are_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"{NEW_KID}={KEY_B64}\n")
    from_env = Vault(EnvKeySource(f"{NEW_KID}={KEY_B64URL}").load(), MemoryEncryptionCounter())
    from_file = Vault(FileKeySource(path).load(), MemoryEncryptionCounter())
    ciphertext = from_env.encrypt(Secret(PLAINTEXT), **BINDING)
    assert from_file.decrypt(ciphertext, **BINDING).reveal() == PLAINTEXT


OTHER_KEY = bytes(range(100, 132))  # a valid key that is not KEY (fixed: xdist compares test ids)


@pytest.mark.parametrize(
    "entries, names",
    [
        (f"{KEY_B64}", "entry 1"),  # the KID= forgotten
        (f"k1={b64(OTHER_KEY)},{KEY_B64}", "entry 2"),
        (f"{KEY_B64}={KEY_B64}", "entry 1"),  # a key where the id belongs
        (f"bad kid={KEY_B64}", "entry 1"),
        (f"{'k' * 33}={KEY_B64}", "entry 1"),
        (f"k1={KEY_B64[:22]}", "key k1 is 16 bytes"),
        (f"k1={KEY_B64URL}AAAA", "key k1 is 35 bytes"),
        (f"k1={KEY_B64[:-2]}!!", "key k1 is not valid base64"),
        (f"k1={KEY_B64[:10]} {KEY_B64[10:]}", "key k1 is not valid base64"),
        (f"k1={KEY_B64[:-1]}é", "key k1 is not valid base64"),
        (f"k1={b64(OTHER_KEY)},k1={KEY_B64}", "key id k1 appears twice"),
        (f"k1={KEY_B64},k2={KEY_B64URL}", "keys k1 and k2 are the same key"),
        ("", "no keys"),
        ("# only a comment\n , ,\n", "no keys"),
    ],
)
def test_bad_keyrings_are_refused_without_key_material(entries: str, names: str) -> None:
    err = expect(VaultConfigError, lambda: parse_keyring(entries, source="S2_VAULT_KEYS"))
    assert names in str(err)
    assert str(err).startswith("S2_VAULT_KEYS: ")
    for chunk in re.findall(r"[A-Za-z0-9+/_-]{12,}", entries):
        assert chunk not in str(err)


def test_key_and_keyring_invariants() -> None:
    expect(VaultConfigError, lambda: Key("k1", KEY[:16]))
    expect(VaultConfigError, lambda: Key("k 1", KEY))
    expect(VaultConfigError, lambda: Keyring([]))
    expect(VaultConfigError, lambda: Keyring([Key("k1", KEY), Key("k1", os.urandom(32))]))
    ring = Keyring([Key("k1", KEY)])
    expect(UnknownKey, lambda: ring.get("k2"))
    expect(TypeError, lambda: pickle.dumps(ring))
    expect(TypeError, lambda: pickle.dumps(ring.primary))


def test_key_source_from_settings(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"{NEW_KID}={KEY_B64}\n")
    assert isinstance(key_source_from_settings(f"{NEW_KID}={KEY_B64}", None), EnvKeySource)
    assert isinstance(key_source_from_settings("", str(path)), FileKeySource)
    assert key_source_from_settings(None, str(path)).load().kids == (NEW_KID,)
    err = expect(VaultConfigError, lambda: key_source_from_settings(None, None))
    assert "S2_VAULT_KEYS" in str(err) and "new-key" in str(err)
    expect(VaultConfigError, lambda: key_source_from_settings("  ", ""))
    err = expect(VaultConfigError, lambda: key_source_from_settings(f"k1={KEY_B64}", str(path)))
    assert "not both" in str(err)
    missing = FileKeySource(tmp_path / "nope")
    err = expect(VaultConfigError, missing.load)
    assert "No such file" in str(err) and "nope" in str(err)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe" + KEY)
    expect(VaultConfigError, lambda: FileKeySource(binary).load())


def test_key_id_dates() -> None:
    assert kid_date("k20261129") == date(2026, 11, 29)
    assert kid_date("k20261129a1b2c3d4") == date(2026, 11, 29)
    assert kid_date("k20261129-rotated") == date(2026, 11, 29)
    assert kid_date("k20261399") is None
    assert kid_date("primary") is None
    assert kid_date("k2026112") is None
    assert kid_date("K20261129") is None
    now = datetime(2026, 12, 9, 23, 30, tzinfo=UTC)
    assert Key("k20261129", KEY).age_days(now) == 10
    assert Key("legacy", KEY).age_days(now) is None


def test_new_key_entry() -> None:
    now = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    entries = {new_key_entry(now) for _ in range(20)}
    assert len(entries) == 20
    for entry in entries:
        assert re.fullmatch(r"k20261129[0-9a-f]{8}=[A-Za-z0-9+/]{43}=", entry)
    ring = parse_keyring(",".join(entries), source="new-key")
    assert all(key.created == date(2026, 11, 29) for key in ring)
    assert ring.primary.age_days(datetime(2027, 2, 27, tzinfo=UTC)) == 90


# -- rotation ------------------------------------------------------------------------------


def test_rotation_and_rewrap() -> None:
    old_material = b64(os.urandom(32))
    before = Vault(
        parse_keyring(f"{OLD_KID}={old_material}", source="t"), MemoryEncryptionCounter()
    )
    stored = before.encrypt(Secret(PLAINTEXT), **BINDING)
    assert key_id_of(stored) == OLD_KID

    ring = parse_keyring(f"{NEW_KID}={KEY_B64},{OLD_KID}={old_material}", source="t")
    after = Vault(ring, MemoryEncryptionCounter())
    assert after.decrypt(stored, **BINDING).reveal() == PLAINTEXT  # no downtime

    rewrapped = after.rewrap(stored, **BINDING)
    assert type(rewrapped) is bytes
    assert key_id_of(rewrapped) == NEW_KID
    assert describe(rewrapped) == f"s2v1:{NEW_KID}:{len(rewrapped)} bytes"
    assert after.decrypt(rewrapped, **BINDING).reveal() == PLAINTEXT
    assert after.rewrap(rewrapped, **BINDING) is rewrapped  # running it twice is a no-op
    assert after.rewrap(bytearray(rewrapped), **BINDING) == rewrapped  # type: ignore[arg-type]
    from_view = after.rewrap(memoryview(stored), **BINDING)  # type: ignore[arg-type]
    assert key_id_of(from_view) == NEW_KID and from_view != rewrapped  # a fresh nonce
    expect(
        DecryptionFailed, lambda: after.rewrap(stored, **{**BINDING, "company_id": OTHER_COMPANY})
    )
    moved = after.rewrap(stored, **BINDING)
    expect(
        DecryptionFailed,
        lambda: after.decrypt(moved, **{**BINDING, "credential_id": OTHER_CREDENTIAL}),
    )

    retired = Vault(parse_keyring(f"{NEW_KID}={KEY_B64}", source="t"), MemoryEncryptionCounter())
    assert retired.decrypt(rewrapped, **BINDING).reveal() == PLAINTEXT
    err = expect(UnknownKey, lambda: retired.decrypt(stored, **BINDING))
    assert err.kid == OLD_KID
    assert "was it retired too early?" in str(err)


# -- the encryption bound ------------------------------------------------------------------


@pytest.fixture
def counter(rds: redis.Redis) -> RedisEncryptionCounter:
    return RedisEncryptionCounter(rds, prefix=f"s2test:vault:{uuid.uuid4().hex}:")


def test_the_bound_is_shared_by_two_processes(counter: RedisEncryptionCounter) -> None:
    ring = keyring(NEW_KID)
    a = Vault(ring, counter, max_encryptions_per_key=5, reserve=2)
    b = Vault(keyring(NEW_KID), counter, max_encryptions_per_key=5, reserve=2)
    done: list[bytes] = []
    refused = 0
    for v in itertools.islice(itertools.cycle([a, b]), 20):
        try:
            done.append(v.encrypt(Secret(PLAINTEXT), **BINDING))
        except KeyExhausted as e:
            assert_clean(e)
            assert str(e) == (
                f"key {NEW_KID} has reached its encryption bound; "
                "rotate: system2 vault new-key, then rewrap"
            )
            assert e.kid == NEW_KID
            refused += 1
    assert len(done) == 5 and refused == 15
    assert counter.get(NEW_KID) >= 5
    # Decrypting and rewrapping onto a fresh primary still work.
    assert a.decrypt(done[0], **BINDING).reveal() == PLAINTEXT
    rotated = Vault(keyring("k20261201", NEW_KID), counter, max_encryptions_per_key=5)
    assert key_id_of(rotated.rewrap(done[0], **BINDING)) == "k20261201"
    # A rewrap onto an exhausted primary is refused like any other encryption.
    old = Vault(keyring(OLD_KID), MemoryEncryptionCounter()).encrypt(Secret(PLAINTEXT), **BINDING)
    ring = parse_keyring(f"{NEW_KID}={b64(os.urandom(32))},{OLD_KID}={KEY_B64}", source="t")
    stuck = Vault(ring, counter, max_encryptions_per_key=5)
    expect(KeyExhausted, lambda: stuck.rewrap(old, **BINDING))


def test_counts_are_reserved_in_blocks(counter: RedisEncryptionCounter) -> None:
    v = Vault(keyring(NEW_KID), counter, max_reserve=1000)
    v.encrypt(Secret(PLAINTEXT), **BINDING)
    assert counter.get(NEW_KID) == 1000 == v.encryptions(NEW_KID)
    for _ in range(999):
        v.encrypt(Secret(PLAINTEXT), **BINDING)
    assert counter.get(NEW_KID) == 1000
    v.encrypt(Secret(PLAINTEXT), **BINDING)
    assert counter.get(NEW_KID) == 2000
    assert counter.get("k-unused") == 0


def test_blocks_grow_while_spent_fast_and_shrink_when_slow() -> None:
    now = [0.0]
    counter = MemoryEncryptionCounter()
    v = Vault(keyring(NEW_KID), counter, reserve=10, max_reserve=40, clock=lambda: now[0])
    assert v.max_reserve == 40 and Vault(keyring(NEW_KID), counter).max_reserve == 64_000
    secret = Secret(PLAINTEXT)
    steps = [  # (clock at the next reservation, the count after it)
        (0.0, 10),  # the first block is ``reserve``
        (0.5, 30),  # spent within a second: twice as big
        (0.9, 70),
        (1.0, 110),  # ``max_reserve``
        (5.0, 130),  # lasted 4 s: half
        (10.0, 140),
        (20.0, 150),  # never below ``reserve``
    ]
    spent = 0
    for at, total in steps:
        now[0] = at
        v.encrypt(secret, **BINDING)
        spent += 1
        assert counter.get(NEW_KID) == total
        while spent < total:  # spend the rest of the block without reserving
            v.encrypt(secret, **BINDING)
            spent += 1
        assert counter.get(NEW_KID) == total


def test_the_bound_holds_across_threads() -> None:
    v = Vault(keyring(NEW_KID), MemoryEncryptionCounter(), max_encryptions_per_key=500, reserve=7)
    done: list[bytes] = []
    refused: list[KeyExhausted] = []

    def work() -> None:
        for _ in range(100):
            try:
                done.append(v.encrypt(Secret(PLAINTEXT), **BINDING))
            except KeyExhausted as e:
                refused.append(e)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == 500 and len(refused) == 300


def test_a_forked_child_reserves_its_own_block(counter: RedisEncryptionCounter) -> None:
    v = Vault(keyring(NEW_KID), counter, reserve=10)
    v.encrypt(Secret(PLAINTEXT), **BINDING)
    assert counter.get(NEW_KID) == 10
    pid = os.fork()
    if pid == 0:  # the child
        try:
            v.encrypt(Secret(PLAINTEXT), **BINDING)
            os._exit(0 if counter.get(NEW_KID) == 20 else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    v.encrypt(Secret(PLAINTEXT), **BINDING)  # the parent's block is still its own
    assert counter.get(NEW_KID) == 20


def test_no_counter_no_encryption() -> None:
    client = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    v = Vault(keyring(NEW_KID), RedisEncryptionCounter(client))
    expect(CounterUnavailable, lambda: v.encrypt(Secret(PLAINTEXT), **BINDING))
    expect(CounterUnavailable, lambda: v.encryptions(NEW_KID))
    client.close()


def test_bad_bounds_are_refused() -> None:
    expect(ValueError, lambda: Vault(keyring(NEW_KID), MemoryEncryptionCounter(), reserve=0))
    expect(
        ValueError,
        lambda: Vault(keyring(NEW_KID), MemoryEncryptionCounter(), reserve=10, max_reserve=9),
    )
    expect(
        ValueError,
        lambda: Vault(keyring(NEW_KID), MemoryEncryptionCounter(), max_encryptions_per_key=0),
    )


# -- Secret --------------------------------------------------------------------------------


def test_secret_never_shows_its_value(caplog: pytest.LogCaptureFixture) -> None:
    s = Secret(PLAINTEXT)
    shown = [str(s), repr(s), f"{s}", f"{s!r}", f"{s!s}", f"{s:>80}", "%s %r" % (s, s)]  # noqa: UP031
    shown += [str([s]), repr({"token": s}), str((s,)), json.dumps({"t": s}, default=str)]
    assert all(PLAINTEXT not in text for text in shown)
    assert str(s) == "Secret('[redacted]')"
    log = logging.getLogger("test_vault")
    with caplog.at_level(logging.DEBUG, logger="test_vault"):
        log.info("token %s", s)
        log.info("token %r", s)
        log.warning("token %(t)s", {"t": s})
        log.error("with extra", extra={"token": s})
        try:
            raise RuntimeError(f"refresh failed for {s}")
        except RuntimeError:
            log.exception("failed")
    assert len(caplog.records) == 5
    assert PLAINTEXT not in caplog.text
    for record in caplog.records:
        assert PLAINTEXT not in record.getMessage()
    assert s.reveal() == PLAINTEXT


def test_secret_refuses_to_leave_the_process() -> None:
    s = Secret(PLAINTEXT)
    err = expect(TypeError, lambda: json.dumps({"token": s}))
    assert "not JSON serializable" in str(err)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        err = expect(TypeError, partial(pickle.dumps, s, protocol=protocol))
        assert "cannot be pickled" in str(err)
    expect(TypeError, s.__reduce__)
    expect(TypeError, s.__getstate__)
    expect(TypeError, lambda: hash(s))
    expect(TypeError, lambda: {s})
    expect(AttributeError, lambda: setattr(s, "_value", "other"))
    expect(AttributeError, lambda: delattr(s, "_value"))
    expect(AttributeError, lambda: s.__dict__)
    expect(TypeError, lambda: Secret(PLAINTEXT.encode()))  # type: ignore[arg-type]
    assert copy.copy(s) is s and copy.deepcopy([s])[0] is s


def test_secret_equality_is_by_value_and_only_between_secrets() -> None:
    assert Secret(PLAINTEXT) == Secret(PLAINTEXT)
    assert Secret(PLAINTEXT) != Secret(PLAINTEXT + "x")
    assert Secret(PLAINTEXT) != PLAINTEXT
    assert Secret("\ud800") == Secret("\ud800")


def test_decrypt_errors_chain_nothing(vault: Vault) -> None:
    ciphertext = vault.encrypt(Secret(PLAINTEXT), **BINDING)
    for moved in ({"company_id": OTHER_COMPANY}, {"integration": "x"}):
        err = expect(DecryptionFailed, partial(vault.decrypt, ciphertext, **{**BINDING, **moved}))
        assert err.__cause__ is None and err.__context__ is None and not err.__suppress_context__
        frames = []
        tb = err.__traceback__
        while tb is not None:
            frames.append(tb.tb_frame)
            tb = tb.tb_next
        for frame in frames:  # what Sentry would capture as frame locals
            for value in frame.f_locals.values():
                if isinstance(value, str | bytes) and not isinstance(value, Secret):
                    assert PLAINTEXT not in str(value)
                    assert KEY_B64 not in str(value)


def test_every_error_was_checked() -> None:
    """The tests above provoked errors of every kind, and ``expect`` vetted each."""
    if len(RAISED) < 1000:
        pytest.skip("meaningful only after the whole module has run")
    kinds = {type(e) for e in RAISED}
    assert {DecryptionFailed, UnknownKey, UnsupportedFormat, MalformedCiphertext} <= kinds
    assert {VaultConfigError, TypeError} <= kinds
    for e in RAISED:
        assert_clean(e)
