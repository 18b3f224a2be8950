"""Application-layer AES-256-GCM for integration credentials.

Keys come from a secrets store (``S2_VAULT_KEYS`` or ``S2_VAULT_KEYS_FILE``), never from the
database. Every ciphertext is binary (a ``bytea`` column), names its format version and key id
and is bound to its company, integration and credential; plaintext exists only inside
``Secret``. Log ``describe(ciphertext)``, never the ciphertext.

A leaf of the house: it imports only third-party code, never another package of ours
(``make lint`` checks).
"""

from vault.cipher import VERSION, VERSION_BYTE, KeyCipher, associated_data, describe, key_id_of
from vault.counter import EncryptionCounter, MemoryEncryptionCounter, RedisEncryptionCounter
from vault.errors import (
    CounterUnavailable,
    DecryptionFailed,
    KeyExhausted,
    MalformedCiphertext,
    UnknownKey,
    UnsupportedFormat,
    VaultConfigError,
    VaultError,
)
from vault.keys import (
    EnvKeySource,
    FileKeySource,
    Key,
    Keyring,
    KeySource,
    key_source_from_settings,
    kid_date,
    new_key_entry,
    parse_keyring,
)
from vault.secret import Secret
from vault.vault import DEFAULT_MAX_ENCRYPTIONS, Vault

__all__ = [
    "DEFAULT_MAX_ENCRYPTIONS",
    "VERSION",
    "VERSION_BYTE",
    "CounterUnavailable",
    "DecryptionFailed",
    "EncryptionCounter",
    "EnvKeySource",
    "FileKeySource",
    "Key",
    "KeyCipher",
    "KeyExhausted",
    "KeySource",
    "Keyring",
    "MalformedCiphertext",
    "MemoryEncryptionCounter",
    "RedisEncryptionCounter",
    "Secret",
    "UnknownKey",
    "UnsupportedFormat",
    "Vault",
    "VaultConfigError",
    "VaultError",
    "associated_data",
    "describe",
    "key_id_of",
    "key_source_from_settings",
    "kid_date",
    "new_key_entry",
    "parse_keyring",
]
