"""The vault: AES-256-GCM credentials bound to their company, integration and credential,
keyrings from the secrets store, rotation and rewrap, the per-key encryption bound, and
``Secret``, which never shows its value.

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

import pytest
import redis

from system2.procs import free_port
from system2.redact import redact_text
from vault import (
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


def split(ciphertext: str) -> tuple[str, str, bytes]:
    version, kid, body = ciphertext.split(".")
    return version, kid, base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def join(version: str, kid: str, body: bytes) -> str:
    return f"{version}.{kid}.{base64.urlsafe_b64encode(body).decode().rstrip('=')}"


# -- round trip and format -----------------------------------------------------------------


def test_round_trip_and_format(vault: Vault) -> None:
    ciphertext = vault.encrypt(Secret(PLAINTEXT), **BINDING)
    assert re.fullmatch(rf"s2v1\.{NEW_KID}\.[A-Za-z0-9_-]+", ciphertext)
    assert PLAINTEXT not in ciphertext
    _, _, body = split(ciphertext)
    assert len(body) == 12 + len(PLAINTEXT.encode()) + 16
    assert vault.decrypt(ciphertext, **BINDING).reveal() == PLAINTEXT
    assert vault.key_id_of(ciphertext) == NEW_KID
    assert redact_text(f"stored {ciphertext}") == "stored [redacted]"


@pytest.mark.parametrize("plaintext", ["", "x", "é✓ 🔑", "lone \ud800 surrogate", "a" * 5000])
def test_round_trip_of_any_text(vault: Vault, plaintext: str) -> None:
    ciphertext = vault.encrypt(Secret(plaintext), **BINDING)
    assert vault.decrypt(ciphertext, **BINDING).reveal() == plaintext


def test_uuid_and_its_text_bind_alike(vault: Vault) -> None:
    ciphertext = vault.encrypt(
        Secret(PLAINTEXT), company_id=str(COMPANY), integration="demo", credential_id=CREDENTIAL
    )
    assert vault.decrypt(ciphertext, **BINDING).reveal() == PLAINTEXT


def test_encrypt_takes_only_a_secret(vault: Vault) -> None:
    expect(TypeError, lambda: vault.encrypt(PLAINTEXT, **BINDING))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "field, value",
    [("company_id", ""), ("integration", ""), ("credential_id", ""), ("integration", "de|mo")],
)
def test_binding_fields_must_be_unambiguous(vault: Vault, field: str, value: str) -> None:
    expect(ValueError, lambda: vault.encrypt(Secret(PLAINTEXT), **{**BINDING, field: value}))


def test_associated_data_encoding() -> None:
    assert associated_data("k1", COMPANY, "demo", "cred-1") == (
        f"s2v1|k1|{COMPANY}|demo|cred-1".encode()
    )


# -- binding -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "moved",
    [
        {"company_id": OTHER_COMPANY},
        {"integration": "github"},
        {"credential_id": OTHER_CREDENTIAL},
        {"company_id": OTHER_COMPANY, "credential_id": OTHER_CREDENTIAL},
    ],
)
def test_a_ciphertext_moved_to_another_row_fails(vault: Vault, moved: dict[str, Any]) -> None:
    ciphertext = vault.encrypt(Secret(PLAINTEXT), **BINDING)
    err = expect(DecryptionFailed, lambda: vault.decrypt(ciphertext, **{**BINDING, **moved}))
    assert type(err) is DecryptionFailed
    assert "ciphertext or its binding is wrong" in str(err)
    assert err.__cause__ is None and err.__context__ is None


def test_a_ciphertext_relabelled_with_another_key_id_fails() -> None:
    v = Vault(keyring(NEW_KID, OLD_KID), MemoryEncryptionCounter())
    version, _, body = split(v.encrypt(Secret(PLAINTEXT), **BINDING))
    err = expect(DecryptionFailed, lambda: v.decrypt(join(version, OLD_KID, body), **BINDING))
    assert type(err) is DecryptionFailed


# -- tampering -----------------------------------------------------------------------------


def flips(text: str) -> list[str]:
    """Every string that differs from ``text`` in exactly one bit of one character."""
    out = []
    for i, ch in enumerate(text):
        for bit in range(8):
            out.append(text[:i] + chr(ord(ch) ^ (1 << bit)) + text[i + 1 :])
    return out


# 200 bytes: no spare bits in the base64 text; 199 and 198: the last character has 2 and 4.
@pytest.mark.parametrize("length", [200, 199, 198])
def test_every_bit_flip_of_the_text_fails(vault: Vault, length: int) -> None:
    plaintext = PLAINTEXT[:length].ljust(length, "x")
    ciphertext = vault.encrypt(Secret(plaintext), **BINDING)
    header = len("s2v1.")
    kid_end = header + len(NEW_KID)
    kinds: dict[str, set[type[DecryptionFailed]]] = {"version": set(), "kid": set(), "body": set()}
    for i, tampered in enumerate(flips(ciphertext)):
        err = expect(DecryptionFailed, partial(vault.decrypt, tampered, **BINDING))
        where = "version" if i // 8 < header else "kid" if i // 8 <= kid_end else "body"
        kinds[where].add(type(err))
    assert kinds["version"] <= {UnsupportedFormat, MalformedCiphertext}
    assert UnsupportedFormat in kinds["version"]  # s2v1 -> s2v0, s2v3, s2v5, s2v9
    assert kinds["kid"] <= {UnknownKey, MalformedCiphertext}
    assert UnknownKey in kinds["kid"]
    assert kinds["body"] <= {DecryptionFailed, MalformedCiphertext}


@pytest.mark.parametrize("length", [200, 199])
def test_every_bit_flip_of_the_decoded_body_fails(vault: Vault, length: int) -> None:
    ciphertext = vault.encrypt(Secret(PLAINTEXT[:length].ljust(length, "x")), **BINDING)
    version, kid, body = split(ciphertext)
    for i in range(len(body) * 8):
        tampered = bytearray(body)
        tampered[i // 8] ^= 1 << (i % 8)
        text = join(version, kid, bytes(tampered))
        err = expect(DecryptionFailed, partial(vault.decrypt, text, **BINDING))
        assert type(err) is DecryptionFailed  # a well-formed ciphertext that does not open


def test_headers_and_shapes(vault: Vault) -> None:
    ciphertext = vault.encrypt(Secret(PLAINTEXT), **BINDING)
    _, kid, body = split(ciphertext)
    err = expect(UnsupportedFormat, lambda: vault.decrypt(join("s2v2", kid, body), **BINDING))
    assert "s2v2" in str(err)
    unknown = expect(
        UnknownKey, lambda: vault.decrypt(join("s2v1", "k20240101gone", body), **BINDING)
    )
    assert str(unknown) == "the keyring has no key k20240101gone: was it retired too early?"
    bad = [
        ciphertext + "=",
        ciphertext + "A",
        ciphertext + "\n",
        " " + ciphertext,
        ciphertext.replace("s2v1.", "s2v1..", 1),
        ciphertext[:40],
        join("s2v1", kid, body[:27]),
        "s2v1." + kid,
        f"s2v1.{'k' * 33}.AAAA",
        "s2v1.k!.AAAA",
        PLAINTEXT,  # a plaintext where a ciphertext belongs: never echoed
        "",
    ]
    for text in bad:
        expect(DecryptionFailed, partial(vault.decrypt, text, **BINDING))
    expect(MalformedCiphertext, lambda: vault.key_id_of(PLAINTEXT))
    expect(MalformedCiphertext, lambda: vault.decrypt(b"s2v1.x.y", **BINDING))  # type: ignore[arg-type]


def test_the_standard_alphabet_twins_are_refused(vault: Vault) -> None:
    """'+' and '/' would decode like '-' and '_' in a lenient decoder: same bytes, other text."""
    ciphertexts = (vault.encrypt(Secret(PLAINTEXT), **BINDING) for _ in range(100))
    ciphertext = next(c for c in ciphertexts if all(ch in c.split(".")[2] for ch in "-_"))
    head, body = ciphertext.rsplit(".", 1)
    for twin in (body.replace("-", "+", 1), body.replace("_", "/", 1), body + "=="):
        expect(MalformedCiphertext, partial(vault.decrypt, f"{head}.{twin}", **BINDING))


def test_nonces_are_unique(vault: Vault) -> None:
    secret = Secret(PLAINTEXT)
    nonces = {split(vault.encrypt(secret, **BINDING))[2][:12] for _ in range(10_000)}
    assert len(nonces) == 10_000


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
    assert v.key_id_of(v.encrypt(Secret(PLAINTEXT), **BINDING)) == NEW_KID


def test_keys_from_env_and_file_are_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"{NEW_KID}={KEY_B64}\n")
    from_env = Vault(EnvKeySource(f"{NEW_KID}={KEY_B64URL}").load(), MemoryEncryptionCounter())
    from_file = Vault(FileKeySource(path).load(), MemoryEncryptionCounter())
    ciphertext = from_env.encrypt(Secret(PLAINTEXT), **BINDING)
    assert from_file.decrypt(ciphertext, **BINDING).reveal() == PLAINTEXT


@pytest.mark.parametrize(
    "entries, names",
    [
        (f"{KEY_B64}", "entry 1"),  # the KID= forgotten
        (f"k1={b64(os.urandom(32))},{KEY_B64}", "entry 2"),
        (f"{KEY_B64}={KEY_B64}", "entry 1"),  # a key where the id belongs
        (f"bad kid={KEY_B64}", "entry 1"),
        (f"{'k' * 33}={KEY_B64}", "entry 1"),
        (f"k1={KEY_B64[:22]}", "key k1 is 16 bytes"),
        (f"k1={KEY_B64URL}AAAA", "key k1 is 35 bytes"),
        (f"k1={KEY_B64[:-2]}!!", "key k1 is not valid base64"),
        (f"k1={KEY_B64[:10]} {KEY_B64[10:]}", "key k1 is not valid base64"),
        (f"k1={KEY_B64[:-1]}é", "key k1 is not valid base64"),
        (f"k1={b64(os.urandom(32))},k1={KEY_B64}", "key id k1 appears twice"),
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
    assert before.key_id_of(stored) == OLD_KID

    ring = parse_keyring(f"{NEW_KID}={KEY_B64},{OLD_KID}={old_material}", source="t")
    after = Vault(ring, MemoryEncryptionCounter())
    assert after.decrypt(stored, **BINDING).reveal() == PLAINTEXT  # no downtime

    rewrapped = after.rewrap(stored, **BINDING)
    assert after.key_id_of(rewrapped) == NEW_KID
    assert after.decrypt(rewrapped, **BINDING).reveal() == PLAINTEXT
    assert after.rewrap(rewrapped, **BINDING) is rewrapped  # running it twice is a no-op
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
    done: list[str] = []
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
    assert rotated.key_id_of(rotated.rewrap(done[0], **BINDING)) == "k20261201"
    # A rewrap onto an exhausted primary is refused like any other encryption.
    old = Vault(keyring(OLD_KID), MemoryEncryptionCounter()).encrypt(Secret(PLAINTEXT), **BINDING)
    ring = parse_keyring(f"{NEW_KID}={b64(os.urandom(32))},{OLD_KID}={KEY_B64}", source="t")
    stuck = Vault(ring, counter, max_encryptions_per_key=5)
    expect(KeyExhausted, lambda: stuck.rewrap(old, **BINDING))


def test_counts_are_reserved_in_blocks(counter: RedisEncryptionCounter) -> None:
    v = Vault(keyring(NEW_KID), counter)
    v.encrypt(Secret(PLAINTEXT), **BINDING)
    assert counter.get(NEW_KID) == 1000 == v.encryptions(NEW_KID)
    for _ in range(999):
        v.encrypt(Secret(PLAINTEXT), **BINDING)
    assert counter.get(NEW_KID) == 1000
    v.encrypt(Secret(PLAINTEXT), **BINDING)
    assert counter.get(NEW_KID) == 2000
    assert counter.get("k-unused") == 0


def test_the_bound_holds_across_threads() -> None:
    v = Vault(keyring(NEW_KID), MemoryEncryptionCounter(), max_encryptions_per_key=500, reserve=7)
    done: list[str] = []
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
