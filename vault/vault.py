"""The vault: encrypt, decrypt and rewrap integration credentials with a keyring.

Encryption is always under the keyring's primary; decryption uses whichever key the
ciphertext names, so rotation needs no downtime: put a new key first in the secrets store,
restart, and old ciphertexts keep opening while ``rewrap`` moves them to the new primary.

Encryptions are counted per key through a shared ``EncryptionCounter``. Asking it once per
encryption would cost a Redis round trip each, so a vault reserves counts in blocks and spends
them locally. A block is a range of the key's count that belongs to this vault alone, so the
bound holds across every process; a process that dies mid-block leaves the rest of it
unspent, which only makes the bound more conservative. Blocks are ``reserve`` counts (1000 by
default) while a vault encrypts slowly; one spent within a second makes the next twice as big,
up to ``max_reserve`` (64 x ``reserve`` by default), and one that lasts longer halves it. So a
busy vault asks the counter about once a second, and what a dying process leaves unspent is
``reserve``, or about its last second or two of encryptions. A forked child drops the block
it inherited and reserves its own.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TypeAlias
from uuid import UUID

from cryptography.exceptions import InvalidTag

from vault.cipher import NONCE_BYTES, KeyCipher, key_id_of
from vault.counter import EncryptionCounter
from vault.errors import DecryptionFailed, KeyExhausted, MalformedCiphertext, UnknownKey
from vault.keys import Keyring
from vault.secret import Secret, new, set_value

# Far below NIST SP 800-38D's 2**32 invocations per key with random 96-bit nonces.
DEFAULT_MAX_ENCRYPTIONS = 2**28
# A block spent within this many seconds makes the next one twice as big.
FAST_BLOCK_SECONDS = 1.0

_urandom = os.urandom

# A block: a range of the primary's count reserved for this vault, spent with ``next(counts)``
# while the result is at most ``end``. ``next`` on an ``itertools.count`` is atomic under the
# GIL and the pair is read as one attribute, so threads spend without a lock and take it only
# to reserve the next block.
_Block: TypeAlias = tuple[Iterator[int], int]
_SPENT: _Block = (itertools.count(1), 0)


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
        max_reserve: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_reserve is None:
            max_reserve = 64 * reserve
        if max_encryptions_per_key < 1 or reserve < 1 or max_reserve < reserve:
            raise ValueError(
                "max_encryptions_per_key and reserve must be positive, "
                "and max_reserve at least reserve"
            )
        self.keyring = keyring
        self.counter = counter
        self.max_encryptions_per_key = max_encryptions_per_key
        self.reserve = reserve
        self.max_reserve = max_reserve
        self._clock = clock
        self._ciphers = {key.kid: KeyCipher(key) for key in keyring}
        # Every valid header of this keyring: looking one up checks version and key id at once.
        self._by_header = {cipher.header: cipher for cipher in self._ciphers.values()}
        self._primary = self._ciphers[keyring.primary.kid]
        self._lock = threading.Lock()
        self._block: _Block = _SPENT
        self._block_size = 0  # of the last block reserved; 0: none yet
        self._reserved_at = 0.0
        self._exhausted = False
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
    ) -> bytes:
        """Encrypt under the primary key, bound to this company, integration and credential.

        Raises ``KeyExhausted`` once the primary has reached its bound.
        """
        if not isinstance(plaintext, Secret):
            raise TypeError(f"encrypt takes a Secret, not {type(plaintext).__name__}")
        cipher = self._primary
        aad = cipher.aads.get((company_id, integration, credential_id))
        if aad is None:
            aad = cipher.aad(company_id, integration, credential_id)
        block = self._block
        if next(block[0]) > block[1]:
            self._refill(block)
        nonce = _urandom(NONCE_BYTES)
        return b"".join(
            (
                cipher.header,
                nonce,
                cipher.encrypt(nonce, plaintext._value.encode("utf-8", "surrogatepass"), aad),
            )
        )

    def decrypt(
        self,
        ciphertext: bytes,
        *,
        company_id: UUID | str,
        integration: str,
        credential_id: UUID | str,
    ) -> Secret:
        """Open a ciphertext under the key it names, for the binding it was sealed with.

        Raises ``DecryptionFailed`` (or its ``MalformedCiphertext``, ``UnsupportedFormat``,
        ``UnknownKey``) when it cannot. The plaintext's bytes are never bound to a name, so no
        traceback's frame locals can show them, and the error is raised after the ``except``
        block: nothing is chained.
        """
        cipher = self._primary
        if (
            type(ciphertext) is not bytes
            or ciphertext[cipher.head] != cipher.header
            or len(ciphertext) < cipher.min_length
        ):  # not the primary's, or not well-formed: which key, or what is wrong
            ciphertext, cipher = self._parse(ciphertext)
        aad = cipher.aads.get((company_id, integration, credential_id))
        if aad is None:
            aad = cipher.aad(company_id, integration, credential_id)
        secret = new(Secret)
        try:
            set_value(
                secret,
                cipher.decrypt(ciphertext[cipher.nonce], ciphertext[cipher.body], aad).decode(
                    "utf-8", "surrogatepass"
                ),
            )
            return secret
        except (InvalidTag, UnicodeDecodeError):
            pass
        raise DecryptionFailed(kid=cipher.kid)

    def rewrap(
        self,
        ciphertext: bytes,
        *,
        company_id: UUID | str,
        integration: str,
        credential_id: UUID | str,
    ) -> bytes:
        """The ciphertext re-encrypted under the primary; the same bytes when it already is.

        The plaintext never leaves the vault. Safe to repeat: a second call is a no-op.
        """
        ciphertext, cipher = self._parse(ciphertext)
        if cipher is self._primary:
            return ciphertext
        return self.encrypt(
            self.decrypt(
                ciphertext,
                company_id=company_id,
                integration=integration,
                credential_id=credential_id,
            ),
            company_id=company_id,
            integration=integration,
            credential_id=credential_id,
        )

    def encryptions(self, kid: str) -> int:
        """Encryptions reserved under ``kid`` by every process: an upper bound on those done."""
        return self.counter.get(kid)

    def _parse(self, ciphertext: bytes) -> tuple[bytes, KeyCipher]:
        """The ciphertext as ``bytes`` (a ``bytearray`` or ``memoryview`` is copied) and the
        key it names, or the precise error. One dict lookup of the header checks the version
        byte, the key id's length and characters, and that the keyring holds the key."""
        if type(ciphertext) is not bytes:
            if not isinstance(ciphertext, bytes | bytearray | memoryview):
                raise MalformedCiphertext(f"expected bytes, got {type(ciphertext).__name__}")
            ciphertext = bytes(ciphertext)
        cipher = (
            self._by_header.get(ciphertext[: 2 + ciphertext[1]]) if len(ciphertext) > 1 else None
        )
        if cipher is None:
            kid = key_id_of(ciphertext)  # raises the precise error, if there is one
            cipher = self._ciphers.get(kid)
            if cipher is None:
                raise UnknownKey(kid)
        if len(ciphertext) < cipher.min_length:
            raise MalformedCiphertext("it is too short")
        return ciphertext, cipher

    def _refill(self, spent: _Block) -> None:
        """Spend one count from a fresh block of the primary's bound, reserved from the
        shared counter, unless another thread has reserved one meanwhile."""
        with self._lock:
            block = self._block
            if block is not spent and next(block[0]) <= block[1]:
                return
            if self._exhausted:
                raise KeyExhausted(self._primary.kid)
            kid = self._primary.kid
            bound = self.max_encryptions_per_key
            now = self._clock()
            size = self._block_size
            if not size:
                size = self.reserve
            elif now - self._reserved_at < FAST_BLOCK_SECONDS:
                size = min(2 * size, self.max_reserve)
            else:
                size = max(size // 2, self.reserve)
            size = min(size, bound)
            total = self.counter.incr(kid, size)
            self._block_size, self._reserved_at = size, now
            first = total - size + 1
            if first > bound:
                self._exhausted = True
                raise KeyExhausted(kid)
            self._block = (itertools.count(first + 1), min(total, bound))

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._block = _SPENT
        self._block_size = 0

    def __repr__(self) -> str:
        return f"Vault(primary={self._primary.kid!r}, keys={len(self._ciphers)})"


def _forget_blocks(ref: weakref.ref[Vault]) -> None:
    """In a forked child: the parent's blocks are the parent's to spend."""
    vault = ref()
    if vault is not None:
        vault._after_fork()
