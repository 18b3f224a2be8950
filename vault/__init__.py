"""Application-layer AES-256-GCM for integration credentials.

Keys come from a secrets store (``S2_VAULT_KEYS`` or ``S2_VAULT_KEYS_FILE``), never from the
database. Every ciphertext names its format version and key id and is bound to its company,
integration and credential; plaintext exists only inside ``Secret``.
"""

from vault.cipher import VERSION, KeyCipher, associated_data
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
    "key_source_from_settings",
    "kid_date",
    "new_key_entry",
    "parse_keyring",
]
