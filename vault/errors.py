"""Errors of the vault.

No message, repr or chained cause ever holds plaintext, key bytes or base64 key text: the
only values they name are key ids, format versions, positions and lengths. Errors raised on
behalf of the cryptography library are raised outside its ``except`` block, so they carry no
``__context__`` either.
"""

from __future__ import annotations


class VaultError(Exception):
    """Base of every error raised by ``vault``."""


class VaultConfigError(VaultError):
    """The keyring could not be loaded: missing, unreadable or malformed key settings."""


class CounterUnavailable(VaultError):
    """The shared encryption counter did not answer; nothing was encrypted."""


class KeyExhausted(VaultError):
    """A key has reached its encryption bound: a new primary is needed before encrypting."""

    def __init__(self, kid: str) -> None:
        super().__init__(
            f"key {kid} has reached its encryption bound; "
            "rotate: system2 vault new-key, then rewrap"
        )
        self.kid = kid


class DecryptionFailed(VaultError):
    """The ciphertext cannot be opened: it was altered, or it belongs to another company,
    integration or credential than the one asked for. The subclasses say more when they can."""

    def __init__(self, message: str = "", *, kid: str | None = None) -> None:
        if not message:
            where = f" (key {kid})" if kid else ""
            message = (
                f"ciphertext or its binding is wrong{where}: it was altered, or it belongs to "
                "another company, integration or credential"
            )
        super().__init__(message)
        self.kid = kid


class MalformedCiphertext(DecryptionFailed):
    """The value is not a well-formed vault ciphertext (the value itself is never echoed)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"not a well-formed vault ciphertext: {reason}")


class UnsupportedFormat(DecryptionFailed):
    """The ciphertext names a format version this code does not read. ``version`` is the
    version byte in hex (``0x02``), or the name of a retired format."""

    def __init__(self, version: str) -> None:
        super().__init__(
            f"unsupported vault ciphertext format {version}; "
            "this code reads s2v1 (version byte 0x01) only"
        )
        self.version = version


class UnknownKey(DecryptionFailed):
    """The ciphertext names a key id the keyring does not hold."""

    def __init__(self, kid: str) -> None:
        super().__init__(f"the keyring has no key {kid}: was it retired too early?", kid=kid)
