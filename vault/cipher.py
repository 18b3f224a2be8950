"""The ciphertext format, and sealing and opening one with AES-256-GCM.

A ciphertext is ASCII text, safe in a database column, a URL or a (redacted) log line::

    s2v1.<kid>.<base64url(nonce || ciphertext || tag)>

``s2v1`` is the format version; ``kid`` the id of the key it was sealed under
(``[A-Za-z0-9_-]{1,32}``); the body is unpadded urlsafe base64 of a fresh random 96-bit nonce
(``os.urandom(12)``), the AES-GCM ciphertext of the plaintext's UTF-8, and the 128-bit tag.
Only the canonical encoding of the body is accepted (no stray characters, no padding, no
non-zero trailing bits), so every flipped bit of the text is an error, never the same
plaintext.

The associated data binds a ciphertext to where it belongs. It is the UTF-8 of::

    s2v1|<kid>|<company_id>|<integration>|<credential_id>

where no field may be empty or contain ``|`` (so the encoding is unambiguous), and UUIDs are
written in their canonical form. Copied into another company's, integration's or
credential's row, or relabelled with another key id, a ciphertext fails to open.
"""

from __future__ import annotations

import binascii
import os
import re
from typing import NoReturn
from uuid import UUID

from cryptography.exceptions import InvalidTag

from vault.errors import DecryptionFailed, MalformedCiphertext, UnsupportedFormat
from vault.keys import KID_RE, Key
from vault.secret import Secret

VERSION = "s2v1"
NONCE_BYTES = 12
TAG_BYTES = 16
_VERSION_RE = re.compile(r"s2v[0-9]{1,6}")

_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
# urlsafe -> standard; '+', '/' and '=' become '!', which strict decoding rejects.
_FROM_URLSAFE = bytes.maketrans(b"-_+/=", b"+/!!!")
# By the text's length mod 4: the low bits of its last character that must be zero, and the
# padding that standard decoding wants back.
_SPARE_BITS = (0, 0, 0b1111, 0b11)
_PADDING = (b"", b"", b"==", b"=")


def associated_data(
    kid: str, company_id: UUID | str, integration: str, credential_id: UUID | str
) -> bytes:
    """The associated data that binds a ciphertext under ``kid`` to its credential."""
    text = f"{VERSION}|{kid}|{company_id}|{integration}|{credential_id}"
    if text.count("|") != 4 or "||" in text or text[-1] == "|":
        raise ValueError(
            "company_id, integration and credential_id must be non-empty and contain no '|'"
        )
    return text.encode("utf-8", "surrogatepass")


class KeyCipher:
    """Seals and opens ciphertexts under one key."""

    __slots__ = ("_aead", "_header", "kid")

    def __init__(self, key: Key) -> None:
        self.kid = key.kid
        self._aead = key.aead
        self._header = f"{VERSION}.{key.kid}."

    def seal(self, aad: bytes, plaintext: Secret) -> str:
        """Encrypt with a fresh random nonce. Counting encryptions is the caller's job."""
        nonce = os.urandom(NONCE_BYTES)
        body = nonce + self._aead.encrypt(
            nonce, plaintext.reveal().encode("utf-8", "surrogatepass"), aad
        )
        return self._header + _encode(body)

    def open(self, aad: bytes, body: bytes) -> Secret:
        """Decrypt and authenticate a parsed body (see ``parse``).

        The plaintext's bytes are never bound to a name, so no traceback's frame locals can
        show them, and the error is raised after the ``except`` block: nothing is chained.
        """
        try:
            return Secret(
                self._aead.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], aad).decode(
                    "utf-8", "surrogatepass"
                )
            )
        except (InvalidTag, UnicodeDecodeError):
            pass
        raise DecryptionFailed(kid=self.kid)

    def __repr__(self) -> str:
        return f"KeyCipher({self.kid!r})"


def parse(ciphertext: str) -> tuple[str, bytes]:
    """The key id and body (nonce || ciphertext || tag) of a ciphertext, its shape checked.

    Errors never echo the text: it may be a plaintext passed here by mistake.
    """
    parts = ciphertext.split(".") if isinstance(ciphertext, str) else []
    if len(parts) != 3 or parts[0] != VERSION:
        _refuse(ciphertext)
    _, kid, body = parts
    if not KID_RE.fullmatch(kid):
        raise MalformedCiphertext("its key id is malformed")
    raw = _decode(body)
    if raw is None:
        raise MalformedCiphertext("its body is not canonical unpadded base64url")
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise MalformedCiphertext("its body is too short")
    return kid, raw


def _refuse(ciphertext: object) -> NoReturn:
    """The precise error for a text that is not ``s2v1.<kid>.<body>``."""
    if not isinstance(ciphertext, str):
        raise MalformedCiphertext(f"expected str, got {type(ciphertext).__name__}")
    version = ciphertext.partition(".")[0]
    if version != VERSION and _VERSION_RE.fullmatch(version):
        raise UnsupportedFormat(version)
    raise MalformedCiphertext("it is not s2v1.<kid>.<body>")


def _encode(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode()


def _decode(text: str) -> bytes | None:
    """The bytes of a canonical unpadded base64url text, or None."""
    rem = len(text) % 4
    if rem == 1 or (rem and _B64URL.find(text[-1]) & _SPARE_BITS[rem]):
        return None
    try:
        return binascii.a2b_base64(
            text.encode("ascii").translate(_FROM_URLSAFE) + _PADDING[rem], strict_mode=True
        )
    except (UnicodeEncodeError, binascii.Error):
        return None
