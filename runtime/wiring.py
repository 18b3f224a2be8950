"""Building the pieces several processes share from settings, in one place."""

from __future__ import annotations

import redis

from runtime.settings import Settings
from vault import RedisEncryptionCounter, Vault, key_source_from_settings


def vault_keys_configured(settings: Settings) -> bool:
    return bool(settings.vault_keys and settings.vault_keys.get_secret_value().strip()) or bool(
        settings.vault_keys_file and settings.vault_keys_file.strip()
    )


def build_vault(settings: Settings, client: redis.Redis) -> Vault:
    """The vault from the secrets store the settings name; ``VaultConfigError`` if none."""
    source = key_source_from_settings(
        settings.vault_keys.get_secret_value() if settings.vault_keys else None,
        settings.vault_keys_file,
    )
    return Vault(
        source.load(),
        RedisEncryptionCounter(client),
        max_encryptions_per_key=settings.vault_max_encryptions,
    )


def maybe_vault(settings: Settings, client: redis.Redis) -> Vault | None:
    """The vault, or None when no keys are configured (integrations are then unavailable)."""
    return build_vault(settings, client) if vault_keys_configured(settings) else None
