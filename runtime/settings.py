"""One settings object, read from the environment once at start-up and passed down.

Nothing in the project reads ``os.environ`` for its own configuration except this module;
the anthropic SDK reads ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` itself, as it does
everywhere else, and prometheus-client reads ``PROMETHEUS_MULTIPROC_DIR`` itself at import.
The operator tools that run away from the application (backups, deploys, smoke tests) have
small settings objects of their own below, so that a backup host needs none of the
application's secrets.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args
from urllib.parse import SplitResult, parse_qs, urlsplit

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from guard.policy import Limits
from integrations import PROVIDERS, ProviderSettings, provider
from integrations import config as integration_settings
from runtime.durations import duration_s
from runtime.errors import ConfigurationError
from runtime.mail import BadMailSetting, MailServer, address, mail_server
from vault import VaultError, key_source_from_settings

DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789abcdef"  # noqa: S105 - a marked dev default
DEV_OAUTH_STATE_SECRET = "dev-only-oauth-state-secret-0123456789abcdef"  # noqa: S105 - likewise
PACKAGE = "system2-workers"
Environment = Literal["dev", "test", "staging", "production"]
ENVIRONMENTS: tuple[Environment, ...] = get_args(Environment)
DEPLOYED: tuple[Environment, ...] = ("staging", "production")
MIN_SECRET_BYTES = 32
TLS_SSLMODES = ("require", "verify-ca", "verify-full")


class UnsafeSettings(ConfigurationError):
    """Staging or production was given a setting that must not reach them. The message names
    each variable and what is wrong with it, never its value. Not a ``ValueError``, so that
    pydantic lets it through as it is rather than wrapping it with the input."""


def package_release() -> str:
    """``system2-workers@<version>``: the release name when no commit is given."""
    try:
        return f"{PACKAGE}@{metadata.version(PACKAGE)}"
    except metadata.PackageNotFoundError:
        return f"{PACKAGE}@unknown"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="S2_", extra="ignore", frozen=True, populate_by_name=True
    )

    env: Environment = Field("dev", description="dev, test, staging or production")
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql://s2_app@127.0.0.1:5432/system2"
    admin_database_url: str = "postgresql://postgres@127.0.0.1:5432/system2"
    operator_database_url: str = Field(
        "postgresql://engineer%40system2.dev@127.0.0.1:5432/system2",
        description="the engineer's own Postgres login (its user is their email address, "
        "`system2 support enroll`), for reads of a company's content (quest show/list/watch, "
        "audit list): it reads a company only under that engineer's live support grant",
    )
    operator: str | None = Field(
        None,
        description="who runs commands on the app's store that record their actor, such as "
        "`support grant` and `support revoke` (their email; or --as EMAIL)",
    )
    support_max_ttl_s: int = Field(
        8 * 3_600,
        ge=60,
        validation_alias=AliasChoices("S2_SUPPORT_MAX_TTL", "support_max_ttl_s"),
        description="the longest a support grant may last (8h; seconds or 30m, 2h ...)",
    )

    @field_validator("support_max_ttl_s", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return duration_s(value) if isinstance(value, str) else value

    jwt_secret: SecretStr = Field(
        SecretStr(DEV_JWT_SECRET),
        description="Supabase Auth's legacy shared secret: HS256 tokens are accepted only "
        "where it is set (or, with no S2_JWT_JWKS_URL, at its dev default outside staging "
        "and production); empty turns HS256 off",
    )
    jwt_audience: str = "authenticated"
    jwt_jwks_url: str | None = Field(
        None,
        description="the Supabase project's signing keys, "
        "https://<project>.supabase.co/auth/v1/.well-known/jwks.json: ES256/RS256 tokens "
        "are verified with the key their kid names",
    )
    jwt_issuer: str | None = Field(
        None,
        description="expected iss claim of every token, e.g. https://<project>.supabase.co/auth/v1 "
        "(required with S2_JWT_JWKS_URL in staging and production)",
    )
    jwks_ttl_s: float = Field(
        600, gt=0, description="the signing keys are fetched again after this long"
    )
    jwks_min_refresh_s: float = Field(
        30,
        ge=1,
        description="a token naming a kid the set lacks makes us fetch it again at most this "
        "often (a flood of made-up kids costs Supabase one request per interval)",
    )
    jwks_timeout_s: float = Field(
        5, gt=0, description="a fetch of the signing keys is given up after this long"
    )

    db_pool_min: int = 1
    db_pool_max: int = 10
    max_body_bytes: int = Field(
        262_144,
        ge=1,
        description="the ingress refuses a request body larger than this with 413, as it streams in",
    )
    sse_max_per_user: int = Field(
        8, ge=1, description="live event streams one user may hold open on one ingress process"
    )
    sse_max_per_company: int = Field(
        64, ge=1, description="live event streams one company may hold open on one ingress process"
    )
    sse_max_life_s: int = Field(
        300,
        ge=1,
        description="a live event stream ends after this long; the client resumes with "
        "Last-Event-ID, and its membership is checked again",
    )

    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="origins (scheme://host[:port], comma-separated) whose pages may call the "
        "ingress from a browser; empty: none. `*` (any origin) is refused in staging and "
        "production",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _read_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return tuple(normal_origin(str(v)) for v in value if str(v).strip())
        return value

    default_model: str = "claude-sonnet-5-5"
    max_tokens: int = 1024
    max_steps: int = 20
    prompt_cache: bool = Field(
        True,
        description="mark prompt-cache breakpoints, so each step reads what earlier steps sent "
        "at the cache-read price; off: every step pays full input price for its whole prompt",
    )
    transcript_elision: bool = Field(
        True,
        description="elide a long quest's older tool results in its request to fit the model's "
        "context window (the stored transcript keeps them); off: such a quest fails",
    )
    tool_result_max_chars: int = Field(
        8_000, ge=500, description="the most of one tool result that reaches Claude"
    )
    claude_timeout_s: float = 120.0
    claude_outage_max_s: int = Field(
        300,
        ge=1,
        description="a quest waits this long for Claude across retries, then fails "
        "'claude unavailable'",
    )

    broker_heartbeat_ms: int = Field(
        10_000,
        description="a worker silent this long is dead: its unacknowledged messages are redelivered",
    )
    broker_maintenance_chance: int = Field(
        200_000,
        description="per million broker calls, how often dead workers' messages are looked for",
    )
    sweep_interval_s: int = Field(
        30, description="how often a worker looks for quests whose next message was lost"
    )
    sweep_idle_s: int = Field(
        300, description="an open quest idle this long gets its next step sent again"
    )
    transcript_retention_days: int = Field(
        90,
        ge=1,
        description="a finished quest's transcript (replies and tool results) is redacted "
        "this many days after its steps ended",
    )
    retention_interval_s: int = Field(
        3_600, ge=1, description="how often a worker redacts transcripts past their retention"
    )
    max_step_crashes: int = Field(
        3, description="a step that crashes its worker this often is dead-lettered"
    )
    worker_in_flight: int = Field(
        1_000,
        ge=1,
        description="quest steps one worker process runs at once (`system2 worker --in-flight`); "
        "beyond it messages stay on the queue",
    )
    worker_index: int | None = Field(
        None,
        ge=0,
        description="this process's index in its worker group (set by `system2 worker` for each "
        "process it starts; a process run alone serves its metrics on the port plus it)",
    )
    fair_dispatch: bool = Field(
        True,
        description="quest steps are taken company by company in turn (workers/fair_queue.py); "
        "off, in the order they came (one FIFO for all companies: benchmarks compare the two)",
    )
    fair_default_weight: int = Field(
        1,
        ge=1,
        le=1_000,
        description="a company's share of the worker fleet relative to others, unless "
        "`system2 guard set --weight` gives it one of its own",
    )
    worker_control_in_flight: int = Field(
        100, ge=1, description="cancels and maintenance messages one worker process runs at once"
    )
    worker_audit_in_flight: int = Field(
        1_000,
        ge=1,
        description="audit messages one worker process writes at once (committed in batches)",
    )
    worker_db_pool_max: int = Field(
        10,
        ge=2,
        description="Postgres connections one worker process holds at most; processes x this "
        "must stay within what the database or its pooler allows",
    )
    worker_control_db_pool_max: int = Field(
        2,
        ge=1,
        description="Postgres connections one worker process keeps for cancels, on an event "
        "loop of their own, apart from its steps' (so a cancel never waits behind them)",
    )
    worker_audit_db_pool_max: int = Field(
        2,
        ge=1,
        description="Postgres connections one worker process keeps for the audit writer's "
        "batches, the sweeper and vault rewrap",
    )
    worker_redis_connections: int = Field(
        40, ge=8, description="Redis connections one worker process holds at most"
    )
    shutdown_grace_s: float = Field(
        30.0,
        ge=0,
        description="on SIGTERM a worker process lets its steps finish this long, then hands "
        "the rest back to the queue",
    )
    worker_poll_ms: int = Field(
        100, description="idle poll of an empty queue (Dramatiq's backoff cap)"
    )
    events_maxlen: int = Field(
        10_000, description="approximate length kept per company event stream"
    )
    audit_batch_max: int = Field(
        1_000, ge=1, description="audit rows the log writer commits in one transaction at most"
    )

    guard_quest_cap_usd: Decimal = Field(Decimal("5"), description="a quest's default cap")
    guard_quest_ceiling_usd: Decimal = Field(
        Decimal("50"), description="the most a quest's max_usd may ask"
    )
    guard_daily_usd: Decimal = Field(
        Decimal("100"), description="a company's daily budget (0: none)"
    )
    guard_monthly_usd: Decimal = Field(
        Decimal("1000"), description="a company's monthly budget (0: none)"
    )
    guard_warn_pct: int = 50
    guard_slow_pct: int = 80
    guard_halt_pct: int = 100
    guard_quests_per_minute: int = 60
    guard_max_running_quests: int = 20
    guard_slot_ttl_s: int = Field(180, description="a running quest's slot lapses if not refreshed")
    guard_count_tokens: bool = Field(
        True, description="when the byte bound does not fit, reserve by the API's token count"
    )
    guard_slow_min_ms: int = 1_000
    guard_slow_max_ms: int = 30_000

    vault_keys: SecretStr | None = Field(
        None, description="KID=BASE64KEY entries, the first primary"
    )
    vault_keys_file: str | None = Field(None, description="a file with the same content")
    vault_rotate_days: int = 90
    vault_max_encryptions: int = Field(2**28, description="per key; far below NIST's 2^32 bound")

    public_url: str = Field(
        "http://127.0.0.1:8080",
        description="the ingress's address as a browser reaches it: providers send an admin "
        "back to <S2_PUBLIC_URL>/v1/oauth/<name>/callback when a connection is approved",
    )
    oauth_state_secret: SecretStr = Field(
        SecretStr(DEV_OAUTH_STATE_SECRET),
        description="signs the state of OAuth connect flows (32 bytes or more)",
    )
    integrations: dict[str, ProviderSettings] = Field(
        default_factory=dict,
        description="each provider's S2_<NAME>_PROVIDER_URL, _OAUTH_URL, _CLIENT_ID, "
        "_CLIENT_SECRET and _ENABLED (integrations.config)",
    )

    @model_validator(mode="before")
    @classmethod
    def _read_integrations(cls, data: Any) -> Any:
        """Each provider's settings from its own variables (``integrations.config``); only a
        ``ProviderSettings`` passed in (tests, the demo) replaces them, never a value read
        from an ``S2_INTEGRATIONS`` variable."""
        if not isinstance(data, dict):
            return data
        deployed = data.get("env", os.environ.get("S2_ENV", "dev")) in DEPLOYED
        given = data.get("integrations")
        read = {
            name: integration_settings.read(p, os.environ, deployed=deployed)
            for name, p in PROVIDERS.items()
        }
        if isinstance(given, dict):
            read |= {k: v for k, v in given.items() if isinstance(v, ProviderSettings)}
        return data | {"integrations": read}

    def integration(self, name: str) -> ProviderSettings:
        """``name``'s settings here (``UnknownIntegration`` for a name no provider has)."""
        provider(name)
        return self.integrations[name]

    def with_integration(self, name: str, **changes: Any) -> Settings:
        """A copy with some of ``name``'s settings changed (tests, the demo)."""
        changed = self.integration(name).model_copy(update=changes)
        return self.model_copy(update={"integrations": self.integrations | {name: changed}})

    provider_timeout_s: float = 10.0
    provider_retries: int = 2
    provider_outage_max_s: int = Field(
        300, description="a quest waits this long for a provider, then fails"
    )
    breaker_failures: int = Field(
        5, description="failures within breaker_window_s that open a provider's breaker"
    )
    breaker_window_s: int = 30
    breaker_open_s: int = 30
    provider_rate_limit_max_s: int = Field(
        300,
        ge=1,
        description="a tool call waits at most this long in all, from its first 429, on a "
        "rate limit at a provider, then its quest fails; the bound is per call, so a quest "
        "making several calls may wait this long for each",
    )

    webhook_retry_schedule_s: Annotated[tuple[float, ...], NoDecode] = Field(
        (5, 300, 1_800, 7_200, 18_000, 36_000),
        description="seconds between a webhook delivery's attempts, comma-separated: after the "
        "last one fails it is given up (the default adds up to ~17.6 h, under a day)",
    )
    webhook_timeout_s: float = Field(
        10.0, gt=0, le=60, description="one webhook attempt, connect to last byte of the answer"
    )
    webhook_disable_after: int = Field(
        5,
        ge=1,
        description="an endpoint whose last this many deliveries were each given up (after "
        "every retry), with no success between, is disabled",
    )
    webhook_sweep_s: int = Field(
        30, ge=1, description="how often a worker looks for due webhook deliveries of every company"
    )
    worker_webhooks_in_flight: int = Field(
        100, ge=1, description="webhook dispatch messages one worker process runs at once"
    )

    @field_validator("webhook_retry_schedule_s", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(float(v) for v in value.split(",") if v.strip())
        return value

    @field_validator("webhook_retry_schedule_s")
    @classmethod
    def _schedule_within_a_day(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        # Retried "for up to a day": a longer schedule would hold a quest's next events back
        # (they wait for this one) for longer than a receiver can be expected to catch up.
        if any(v <= 0 for v in value) or sum(value) > 86_400:
            raise ValueError("each wait must be above 0 s and all of them at most a day")
        return value

    smtp_url: SecretStr | None = Field(
        None,
        description="the mail server incident notices go out through: smtp://host:port (plain, "
        "dev and test only), smtp+starttls://user:password@host:587 or smtps://host:465; "
        "?cafile=/path/ca.pem trusts a private CA (a secret: it may hold a password)",
    )
    mail_from: str | None = Field(
        None, description="the From address of incident notices, e.g. security@autono.sh"
    )

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url_parses(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value():
            mail_server(value.get_secret_value())  # BadMailSetting: names the problem only
            return value
        return None

    @field_validator("mail_from")
    @classmethod
    def _mail_from_is_an_address(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            return address(value)
        except ValueError:
            raise BadMailSetting("S2_MAIL_FROM is not an email address") from None

    def mail_server(self) -> MailServer | None:
        """Where incident notices are sent, or None when ``S2_SMTP_URL`` is unset."""
        return mail_server(self.smtp_url.get_secret_value()) if self.smtp_url else None

    log_level: str = Field("INFO", description="level of our log lines and the libraries'")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: JSON in staging/production or when stderr is not a terminal"
    )
    sentry_dsn: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("SENTRY_DSN", "S2_SENTRY_DSN"),
        description="errors go to Sentry when set",
    )
    sentry_environment: str | None = Field(
        None,
        validation_alias=AliasChoices("SENTRY_ENVIRONMENT", "S2_SENTRY_ENVIRONMENT"),
        description="default: S2_ENV",
    )
    sentry_release: str = Field(
        default_factory=package_release,
        validation_alias=AliasChoices("S2_RELEASE", "SENTRY_RELEASE", "S2_SENTRY_RELEASE"),
        description="the deployed git commit (S2_RELEASE); default system2-workers@<version>",
    )
    metrics_port: int = Field(
        0,
        description="where a worker group serves the sum of its processes' metrics (0: no metrics)",
    )
    metrics_host: str = Field("0.0.0.0", description="where worker metrics ports listen")  # noqa: S104
    prometheus_multiproc_dir: str | None = Field(
        None,
        validation_alias="PROMETHEUS_MULTIPROC_DIR",
        description="where the processes of one ingress or one worker group write their "
        "metrics, summed at one endpoint; `system2 ingress --workers N` (N > 1) and "
        "`system2 worker` make one. prometheus-client reads it too, at import",
    )

    @field_validator("prometheus_multiproc_dir")
    @classmethod
    def _prometheus_own_variable(cls, value: str | None) -> str | None:
        # prometheus-client reads PROMETHEUS_MULTIPROC_DIR itself, at import. A value from
        # anywhere else (S2_PROMETHEUS_MULTIPROC_DIR, by the field's name) would point
        # /metrics at a directory no process writes to.
        if value and value != os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            raise ValueError("set PROMETHEUS_MULTIPROC_DIR itself, which prometheus-client reads")
        return value or None

    anthropic_base_url: str | None = Field(
        None,
        validation_alias="ANTHROPIC_BASE_URL",
        description="read by the anthropic SDK itself; here only to refuse plain HTTP",
    )

    @model_validator(mode="after")
    def _refuse_unsafe_when_deployed(self) -> Self:
        if self.deployed():
            problems = [p for check in DEPLOYED_CHECKS for p in check(self)]
            if problems:
                raise UnsafeSettings(f"S2_ENV={self.env} refuses to start: " + "; ".join(problems))
        return self

    def production(self) -> bool:
        return self.env == "production"

    def jwt_hs256_secret(self) -> str | None:
        """The shared secret HS256 tokens are verified with, or None: HS256 is off when
        S2_JWT_SECRET is empty, or unset while S2_JWT_JWKS_URL is (a project on signing keys
        alone must not accept tokens signed with the public dev default)."""
        secret = self.jwt_secret.get_secret_value()
        if not secret or (self.jwt_jwks_url and "jwt_secret" not in self.model_fields_set):
            return None
        return secret

    def deployed(self) -> bool:
        """Staging or production: real tenants' data, reachable from the internet."""
        return self.env in DEPLOYED

    def default_limits(self) -> Limits:
        """The guard's limits for a company that has set none of its own."""
        return Limits(
            quest_cap=_micros(self.guard_quest_cap_usd),
            quest_ceiling=_micros(self.guard_quest_ceiling_usd),
            daily_budget=_micros(self.guard_daily_usd),
            monthly_budget=_micros(self.guard_monthly_usd),
            warn_pct=self.guard_warn_pct,
            slow_pct=self.guard_slow_pct,
            halt_pct=self.guard_halt_pct,
            quests_per_minute=self.guard_quests_per_minute,
            max_running_quests=self.guard_max_running_quests,
        )


def normal_origin(text: str) -> str:
    """A browser origin as a browser sends it (lower-case scheme and host, no default port),
    or ``*``; ValueError naming what is wrong for anything else (a path, a user, a query)."""
    text = text.strip()
    if text == "*":
        return text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"S2_CORS_ORIGINS: {text[:100]!r} is not an origin") from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if (
        scheme not in ("http", "https")
        or not host
        or parts.username is not None
        or parts.path
        or parts.query
        or parts.fragment
        or "?" in text
        or "#" in text
    ):
        raise ValueError(
            f"S2_CORS_ORIGINS: {text[:100]!r} is not an origin (scheme://host[:port], no path)"
        )
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def _micros(usd: Decimal) -> int:
    return int(usd * 1_000_000)


# --- what staging and production refuse -------------------------------------------------
# Each check reads the settings and names what is wrong, never a value: the secrets below are
# public in this repository (or guessable) and the URLs' defaults point at a laptop.


def _jwt_secret(s: Settings) -> list[str]:
    secret = s.jwt_secret.get_secret_value()
    if s.jwt_jwks_url and s.jwt_hs256_secret() is None:
        return []  # signing keys alone: HS256 is off
    if "jwt_secret" not in s.model_fields_set or not secret:
        return [
            "S2_JWT_SECRET is not set (the dev default is public) and neither is S2_JWT_JWKS_URL"
        ]
    if secret == DEV_JWT_SECRET:
        return ["S2_JWT_SECRET is the public dev default"]
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return [f"S2_JWT_SECRET is shorter than {MIN_SECRET_BYTES} bytes"]
    return []


def _jwt_jwks(s: Settings) -> list[str]:
    if not s.jwt_jwks_url:
        return []
    problems = [https_problem("S2_JWT_JWKS_URL", s.jwt_jwks_url)]
    if not s.jwt_issuer:
        problems.append("S2_JWT_ISSUER is not set (required with S2_JWT_JWKS_URL)")
    return [p for p in problems if p]


def _vault_keys(s: Settings) -> list[str]:
    try:
        key_source_from_settings(
            s.vault_keys.get_secret_value() if s.vault_keys else None, s.vault_keys_file
        ).load()
    except VaultError as exc:
        return [str(exc)]
    return []


def _oauth_flow(s: Settings) -> list[str]:
    problems = [https_problem("S2_PUBLIC_URL", s.public_url)]
    secret = s.oauth_state_secret.get_secret_value()
    if "oauth_state_secret" not in s.model_fields_set or secret == DEV_OAUTH_STATE_SECRET:
        problems.append("S2_OAUTH_STATE_SECRET is not set (the dev default is public)")
    elif len(secret.encode()) < MIN_SECRET_BYTES:
        problems.append(f"S2_OAUTH_STATE_SECRET is shorter than {MIN_SECRET_BYTES} bytes")
    return [p for p in problems if p]


def _integrations(s: Settings) -> list[str]:
    return [
        problem
        for name, p in PROVIDERS.items()
        if name in s.integrations
        for problem in integration_settings.deployed_problems(p, s.integrations[name])
    ]


def _split(name: str, url: str) -> SplitResult | str:
    """The URL's parts, or what is wrong with it (never the URL: it may hold a password)."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return f"{name} is not a valid URL"
    return parts


def _redis_tls(s: Settings) -> list[str]:
    url = _split("S2_REDIS_URL", s.redis_url)
    if isinstance(url, str):
        return [url]
    if url.scheme.lower() != "rediss":
        return ["S2_REDIS_URL must be a rediss:// URL (TLS)"]
    if any(v.lower() == "none" for v in parse_qs(url.query).get("ssl_cert_reqs", [])):
        return ["S2_REDIS_URL must not turn off certificate checks (ssl_cert_reqs=none)"]
    return []


def postgres_tls_problem(name: str, url: str) -> str | None:
    """What keeps the Postgres URL in variable ``name`` from being TLS, if anything."""
    try:
        sslmode = conninfo_to_dict(url).get("sslmode")
    except ProgrammingError:
        return f"{name} is not a valid Postgres URL"
    if sslmode not in TLS_SSLMODES:
        return f"{name} must set sslmode=verify-full (or verify-ca, require): TLS"
    return None


def _postgres_tls(s: Settings) -> list[str]:
    problems = [
        postgres_tls_problem("S2_DATABASE_URL", s.database_url),
        postgres_tls_problem("S2_ADMIN_DATABASE_URL", s.admin_database_url),
        # Engineers' machines set it; the app's machines need not.
        "operator_database_url" in s.model_fields_set
        and postgres_tls_problem("S2_OPERATOR_DATABASE_URL", s.operator_database_url),
    ]
    return [p for p in problems if p]


def https_problem(name: str, url: str | None) -> str | None:
    if url is None:
        return None
    parts = _split(name, url)
    if isinstance(parts, str):
        return parts
    return None if parts.scheme.lower() == "https" else f"{name} must be an https:// URL (TLS)"


def _https(s: Settings) -> list[str]:
    problems = [
        https_problem("ANTHROPIC_BASE_URL", s.anthropic_base_url),
        https_problem("SENTRY_DSN", s.sentry_dsn.get_secret_value() if s.sentry_dsn else None),
    ]
    return [p for p in problems if p]


def _smtp_tls(s: Settings) -> list[str]:
    server = s.mail_server()
    if server is not None and server.security == "plain":
        return ["S2_SMTP_URL must be smtp+starttls:// or smtps:// (TLS)"]
    return []


def _cors(s: Settings) -> list[str]:
    if "*" in s.cors_origins:
        return ["S2_CORS_ORIGINS must list origins, not * (any web page could call the API)"]
    return []


DEPLOYED_CHECKS: tuple[Callable[[Settings], list[str]], ...] = (
    _jwt_secret,
    _jwt_jwks,
    _vault_keys,
    _integrations,
    _oauth_flow,
    _redis_tls,
    _postgres_tls,
    _https,
    _smtp_tls,
    _cors,
)


# --- the operator tools' own settings ---------------------------------------------------
# Read where the tool runs, which need not hold the application's settings: the backup host
# has the backup's alone. Each variable is named as it is documented (DEPLOY.md), exactly,
# case and all.

# Each field is read from its documented variable only (no populate_by_name: the field's
# own name is no second, undocumented variable).
TOOL_CONFIG = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=True)
BACKUP_ENV = "S2_ENV"
BACKUP_DATABASE_URL = "S2_BACKUP_DATABASE_URL"
BACKUP_DIR = "S2_BACKUP_DIR"
BACKUP_KEEP_DAYS = "S2_BACKUP_KEEP_DAYS"


class UnusableToolSetting(ConfigurationError):
    """An operator tool's setting cannot be used. The message names the variable and what is
    wrong, in one line, never its value. Not a ``ValueError``, so that pydantic lets it
    through as it is, the first one found, rather than wrapping it with the input."""


def _text(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


class BackupSettings(BaseSettings):
    """``system2 ops backup``, ``restore-test`` and ``restore``: what to dump, where to, for how
    long, and the age keys. Checked in this order; the first problem is raised as
    ``UnusableToolSetting``. The database URL's own checks (that it parses, TLS when deployed)
    are ``system2.ops.backup``'s, which parses it without ever echoing it."""

    model_config = TOOL_CONFIG

    # S2_ENV checked exactly as ``Settings`` checks it: a typo must not make production a laptop
    env: Environment = Field("dev", validation_alias=BACKUP_ENV, validate_default=True)
    database_url: SecretStr = Field(
        SecretStr(""),
        validation_alias=BACKUP_DATABASE_URL,
        validate_default=True,
        description="a BYPASSRLS or superuser role",
    )
    backup_dir: str = Field(
        "",
        validation_alias=BACKUP_DIR,
        validate_default=True,
        description="where dumps, manifests and reports live",
    )
    keep_days: int = Field(
        30,
        validation_alias=BACKUP_KEEP_DAYS,
        validate_default=True,
        description="dumps older than this are deleted, never the newest",
    )
    age_recipients: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        validation_alias="S2_BACKUP_AGE_RECIPIENTS",
        description="age public keys (age1…), separated by spaces or commas, every new dump "
        "is encrypted to",
    )
    age_identity: Path | None = Field(
        None,
        validation_alias="S2_BACKUP_AGE_IDENTITY",
        description="the age identity (private key) file that decrypts dumps",
    )

    @field_validator("env", mode="before")
    @classmethod
    def _known_env(cls, value: Any) -> Any:
        if value not in ENVIRONMENTS:
            raise UnusableToolSetting(f"{BACKUP_ENV} must be one of {', '.join(ENVIRONMENTS)}")
        return value

    @field_validator("database_url", mode="before")
    @classmethod
    def _database_url_set(cls, value: Any) -> Any:
        if not _text(value):
            raise UnusableToolSetting(f"set {BACKUP_DATABASE_URL} (a BYPASSRLS or superuser role)")
        return value

    @field_validator("backup_dir", mode="before")
    @classmethod
    def _backup_dir_set(cls, value: Any) -> Any:
        if not value:
            raise UnusableToolSetting(f"set {BACKUP_DIR} (where dumps, manifests and reports live)")
        return value

    @field_validator("keep_days", mode="before")
    @classmethod
    def _whole_days(cls, value: Any) -> int:
        try:
            days = int(value)
        except (TypeError, ValueError):
            raise UnusableToolSetting(
                f"{BACKUP_KEEP_DAYS} must be a whole number of days"
            ) from None
        if days < 1:
            raise UnusableToolSetting(f"{BACKUP_KEEP_DAYS} must be at least 1")
        return days

    @field_validator("age_recipients", mode="before")
    @classmethod
    def _split_recipients(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(r for r in re.split(r"[\s,]+", value) if r)
        return value

    @field_validator("age_identity", mode="before")
    @classmethod
    def _identity_path(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip() or None
        return value

    def deployed(self) -> bool:
        """Staging or production: no plain-text dump, and the database reached over TLS."""
        return self.env in DEPLOYED


class ReleaseSettings(BaseSettings):
    """``system2 ops deploy``, ``promote`` and ``releases``: the Fly.io CLI and its files."""

    model_config = TOOL_CONFIG

    fly_dir: Path = Field(
        Path("deploy/fly"),
        validation_alias="S2_FLY_DIR",
        description="the Fly.io app configs, <environment>.toml",
    )
    release_ledger: Path = Field(
        Path("deploy/state/releases.jsonl"),
        validation_alias="S2_RELEASE_LEDGER",
        description="append-only JSON lines, one per deploy: the gate promote reads",
    )
    fly: str = Field(
        "fly",
        validation_alias="FLY",
        description="the Fly CLI's executable; the tests give a stand-in that records its arguments",
    )


class SmokeSettings(BaseSettings):
    """``system2 ops smoke``, ``deploy`` and ``promote``: who the smoke test runs as. Each is
    checked where it is used, as an option given on the command line takes its place."""

    model_config = TOOL_CONFIG

    token: SecretStr | None = Field(
        None, validation_alias="S2_SMOKE_TOKEN", description="a session of the smoke user"
    )
    user: str | None = Field(
        None,
        validation_alias="S2_SMOKE_USER",
        description="outside production: the smoke user, whose token is minted with S2_JWT_SECRET",
    )
    company: str | None = Field(
        None, validation_alias="S2_SMOKE_COMPANY", description="the smoke company's id"
    )
