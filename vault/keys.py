"""Key ids, keys, keyrings, and the key sources a keyring is loaded from.

A keyring comes from a secrets store, never from the database: ``S2_VAULT_KEYS`` holds
``KID=BASE64KEY`` entries (32-byte AES-256 keys, standard or urlsafe base64, padding
optional) separated by commas, the first one primary; ``S2_VAULT_KEYS_FILE`` names a file
with the same entries, separated by commas or newlines, ``#`` starting a comment. A cloud KMS
can stand in later by implementing ``KeySource``.

Key ids are ``[A-Za-z0-9_-]{1,32}``. By convention an id is ``kYYYYMMDD[suffix]``: the UTC
date the key was made, then any id characters (``new_key_entry`` makes ``k20261129`` plus
eight hex digits). The date gives the primary's age for ``system2 vault status``; an id
without one has an unknown age.

Errors name a key id only once it is known to be a well-formed id, and otherwise the entry's
position: a malformed entry may be key material pasted in the wrong place.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import NoReturn, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault.errors import UnknownKey, VaultConfigError

KEY_BYTES = 32
KID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_DATED_KID = re.compile(r"k(\d{4})(\d{2})(\d{2})[A-Za-z0-9_-]*")
_TO_STANDARD = str.maketrans("-_", "+/")


def kid_date(kid: str) -> date | None:
    """The creation date a ``kYYYYMMDD[suffix]`` id carries, or None."""
    m = _DATED_KID.fullmatch(kid)
    if m is None:
        return None
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def new_key_entry(now: datetime) -> str:
    """One fresh ``kYYYYMMDD<8 hex>=BASE64`` entry for the secrets store."""
    day = (now.astimezone(UTC) if now.tzinfo else now).strftime("%Y%m%d")
    material = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")
    return f"k{day}{secrets.token_hex(4)}={material}"


class Key:
    """One AES-256-GCM key and its id. Its repr names the id only."""

    __slots__ = ("aead", "created", "kid")

    def __init__(self, kid: str, material: bytes) -> None:
        if not KID_RE.fullmatch(kid):
            raise VaultConfigError("a key id must match [A-Za-z0-9_-]{1,32}")
        if len(material) != KEY_BYTES:
            raise VaultConfigError(
                f"key {kid} is {len(material)} bytes; an AES-256 key is {KEY_BYTES} bytes"
            )
        self.kid = kid
        self.created = kid_date(kid)
        self.aead = AESGCM(material)

    def age_days(self, now: datetime) -> int | None:
        """Whole days since the date in the key id (UTC), or None when it has none."""
        if self.created is None:
            return None
        today = (now.astimezone(UTC) if now.tzinfo else now).date()
        return (today - self.created).days

    def __repr__(self) -> str:
        return f"Key({self.kid!r})"

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("a vault key cannot be pickled")


class Keyring:
    """The keys a vault can decrypt with; the first is the primary, which encrypts."""

    def __init__(self, keys: Sequence[Key]) -> None:
        if not keys:
            raise VaultConfigError("the keyring is empty: it needs at least a primary key")
        by_kid: dict[str, Key] = {}
        for key in keys:
            if key.kid in by_kid:
                raise VaultConfigError(f"key id {key.kid} appears twice in the keyring")
            by_kid[key.kid] = key
        self.primary = keys[0]
        self._by_kid = by_kid

    def get(self, kid: str) -> Key:
        key = self._by_kid.get(kid)
        if key is None:
            raise UnknownKey(kid if KID_RE.fullmatch(kid) else "(malformed id)")
        return key

    @property
    def kids(self) -> tuple[str, ...]:
        """Key ids, primary first."""
        return tuple(self._by_kid)

    def __contains__(self, kid: object) -> bool:
        return kid in self._by_kid

    def __iter__(self) -> Iterator[Key]:
        return iter(self._by_kid.values())

    def __len__(self) -> int:
        return len(self._by_kid)

    def __repr__(self) -> str:
        return f"Keyring(primary={self.primary.kid!r}, kids={self.kids!r})"

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("a vault keyring cannot be pickled")


def parse_keyring(text: str, *, source: str) -> Keyring:
    """A keyring from ``KID=BASE64KEY`` entries separated by commas or newlines.

    ``#`` starts a comment to the end of its line; blank entries and surrounding whitespace are
    ignored. ``source`` names where the text came from, for error messages.
    """
    entries = [
        entry.strip()
        for line in text.splitlines()
        for entry in line.split("#", 1)[0].split(",")
        if entry.strip()
    ]
    keys: list[Key] = []
    seen: dict[bytes, str] = {}
    for position, entry in enumerate(entries, 1):
        kid, sep, encoded = entry.partition("=")
        kid = kid.strip()
        if not sep:
            _bad(source, f"entry {position} is not KID=BASE64KEY")
        if not KID_RE.fullmatch(kid):
            _bad(source, f"entry {position} has a malformed key id (want [A-Za-z0-9_-]{{1,32}})")
        material = _decode_key(encoded.strip())
        if material is None:
            _bad(source, f"key {kid} is not valid base64")
        if len(material) != KEY_BYTES:
            _bad(source, f"key {kid} is {len(material)} bytes; an AES-256 key is {KEY_BYTES}")
        if kid in (k.kid for k in keys):
            _bad(source, f"key id {kid} appears twice")
        if material in seen:
            _bad(source, f"keys {seen[material]} and {kid} are the same key")
        seen[material] = kid
        keys.append(Key(kid, material))
    if not keys:
        _bad(source, "no keys: run `system2 vault new-key` for an entry")
    return Keyring(keys)


def _bad(source: str, problem: str) -> NoReturn:
    raise VaultConfigError(f"{source}: {problem}")


def _decode_key(encoded: str) -> bytes | None:
    """Standard or urlsafe base64, padding optional; None when it is not base64 at all.

    Returns rather than raises so the caller's error carries no chained ``binascii`` error.
    """
    if not encoded.isascii():
        return None
    standard = encoded.translate(_TO_STANDARD).rstrip("=")
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except binascii.Error:
        return None


class KeySource(Protocol):
    """Where a keyring comes from: the environment, a mounted file, later a cloud KMS."""

    def load(self) -> Keyring: ...


class EnvKeySource:
    """Entries given as a string, typically the value of ``S2_VAULT_KEYS``."""

    def __init__(self, value: str, *, name: str = "S2_VAULT_KEYS") -> None:
        self._value = value
        self.name = name

    def load(self) -> Keyring:
        return parse_keyring(self._value, source=self.name)

    def __repr__(self) -> str:
        return f"EnvKeySource({self.name})"


class FileKeySource:
    """Entries in a file, typically a mounted secret named by ``S2_VAULT_KEYS_FILE``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> Keyring:
        text, problem = self._read()
        if text is None:
            raise VaultConfigError(f"cannot read the vault key file {self.path}: {problem}")
        return parse_keyring(text, source=str(self.path))

    def _read(self) -> tuple[str | None, str]:
        """The file's text, or None and why (the OS's reason only: never the content)."""
        try:
            return self.path.read_text(encoding="utf-8"), ""
        except UnicodeDecodeError:
            return None, "not UTF-8 text"
        except OSError as e:
            return None, e.strerror or type(e).__name__

    def __repr__(self) -> str:
        return f"FileKeySource({str(self.path)!r})"


def key_source_from_settings(keys: str | None, keys_file: str | None) -> KeySource:
    """The key source the settings name: exactly one of ``S2_VAULT_KEYS`` and
    ``S2_VAULT_KEYS_FILE`` (empty counts as unset)."""
    has_keys = bool(keys and keys.strip())
    has_file = bool(keys_file and keys_file.strip())
    if has_keys and has_file:
        raise VaultConfigError("set S2_VAULT_KEYS or S2_VAULT_KEYS_FILE, not both")
    if has_keys:
        assert keys is not None
        return EnvKeySource(keys)
    if has_file:
        assert keys_file is not None
        return FileKeySource(keys_file.strip())
    raise VaultConfigError(
        "no vault keys: set S2_VAULT_KEYS (KID=BASE64KEY entries, the first primary) or "
        "S2_VAULT_KEYS_FILE (a file of them); `system2 vault new-key` prints a fresh entry"
    )
