"""One settings object, read from the environment once at start-up and passed down.

Nothing in the project reads ``os.environ`` for its own configuration except this module;
the anthropic SDK reads ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` itself, as it does
everywhere else.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789abcdef"  # noqa: S105 - a marked dev default


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="S2_", extra="ignore", frozen=True)

    env: str = Field("dev", description="dev, test, staging or production")
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql://s2_app@127.0.0.1:5432/system2"
    admin_database_url: str = "postgresql://postgres@127.0.0.1:5432/system2"
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_audience: str = "authenticated"

    db_pool_min: int = 1
    db_pool_max: int = 10

    default_model: str = "claude-sonnet-5-5"
    max_tokens: int = 1024
    max_steps: int = 20
    claude_timeout_s: float = 120.0
    claude_max_retries: int = 2

    worker_poll_ms: int = Field(
        100, description="idle poll of an empty queue (Dramatiq's backoff cap)"
    )
    events_maxlen: int = Field(
        10_000, description="approximate length kept per company event stream"
    )
    audit_batch_max: int = 500

    def production(self) -> bool:
        return self.env == "production"
