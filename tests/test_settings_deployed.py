"""Staging and production refuse to start on a setting that must not reach them — the public
dev secrets, a missing vault key, a short secret, plain-text Redis or Postgres, an integration
left at its public dev client or reached over plain HTTP, a dev-only integration, an OAuth
callback address without TLS — naming the variable and never its value; and ``S2_ENV`` is one
of four names, not a fifth by typo."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from runtime.settings import DEV_JWT_SECRET, DEV_OAUTH_STATE_SECRET, Settings, UnsafeSettings
from vault import new_key_entry

SYSTEM2 = Path(sys.executable).parent / "system2"
JWT = secrets.token_urlsafe(48)
VAULT_KEYS = new_key_entry(datetime.now(UTC))
STATE_SECRET = secrets.token_urlsafe(48)
GITHUB_ID = "Iv1.8a61f9b3a7aba766"
GITHUB_SECRET = secrets.token_urlsafe(40)
JWKS = "auth/v1/.well-known/jwks.json"
ISSUER = "https://ref.supabase.co/auth/v1"
SAFE: dict[str, str] = {
    "S2_JWT_SECRET": JWT,
    "S2_VAULT_KEYS": VAULT_KEYS,
    "S2_PUBLIC_URL": "https://workers.example.com",
    "S2_OAUTH_STATE_SECRET": STATE_SECRET,
    "S2_REDIS_URL": "rediss://:pw@redis.internal:6380/0",
    "S2_DATABASE_URL": "postgresql://s2_app:pw@db.internal:5432/system2?sslmode=verify-full",
    "S2_ADMIN_DATABASE_URL": "host=db.internal user=postgres dbname=system2 sslmode=require",
}


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment holding none of our settings, as a fresh machine's."""
    for name in list(os.environ):
        if name.startswith(("S2_", "SENTRY_", "ANTHROPIC_")):
            monkeypatch.delenv(name)
    return monkeypatch


def load(environ: pytest.MonkeyPatch, env: str, **given: str | None) -> Settings:
    for name, value in {**SAFE, "S2_ENV": env, **given}.items():
        if value is None:
            environ.delenv(name, raising=False)
        else:
            environ.setenv(name, value)
    return Settings()


@pytest.mark.parametrize("env", ["staging", "production"])
def test_a_deployed_environment_starts_on_safe_settings(
    environ: pytest.MonkeyPatch, env: str
) -> None:
    s = load(environ, env)
    assert s.env == env and s.deployed()
    assert s.jwt_secret.get_secret_value() == JWT


# (what is changed, the variable the refusal must name, the value it must never show)
UNSAFE: dict[str, tuple[dict[str, str | None], str, str | None]] = {
    "no JWT secret": ({"S2_JWT_SECRET": None}, "S2_JWT_SECRET is not set", None),
    "the dev JWT secret": (
        {"S2_JWT_SECRET": DEV_JWT_SECRET},
        "S2_JWT_SECRET is the public dev default",
        DEV_JWT_SECRET,
    ),
    "a short JWT secret": (
        {"S2_JWT_SECRET": "hunter2-is-31-bytes-long-ok-no"},
        "S2_JWT_SECRET is shorter than 32 bytes",
        "hunter2-is-31-bytes-long-ok-no",
    ),
    "neither a JWT secret nor signing keys": (
        {"S2_JWT_SECRET": None},
        "S2_JWT_SECRET is not set (the dev default is public) and neither is S2_JWT_JWKS_URL",
        None,
    ),
    "an empty JWT secret and no signing keys": (
        {"S2_JWT_SECRET": ""},
        "S2_JWT_SECRET is not set",
        None,
    ),
    "signing keys over HTTP": (
        {
            "S2_JWT_SECRET": None,
            "S2_JWT_JWKS_URL": "http://ref.supabase.co/" + JWKS,
            "S2_JWT_ISSUER": ISSUER,
        },
        "S2_JWT_JWKS_URL must be an https:// URL (TLS)",
        None,
    ),
    "a signing keys URL that does not parse": (
        {
            "S2_JWT_SECRET": None,
            "S2_JWT_JWKS_URL": "https://[ref.supabase.co/" + JWKS,
            "S2_JWT_ISSUER": ISSUER,
        },
        "S2_JWT_JWKS_URL is not a valid URL",
        None,
    ),
    "signing keys without an issuer": (
        {"S2_JWT_SECRET": None, "S2_JWT_JWKS_URL": "https://ref.supabase.co/" + JWKS},
        "S2_JWT_ISSUER is not set (required with S2_JWT_JWKS_URL)",
        None,
    ),
    "signing keys and the dev JWT secret": (
        {
            "S2_JWT_SECRET": DEV_JWT_SECRET,
            "S2_JWT_JWKS_URL": "https://ref.supabase.co/" + JWKS,
            "S2_JWT_ISSUER": ISSUER,
        },
        "S2_JWT_SECRET is the public dev default",
        DEV_JWT_SECRET,
    ),
    "signing keys and a short JWT secret": (
        {
            "S2_JWT_SECRET": "hunter2-is-31-bytes-long-ok-no",
            "S2_JWT_JWKS_URL": "https://ref.supabase.co/" + JWKS,
            "S2_JWT_ISSUER": ISSUER,
        },
        "S2_JWT_SECRET is shorter than 32 bytes",
        "hunter2-is-31-bytes-long-ok-no",
    ),
    "no vault key": ({"S2_VAULT_KEYS": None}, "no vault keys: set S2_VAULT_KEYS", None),
    "a malformed vault key": (
        {"S2_VAULT_KEYS": "k1=c2VjcmV0LWJ1dC1zaG9ydA"},
        "S2_VAULT_KEYS: key k1 is 16 bytes",
        "c2VjcmV0LWJ1dC1zaG9ydA",
    ),
    "a vault key file that is missing": (
        {"S2_VAULT_KEYS": None, "S2_VAULT_KEYS_FILE": "/nonexistent/vault-keys"},
        "cannot read the vault key file /nonexistent/vault-keys",
        None,
    ),
    "plain Redis": (
        {"S2_REDIS_URL": "redis://:redis-pw-9f8e@redis.internal:6379/0"},
        "S2_REDIS_URL must be a rediss:// URL (TLS)",
        "redis-pw-9f8e",
    ),
    "a Redis URL that does not parse": (
        {"S2_REDIS_URL": "rediss://:pw-bad-77@[redis.internal/0"},
        "S2_REDIS_URL is not a valid URL",
        "pw-bad-77",
    ),
    "Redis without certificate checks": (
        {"S2_REDIS_URL": "rediss://:pw-5e6f@redis.internal:6380/0?ssl_cert_reqs=NONE"},
        "S2_REDIS_URL must not turn off certificate checks (ssl_cert_reqs=none)",
        "pw-5e6f",
    ),
    "the default Redis": ({"S2_REDIS_URL": None}, "S2_REDIS_URL must be a rediss://", None),
    "Postgres without sslmode": (
        {"S2_DATABASE_URL": "postgresql://s2_app:pg-pw-7a6b@db.internal/system2"},
        "S2_DATABASE_URL must set sslmode=verify-full (or verify-ca, require)",
        "pg-pw-7a6b",
    ),
    "Postgres that only prefers TLS": (
        {"S2_ADMIN_DATABASE_URL": "postgresql://postgres:pg-pw-5c4d@db/system2?sslmode=prefer"},
        "S2_ADMIN_DATABASE_URL must set sslmode=",
        "pg-pw-5c4d",
    ),
    "the default admin URL": ({"S2_ADMIN_DATABASE_URL": None}, "S2_ADMIN_DATABASE_URL", None),
    "a demo provider URL": (
        {"S2_DEMO_PROVIDER_URL": "https://tasks.example.com"},
        "S2_DEMO_* is set: the demo integration is for dev and test only",
        None,
    ),
    "a demo client secret": (
        {"S2_DEMO_CLIENT_SECRET": "demo-pw-6b5a-long-enough-to-pass"},
        "S2_DEMO_* is set: the demo integration is for dev and test only",
        "demo-pw-6b5a-long-enough-to-pass",
    ),
    "the demo integration enabled": (
        {"S2_DEMO_ENABLED": "true"},
        "the demo integration is for dev and test only",
        None,
    ),
    "GitHub with the public dev secret": (
        {"S2_GITHUB_CLIENT_ID": GITHUB_ID},
        "S2_GITHUB_CLIENT_SECRET is the public dev default",
        "github-secret",
    ),
    "GitHub with the public dev secret given": (
        {"S2_GITHUB_CLIENT_ID": GITHUB_ID, "S2_GITHUB_CLIENT_SECRET": "github-secret"},
        "S2_GITHUB_CLIENT_SECRET is the public dev default",
        "github-secret",
    ),
    "GitHub with a short secret": (
        {"S2_GITHUB_CLIENT_ID": GITHUB_ID, "S2_GITHUB_CLIENT_SECRET": "gh-pw-19-bytes-7c6d"},
        "S2_GITHUB_CLIENT_SECRET is shorter than 20 bytes",
        "gh-pw-19-bytes-7c6d",
    ),
    "GitHub's API over HTTP": (
        {
            "S2_GITHUB_CLIENT_ID": GITHUB_ID,
            "S2_GITHUB_CLIENT_SECRET": GITHUB_SECRET,
            "S2_GITHUB_PROVIDER_URL": "http://api.github.example.com",
        },
        "S2_GITHUB_PROVIDER_URL must be an https:// URL (TLS)",
        GITHUB_SECRET,
    ),
    "GitHub's OAuth over HTTP": (
        {
            "S2_GITHUB_CLIENT_ID": GITHUB_ID,
            "S2_GITHUB_CLIENT_SECRET": GITHUB_SECRET,
            "S2_GITHUB_OAUTH_URL": "http://github.example.com",
        },
        "S2_GITHUB_OAUTH_URL must be an https:// URL (TLS)",
        GITHUB_SECRET,
    ),
    "a GitHub API URL with credentials": (
        {
            "S2_GITHUB_CLIENT_ID": GITHUB_ID,
            "S2_GITHUB_CLIENT_SECRET": GITHUB_SECRET,
            "S2_GITHUB_PROVIDER_URL": "https://ted:gh-url-pw-1a2b@api.github.example.com",
        },
        "S2_GITHUB_PROVIDER_URL must not carry a user or password",
        "gh-url-pw-1a2b",
    ),
    "a GitHub OAuth URL with credentials": (
        {
            "S2_GITHUB_CLIENT_ID": GITHUB_ID,
            "S2_GITHUB_CLIENT_SECRET": GITHUB_SECRET,
            "S2_GITHUB_OAUTH_URL": "https://ted:gh-url-pw-3c4d@github.example.com",
        },
        "S2_GITHUB_OAUTH_URL must not carry a user or password",
        "gh-url-pw-3c4d",
    ),
    "GitHub enabled without a client id": (
        {"S2_GITHUB_ENABLED": "true", "S2_GITHUB_CLIENT_SECRET": GITHUB_SECRET},
        "S2_GITHUB_CLIENT_ID is not set",
        GITHUB_SECRET,
    ),
    "Slack with the public dev secret": (
        {"S2_SLACK_CLIENT_ID": "1234567890.0987654321"},
        "S2_SLACK_CLIENT_SECRET is the public dev default",
        "slack-secret",
    ),
    "CORS for any web page": (
        {"S2_CORS_ORIGINS": "*"},
        "S2_CORS_ORIGINS must list origins, not *",
        None,
    ),
    "the public URL over HTTP": (
        {"S2_PUBLIC_URL": "http://workers.example.com"},
        "S2_PUBLIC_URL must be an https:// URL (TLS)",
        None,
    ),
    "the default public URL": (
        {"S2_PUBLIC_URL": None},
        "S2_PUBLIC_URL must be an https:// URL (TLS)",
        None,
    ),
    "no OAuth state secret": (
        {"S2_OAUTH_STATE_SECRET": None},
        "S2_OAUTH_STATE_SECRET is not set (the dev default is public)",
        None,
    ),
    "the dev OAuth state secret": (
        {"S2_OAUTH_STATE_SECRET": DEV_OAUTH_STATE_SECRET},
        "S2_OAUTH_STATE_SECRET is not set (the dev default is public)",
        DEV_OAUTH_STATE_SECRET,
    ),
    "a short OAuth state secret": (
        {"S2_OAUTH_STATE_SECRET": "state-pw-is-31-bytes-long-5e6f"},
        "S2_OAUTH_STATE_SECRET is shorter than 32 bytes",
        "state-pw-is-31-bytes-long-5e6f",
    ),
    "Claude over HTTP": (
        {"ANTHROPIC_BASE_URL": "http://claude.internal"},
        "ANTHROPIC_BASE_URL must be an https:// URL (TLS)",
        None,
    ),
    "mail without TLS": (
        {"S2_SMTP_URL": "smtp://notices:smtp-pw-7a1b@mail.example.com:25"},
        "S2_SMTP_URL must be smtp+starttls:// or smtps:// (TLS)",
        "smtp-pw-7a1b",
    ),
    "Sentry over HTTP": (
        {"SENTRY_DSN": "http://dsn-key-3e2f@sentry.internal/1"},
        "SENTRY_DSN must be an https:// URL (TLS)",
        "dsn-key-3e2f",
    ),
}


@pytest.mark.parametrize("env", ["staging", "production"])
@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_an_unsafe_setting_is_refused_by_name_never_by_value(
    environ: pytest.MonkeyPatch, env: str, case: str
) -> None:
    given, named, secret = UNSAFE[case]
    with pytest.raises(UnsafeSettings) as refused:
        load(environ, env, **given)
    message = str(refused.value)
    assert message.startswith(f"S2_ENV={env} refuses to start: ")
    assert named in message
    assert secret is None or secret not in message


@pytest.mark.parametrize("env", ["staging", "production"])
def test_a_deployed_environment_starts_on_signing_keys_alone_or_with_the_secret(
    environ: pytest.MonkeyPatch, env: str
) -> None:
    """A project on Supabase's signing keys needs no shared secret, and HS256 is then off;
    one migrating keys sets both."""
    keys = {"S2_JWT_JWKS_URL": "https://ref.supabase.co/" + JWKS, "S2_JWT_ISSUER": ISSUER}
    alone = load(environ, env, S2_JWT_SECRET=None, **keys)
    assert alone.jwt_jwks_url == keys["S2_JWT_JWKS_URL"] and alone.jwt_issuer == ISSUER
    assert alone.jwt_hs256_secret() is None
    both = load(environ, env, **keys)
    assert both.jwt_hs256_secret() == JWT


def test_a_laptop_on_signing_keys_does_not_take_the_dev_secret(
    environ: pytest.MonkeyPatch,
) -> None:
    environ.setenv("S2_JWT_JWKS_URL", "http://127.0.0.1:9999/" + JWKS)
    assert Settings().jwt_hs256_secret() is None
    environ.delenv("S2_JWT_JWKS_URL")
    assert Settings().jwt_hs256_secret() == DEV_JWT_SECRET


def test_several_problems_are_named_together(environ: pytest.MonkeyPatch) -> None:
    given: dict[str, str | None] = {
        "S2_PUBLIC_URL": "http://workers.example.com",
        "S2_GITHUB_CLIENT_ID": GITHUB_ID,
        "S2_GITHUB_OAUTH_URL": "http://github.example.com",
        "S2_DEMO_PROVIDER_URL": "https://tasks.example.com",
    }
    with pytest.raises(UnsafeSettings) as refused:
        load(environ, "production", **given)
    message = str(refused.value)
    for named in (
        "S2_PUBLIC_URL must be",
        "S2_GITHUB_OAUTH_URL must be",
        "S2_GITHUB_CLIENT_SECRET is the public dev default",
        "the demo integration is for dev and test only",
    ):
        assert named in message
    assert "github-secret" not in message and "example.com" not in message


@pytest.mark.parametrize("env", ["staging", "production"])
def test_an_integration_that_is_not_configured_is_not_offered_and_not_refused(
    environ: pytest.MonkeyPatch, env: str
) -> None:
    s = load(environ, env)
    for name in ("github", "slack", "demo"):
        assert s.integration(name).enabled is False, name


def test_an_integration_can_be_turned_off_with_its_client_id_kept(
    environ: pytest.MonkeyPatch,
) -> None:
    s = load(
        environ,
        "production",
        S2_GITHUB_CLIENT_ID=GITHUB_ID,
        S2_GITHUB_OAUTH_URL="http://github.example.com",
        S2_GITHUB_ENABLED="false",
    )
    assert s.integration("github").enabled is False


def test_a_configured_github_is_offered_in_production(environ: pytest.MonkeyPatch) -> None:
    s = load(
        environ, "production", S2_GITHUB_CLIENT_ID=GITHUB_ID, S2_GITHUB_CLIENT_SECRET=GITHUB_SECRET
    )
    github = s.integration("github")
    assert github.enabled and github.client_id == GITHUB_ID
    assert github.client_secret.get_secret_value() == GITHUB_SECRET
    assert (github.api_url, github.oauth_url) == ("https://api.github.com", "https://github.com")
    assert s.integration("slack").enabled is False
    assert s.public_url == "https://workers.example.com"


@pytest.mark.parametrize("env", ["dev", "test"])
def test_a_laptop_or_a_test_run_keeps_the_dev_defaults(
    environ: pytest.MonkeyPatch, env: str
) -> None:
    environ.setenv("S2_ENV", env)
    s = Settings()
    assert s.jwt_secret.get_secret_value() == DEV_JWT_SECRET
    assert s.redis_url.startswith("redis://")
    assert s.oauth_state_secret.get_secret_value() == DEV_OAUTH_STATE_SECRET
    assert s.public_url.startswith("http://")
    for name in ("github", "slack", "demo"):
        assert s.integration(name).enabled, name


@pytest.mark.parametrize("typo", ["prod", "Production", "stage", ""])
def test_an_unknown_environment_is_refused(environ: pytest.MonkeyPatch, typo: str) -> None:
    with pytest.raises(ValidationError) as refused:
        load(environ, typo)
    (error,) = refused.value.errors()
    assert error["loc"] == ("env",)


def system2(args: list[str], **env: str | None) -> subprocess.CompletedProcess[str]:
    """``system2 ARGS`` in a fresh environment of just these variables (and PATH)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("S2_", "SENTRY_"))}
    base.pop("ANTHROPIC_BASE_URL", None)
    merged: dict[str, Any] = {**base, **SAFE, **env}
    return subprocess.run(
        [str(SYSTEM2), *args],
        env={k: v for k, v in merged.items() if v is not None},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [
        ["ingress", "--port", "1"],  # port 1: were it to start, it could not listen
        ["worker", "--processes", "1"],
        ["migrate"],
        ["ops", "run-worker", "--health-port", "1", "--processes", "1"],
    ],
)
def test_every_process_refuses_to_start_in_production_on_the_dev_jwt_secret(
    command: list[str],
) -> None:
    """The defect: with S2_ENV=production and no S2_JWT_SECRET the ingress started and took
    tokens signed with the dev default that is in this repository."""
    for secret in (None, DEV_JWT_SECRET):
        done = system2(command, S2_ENV="production", S2_JWT_SECRET=secret)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("error: S2_ENV=production refuses to start: S2_JWT_SECRET is ")
        assert DEV_JWT_SECRET not in done.stderr + done.stdout


def test_a_typo_in_s2_env_is_one_readable_line() -> None:
    done = system2(["ingress", "--port", "1"], S2_ENV="prod")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: invalid settings: S2_ENV: Input should be 'dev', 'test', 'staging' or 'production'"
    )


def test_plain_redis_in_staging_names_the_variable_not_the_password() -> None:
    done = system2(
        ["worker", "--processes", "1"],
        S2_ENV="staging",
        S2_REDIS_URL="redis://:s3cret-redis-pw@10.0.0.5:6379/0",
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: S2_ENV=staging refuses to start: S2_REDIS_URL must be a rediss:// URL (TLS)"
    )


def test_an_smtp_url_without_tls_in_production_names_the_variable_not_the_password() -> None:
    done = system2(
        ["incident", "status", "00000000-0000-0000-0000-000000000000"],
        S2_ENV="production",
        S2_SMTP_URL="smtp://notices:smtp-pw-9c8d@mail.example.com",
    )
    assert done.returncode == 1
    assert "S2_SMTP_URL must be smtp+starttls:// or smtps:// (TLS)" in done.stderr
    assert "smtp-pw-9c8d" not in done.stderr and "notices" not in done.stderr


def test_an_unreadable_smtp_url_is_one_line_without_the_password() -> None:
    done = system2(
        ["incident", "status", "00000000-0000-0000-0000-000000000000"],
        S2_SMTP_URL="smpt://notices:smtp-pw-5e6f@mail.example.com",
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: S2_SMTP_URL must be an smtp://, smtp+starttls:// or smtps:// URL"
    )


def test_the_production_env_example_is_accepted_once_its_placeholders_are_filled(
    environ: pytest.MonkeyPatch,
) -> None:
    example = Path(__file__).parent.parent / "deploy" / "production.env.example"

    def filled(name: str, value: str) -> str:
        if "<" not in value:
            return value
        if name == "S2_VAULT_KEYS":
            return VAULT_KEYS
        if name.endswith("SECRET"):  # a secret long enough for its check
            return secrets.token_urlsafe(48)
        return re.sub(r"<[^>]*>", "x", value)

    values = {}
    for line in example.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = filled(name, value)
    needed = {
        "S2_ENV",
        "S2_JWT_SECRET",
        "S2_VAULT_KEYS",
        "S2_REDIS_URL",
        "S2_PUBLIC_URL",
        "S2_OAUTH_STATE_SECRET",
    }
    assert not needed - set(values), f"the example lacks {sorted(needed - set(values))}"
    for name, value in values.items():
        environ.setenv(name, value)
    s = Settings()
    assert s.production()
    assert s.database_url.endswith("sslmode=verify-full&sslrootcert=/etc/ssl/supabase-ca.crt")
    assert s.public_url.startswith("https://")
    offered = {name for name in ("github", "slack", "demo") if s.integration(name).enabled}
    assert offered == {
        name for name in ("github", "slack") if f"S2_{name.upper()}_CLIENT_ID" in values
    }
