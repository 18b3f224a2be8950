"""The vault: encrypt, decrypt and rewrap integration credentials with a keyring.

Encryption is always under the keyring's primary; decryption uses whichever key the
ciphertext names, so rotation needs no downtime: put a new key first in the secrets store,
restart, and old ciphertexts keep opening while ``rewrap`` moves them to the new primary.

Encryptions are counted per key through a shared ``EncryptionCounter``. Asking it once per
encryption would cost a Redis round trip each, so a vault reserves counts in blocks
(``reserve``, 1000 by default) and spends them locally. A block is a range of the key's count
that belongs to this vault alone, so the bound holds across every process; a process that
dies mid-block leaves the rest of it unspent, which only makes the bound more conservative.
A forked child drops the blocks it inherited and reserves its own.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from uuid import UUID

from vault.cipher import KeyCipher, associated_data, parse
from vault.counter import EncryptionCounter
from vault.errors import KeyExhausted, UnknownKey
from vault.keys import Keyring
from vault.secret import Secret

# Far below NIST SP 800-38D's 2**32 invocations per key with random 96-bit nonces.
DEFAULT_MAX_ENCRYPTIONS = 2**28
_AAD_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class _Block:
    """A range of a key's count reserved for this vault: spend with ``next(counts)`` while
    the result is at most ``end``. ``next`` on an ``itertools.count`` is atomic under the GIL,
    so threads spend without a lock and take it only to reserve the next block."""

    counts: Iterator[int]
    end: int


class Vault:
    """Encrypts under the keyring's primary, decrypts under any key of it, counts encryptions.

    One per process, shared by its threads.
    """

    def __init__(
        self,
        keyring: Keyring,
        counter: EncryptionCounter,
        *,
        max_encryptions_per_key: int = DEFAULT_MAX_ENCRYPTIONS,
        reserve: int = 1000,
    ) -> None:
        if max_encryptions_per_key < 1 or reserve < 1:
            raise ValueError("max_encryptions_per_key and reserve must be positive")
        self.keyring = keyring
        self.counter = counter
        self.max_encryptions_per_key = max_encryptions_per_key
        self.reserve = reserve
        self._ciphers = {key.kid: KeyCipher(key) for key in keyring}
        self._primary = self._ciphers[keyring.primary.kid]
        self._aads: dict[tuple[str, object, str, object], bytes] = {}
        self._lock = threading.Lock()
        self._blocks: dict[str, _Block] = {}
        self._exhausted: set[str] = set()
        # One hook per vault for the life of the process (vaults are long-lived, one each).
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_blocks(ref))

    def encrypt(
        self,
        plaintext: Secret,
        *,
        company_id: UUID | str,
        integration: str,
        credential_id: UUID | str,
    ) -> str:
        """Encrypt under the primary key, bound to this company, integration and credential.

        Raises ``KeyExhausted`` once the primary has reached its bound.
        """
        if not isinstance(plaintext, Secret):
            raise TypeError(f"encrypt takes a Secret, not {type(plaintext).__name__}")
        cipher = self._primary
        aad = self._aad(cipher.kid, company_id, integration, credential_id)
        self._spend(cipher.kid)
        return cipher.seal(aad, plaintext)

    def decrypt(
        self,
        ciphertext: str,
        *,
        company_id: UUID | str,
        integration: str,
        credential_id: UUID | str,
    ) -> Secret:
        """Open a ciphertext under the key it names, for the binding it was sealed with.

        Raises ``DecryptionFailed`` (or its ``MalformedCiphertext``, ``UnsupportedFormat``,
        ``UnknownKey``) when it cannot.
        """
        kid, body = parse(ciphertext)
        cipher = self._cipher(kid)
        return cipher.open(self._aad(kid, company_id, integration, credential_id), body)

    def rewrap(
        self,
        ciphertext: str,
        *,
        company_id: UUID | str,
        integration: str,
        credential_id: UUID | str,
    ) -> str:
        """The ciphertext re-encrypted under the primary; the same string when it already is.

        The plaintext never leaves the vault. Safe to repeat: a second call is a no-op.
        """
        kid, body = parse(ciphertext)
        primary = self._primary
        if kid == primary.kid:
            return ciphertext
        old = self._cipher(kid)
        secret = old.open(self._aad(kid, company_id, integration, credential_id), body)
        aad = self._aad(primary.kid, company_id, integration, credential_id)
        self._spend(primary.kid)
        return primary.seal(aad, secret)

    def key_id_of(self, ciphertext: str) -> str:
        """The key id a ciphertext names (its shape is checked; nothing is decrypted)."""
        return parse(ciphertext)[0]

    def encryptions(self, kid: str) -> int:
        """Encryptions reserved under ``kid`` by every process: an upper bound on those done."""
        return self.counter.get(kid)

    def _cipher(self, kid: str) -> KeyCipher:
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise UnknownKey(kid)  # ``parse`` has checked that it is a well-formed id
        return cipher

    def _aad(
        self, kid: str, company_id: UUID | str, integration: str, credential_id: UUID | str
    ) -> bytes:
        """Associated data, remembered for the last few thousand credentials (it is public)."""
        slot = (kid, company_id, integration, credential_id)
        aad = self._aads.get(slot)
        if aad is None:
            aad = associated_data(kid, company_id, integration, credential_id)
            if len(self._aads) >= _AAD_CACHE_SIZE:
                self._aads.clear()
            self._aads[slot] = aad
        return aad

    def _spend(self, kid: str) -> None:
        """Take one count of ``kid``'s bound from this vault's block; reserve another block
        from the shared counter when it is used up."""
        block = self._blocks.get(kid)
        if block is not None and next(block.counts) <= block.end:
            return
        with self._lock:
            current = self._blocks.get(kid)
            if current is not block and current is not None and next(current.counts) <= current.end:
                return  # another thread reserved a block while this one waited
            self._reserve(kid)

    def _reserve(self, kid: str) -> None:
        """Reserve a block and spend its first count. Called with the lock held."""
        bound = self.max_encryptions_per_key
        if kid in self._exhausted:
            raise KeyExhausted(kid)
        size = min(self.reserve, bound)
        total = self.counter.incr(kid, size)
        first = total - size + 1
        if first > bound:
            self._exhausted.add(kid)
            raise KeyExhausted(kid)
        self._blocks[kid] = _Block(itertools.count(first + 1), min(total, bound))

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._blocks = {}

    def __repr__(self) -> str:
        return f"Vault(primary={self._primary.kid!r}, keys={len(self._ciphers)})"


def _forget_blocks(ref: weakref.ref[Vault]) -> None:
    """In a forked child: the parent's blocks are the parent's to spend."""
    vault = ref()
    if vault is not None:
        vault._after_fork()
