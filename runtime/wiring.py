"""Building the pieces several processes share from settings, in one place."""

from __future__ import annotations

import redis
from redis.asyncio import BlockingConnectionPool
from redis.asyncio import Redis as AsyncRedis

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


def async_redis(settings: Settings, *, connections: int, name: str | None = None) -> AsyncRedis:
    """A redis.asyncio client of at most ``connections`` connections: a caller beyond them
    waits for one (up to 5 s) rather than failing at once, as redis-py's default pool does.
    Its connections belong to the loop that first uses them: one client per loop. ``name``:
    what ``CLIENT LIST`` calls them (``system2-<name>``)."""
    return AsyncRedis.from_pool(
        BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=connections,
            timeout=5,
            socket_connect_timeout=2,
            client_name=f"system2-{name}" if name else None,
        )
    )
