"""The ciphertext format, and the per-key state that seals and opens it with AES-256-GCM.

A ciphertext is binary, stored in a Postgres ``bytea`` column::

    0x01 || len(kid) || kid || nonce || ciphertext || tag
    1 B     1 B         1-32   12 B     len(text)     16 B

``0x01`` is the format version (named ``s2v1``; versions are ``0x00``-``0x1f``); ``kid`` the ASCII id of the key it was sealed
under (``[A-Za-z0-9_-]{1,32}``), preceded by its length in one byte; ``nonce`` a fresh random
96-bit nonce (``os.urandom(12)``); then the AES-GCM ciphertext of the plaintext's UTF-8 and
the 128-bit tag. The version byte, length byte and key id are the *header*; there is no
padding, no trailer and no other encoding of the same bytes, so every flipped bit is an error.

The associated data binds a ciphertext to where it belongs::

    header || field(company_id) || field(integration) || field(credential_id)
    field(x) = len(utf8(x)) as 2 bytes big-endian || utf8(x)

the header being the very bytes that start the ciphertext (version byte, kid length, kid).
The header delimits itself and every field carries its length, so the encoding is injective:
no two bindings share associated data, whatever characters their fields hold. Fields are
non-empty, at most 65535 bytes of UTF-8 (lone surrogates pass through as ``surrogatepass``
writes them), and a ``UUID`` is written in its canonical form (``str(uuid)``), so a UUID and
its canonical text bind alike. Copied into another company's, integration's or credential's
row, or relabelled with another key id or format version, a ciphertext fails to open.

Ciphertexts are never printed: ``describe`` gives an operator ``s2v1:<kid>:<n> bytes``.
"""

from __future__ import annotations

import re
from uuid import UUID

from vault.errors import MalformedCiphertext, UnsupportedFormat
from vault.keys import KID_RE, Key

VERSION = "s2v1"
VERSION_BYTE = 0x01
# Format versions are control bytes, which no text token starts with: a first byte above this
# is data that is no vault ciphertext, not a format to name.
MAX_VERSION_BYTE = 0x1F
NONCE_BYTES = 12
TAG_BYTES = 16
MAX_FIELD_BYTES = 0xFFFF
_KID_BYTES = re.compile(rb"[A-Za-z0-9_-]{1,32}")
_AAD_CACHE_SIZE = 4096


def header(kid: str) -> bytes:
    """The header of a ciphertext under ``kid``: version byte, kid length, kid."""
    if not isinstance(kid, str) or not KID_RE.fullmatch(kid):
        raise ValueError("a key id must match [A-Za-z0-9_-]{1,32}")
    return bytes((VERSION_BYTE, len(kid))) + kid.encode("ascii")


def associated_data(
    kid: str, company_id: UUID | str, integration: str, credential_id: UUID | str
) -> bytes:
    """The associated data that binds a ciphertext under ``kid`` to its credential."""
    return header(kid) + _binding(company_id, integration, credential_id)


def _binding(company_id: object, integration: object, credential_id: object) -> bytes:
    return b"".join(
        (
            _field("company_id", company_id),
            _field("integration", integration),
            _field("credential_id", credential_id),
        )
    )


def _field(name: str, value: object) -> bytes:
    if isinstance(value, UUID):
        value = str(value)
    elif not isinstance(value, str):
        raise TypeError(f"{name} must be a UUID or str, not {type(value).__name__}")
    data = value.encode("utf-8", "surrogatepass")
    if not 0 < len(data) <= MAX_FIELD_BYTES:
        raise ValueError(f"{name} must be non-empty and at most {MAX_FIELD_BYTES} bytes of UTF-8")
    return len(data).to_bytes(2, "big") + data


class KeyCipher:
    """What the vault needs of one key, laid out for its hot path.

    ``header`` starts every ciphertext under the key; ``head``, ``nonce`` and ``body`` slice
    a ciphertext's header, nonce, and AES-GCM ciphertext and tag; a ciphertext shorter than
    ``min_length`` cannot be one. ``encrypt`` and
    ``decrypt`` are the key's ``AESGCM`` methods. ``aads`` caches associated data by
    ``(company_id, integration, credential_id)`` (it is public); ``aad`` fills it.
    """

    __slots__ = (
        "aads",
        "body",
        "decrypt",
        "encrypt",
        "head",
        "header",
        "kid",
        "min_length",
        "nonce",
    )

    def __init__(self, key: Key) -> None:
        self.kid = key.kid
        self.header = header(key.kid)
        start = len(self.header)
        self.head = slice(0, start)
        self.nonce = slice(start, start + NONCE_BYTES)
        self.body = slice(start + NONCE_BYTES, None)
        self.min_length = start + NONCE_BYTES + TAG_BYTES
        self.encrypt = key.aead.encrypt
        self.decrypt = key.aead.decrypt
        self.aads: dict[tuple[object, object, object], bytes] = {}

    def aad(self, company_id: UUID | str, integration: str, credential_id: UUID | str) -> bytes:
        """Associated data for a binding, remembered for the last few thousand bindings."""
        aad = self.header + _binding(company_id, integration, credential_id)
        aads = self.aads
        if len(aads) >= _AAD_CACHE_SIZE:
            aads.clear()
        aads[company_id, integration, credential_id] = aad
        return aad

    def __repr__(self) -> str:
        return f"KeyCipher({self.kid!r})"


def key_id_of(ciphertext: bytes) -> str:
    """The key id a ciphertext names, its shape checked; nothing is decrypted.

    Raises ``MalformedCiphertext`` or ``UnsupportedFormat``, whose messages never echo the
    input: it may be a plaintext passed here by mistake.
    """
    if isinstance(ciphertext, bytearray | memoryview):
        ciphertext = bytes(ciphertext)
    if not isinstance(ciphertext, bytes):
        raise MalformedCiphertext(f"expected bytes, got {type(ciphertext).__name__}")
    if not ciphertext:
        raise MalformedCiphertext("it is empty")
    first = ciphertext[0]
    if first != VERSION_BYTE:
        if ciphertext.startswith(b"s2v1."):
            raise UnsupportedFormat("text s2v1.<kid>.<base64url>")
        if first <= MAX_VERSION_BYTE:
            raise UnsupportedFormat(f"0x{first:02x}")
        # Never named: it may be the first character of a plaintext passed here by mistake.
        raise MalformedCiphertext("it does not start with a format version byte")
    if len(ciphertext) < 2:
        raise MalformedCiphertext("its header is truncated")
    start = 2 + ciphertext[1]
    if len(ciphertext) < start:
        raise MalformedCiphertext("its header is truncated")
    kid = ciphertext[2:start]
    if not _KID_BYTES.fullmatch(kid):
        raise MalformedCiphertext("its key id is malformed")
    if len(ciphertext) < start + NONCE_BYTES + TAG_BYTES:
        raise MalformedCiphertext("it is too short")
    return kid.decode("ascii")


def describe(ciphertext: bytes) -> str:
    """A printable summary for logs and operators, never any byte of the body:
    ``s2v1:<kid>:<n> bytes``, or what is wrong with the value and its size.

    The key id is the one the header names; only a corrupted length byte could make the id
    run into the nonce, and then only over bytes that are id characters.
    """
    if isinstance(ciphertext, bytearray | memoryview):
        ciphertext = bytes(ciphertext)
    if not isinstance(ciphertext, bytes):
        return f"not a vault ciphertext: {type(ciphertext).__name__}"
    size = len(ciphertext)
    try:
        kid = key_id_of(ciphertext)
    except UnsupportedFormat as e:
        return f"unsupported vault ciphertext format {e.version}: {size} bytes"
    except MalformedCiphertext:
        return f"malformed vault ciphertext: {size} bytes"
    return f"{VERSION}:{kid}:{size} bytes"
