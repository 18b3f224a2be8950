"""Supabase's asymmetric session tokens: the ingress verifies ES256 and RS256 tokens with the
project's signing keys, fetched from a loopback stand-in of its JWKS endpoint
(tests/jwks_server.py), through the real ingress HTTP API on the machine's Postgres and Redis.

Every refusal is a 401 with ``WWW-Authenticate: Bearer``; the keys are cached, refetched on an
unknown ``kid`` at most once per ``S2_JWKS_MIN_REFRESH_S``, kept while Supabase misbehaves,
and rotated without a restart.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from runtime.settings import DEV_JWT_SECRET, Settings
from standins.supabase_jwks import SLOW_S, JwksStandin, Mode
from system2.dev_tokens import mint
from system2.procs import Proc, free_port, wait_http
from tests.conftest import JWT_SECRET, Tenant, settings_env, system2
from tests.ingress_server import ingress_process
from tests.jwks_server import (
    ISSUER,
    Key,
    b64,
    hs256_signed_with,
    jwks_server,
    publish,
    session_claims,
)
from tests.support import ingress_client, wait_for

ES = Key.ec("es-key-1")
RS = Key.rsa("rs-key-1")
OTHER_ES = Key.ec("es-key-1")  # same kid, another key: a forger's


@pytest.fixture(autouse=True)
def no_jwt_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test gives: a variable of the shell would count as set."""
    for name in ("S2_JWT_SECRET", "S2_JWT_JWKS_URL", "S2_JWT_ISSUER", "S2_JWT_AUDIENCE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def supabase() -> Iterator[JwksStandin]:
    with jwks_server() as server:
        publish(server, ES, RS)
        yield server


def jwks_settings(
    base: Settings,
    url: str,
    *,
    secret: str | None = None,
    ttl_s: float = 600,
    min_refresh_s: float = 30,
) -> Settings:
    """The session's settings on signing keys (and the shared secret only if given)."""
    given: dict[str, Any] = {
        "env": "test",
        "database_url": base.database_url,
        "admin_database_url": base.admin_database_url,
        "redis_url": base.redis_url,
        "jwt_jwks_url": url,
        "jwt_issuer": ISSUER,
        "jwks_ttl_s": ttl_s,
        "jwks_min_refresh_s": min_refresh_s,
        "jwks_timeout_s": 1.0,
    }
    if secret is not None:
        given["jwt_secret"] = secret
    return Settings(**given)


@contextmanager
def ingress(settings: Settings, rds: redis.Redis) -> Iterator[TestClient]:
    with ingress_client(settings, rds) as client:
        yield client


def call(client: TestClient, tenant: Tenant, token: str) -> httpx.Response:
    """The audit trail, which the company's admin may read: 200 once the token is taken."""
    return client.get(
        f"/v1/companies/{tenant.id}/activity", headers={"Authorization": f"Bearer {token}"}
    )


def assert_refused(answer: httpx.Response) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"].lower().startswith("bearer")


# --- accepted ---------------------------------------------------------------------------


def test_es256_and_rs256_session_tokens_are_accepted(
    settings: Settings, rds: redis.Redis, supabase: JwksStandin, tenant: Tenant
) -> None:
    with ingress(jwks_settings(settings, supabase.url), rds) as client:
        assert call(client, tenant, ES.token(tenant.admin)).status_code == 200
        assert call(client, tenant, RS.token(tenant.admin)).status_code == 200
        # a valid token of a user who is not a member: authenticated, then refused
        assert call(client, tenant, ES.token("stranger")).status_code == 403
        # the member is a member, not an admin: the route's own refusal
        assert call(client, tenant, ES.token(tenant.member)).status_code == 403
    assert supabase.count() == 1  # one fetch served them all


def test_both_modes_together_while_a_project_migrates_its_keys(
    settings: Settings, rds: redis.Redis, supabase: JwksStandin, tenant: Tenant
) -> None:
    s = jwks_settings(settings, supabase.url, secret=JWT_SECRET)
    with ingress(s, rds) as client:
        assert call(client, tenant, mint(JWT_SECRET, tenant.admin, issuer=ISSUER)).is_success
        assert call(client, tenant, ES.token(tenant.admin)).status_code == 200
        # the issuer is checked on the legacy tokens too
        assert_refused(call(client, tenant, mint(JWT_SECRET, tenant.admin)))
        # algorithm confusion: the public key's bytes as the HMAC secret
        assert_refused(call(client, tenant, hs256_signed_with(ES.public_pem(), tenant.admin)))
        confused = hs256_signed_with(ES.public_pem(), tenant.admin, kid=ES.kid)
        assert_refused(call(client, tenant, confused))


# --- refused ----------------------------------------------------------------------------


SYMMETRIC = b"a-symmetric-key-published-in-the-jwks-0123456789"
SHORT_RSA = Key.rsa("rs-1024", bits=1024)
WRONG_CURVE = Key.ec("es-p384", ec.SECP384R1(), alg="ES384")


REFUSED: dict[str, Callable[[str], str]] = {
    "alg none": lambda user: _unsigned(user, kid=ES.kid),
    "HS256 without a secret": lambda user: mint(DEV_JWT_SECRET, user, issuer=ISSUER),
    "HS256 with the tests' secret, not configured": lambda user: mint(JWT_SECRET, user),
    "HS256 keyed with the public key (confusion)": lambda user: hs256_signed_with(
        ES.public_pem(), user, kid=ES.kid
    ),
    "HS256 keyed with the RSA public key": lambda user: hs256_signed_with(
        RS.public_pem(), user, kid=RS.kid
    ),
    "no kid": lambda user: ES.token(user, kid=None),
    "unknown kid": lambda user: ES.token(user, kid="made-up"),
    "a forger's key under a known kid": OTHER_ES.token,
    "ES256 naming the RSA key": lambda user: ES.token(user, kid=RS.kid),
    "RS256 naming the EC key": lambda user: RS.token(user, kid=ES.kid),
    "RS512 by the RSA key (alg not the key's)": lambda user: RS.token(user, alg="RS512"),
    "PS256 by the RSA key": lambda user: RS.token(user, alg="PS256"),
    "a published symmetric key": lambda user: _hs256_jwt(user, "sym-1"),
    "an RSA key shorter than 2048 bits": SHORT_RSA.token,
    "an EC key not on P-256": WRONG_CURVE.token,
    "expired": lambda user: ES.token(user, exp=int(time.time()) - 120),
    "no exp": lambda user: ES.token(user, exp=None),
    "wrong audience": lambda user: ES.token(user, aud="anon"),
    "no audience": lambda user: ES.token(user, aud=None),
    "wrong issuer": lambda user: ES.token(user, iss="https://other-project.supabase.co/auth/v1"),
    "no issuer": lambda user: ES.token(user, iss=None),
    "no sub": lambda user: ES.token(user, sub=None),
    "garbage": lambda user: "not.a.jwt",
}


def _unsigned(user: str, kid: str) -> str:
    return jwt.encode(session_claims(user), None, algorithm="none", headers={"kid": kid})


def _hs256_jwt(user: str, kid: str) -> str:
    return hs256_signed_with(SYMMETRIC, user, kid=kid)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_every_kind_of_bad_token_is_401(
    settings: Settings, rds: redis.Redis, supabase: JwksStandin, tenant: Tenant
) -> None:
    supabase.keys = [
        ES.jwk(),
        RS.jwk(),
        {"kty": "oct", "kid": "sym-1", "k": b64(SYMMETRIC), "alg": "HS256", "use": "sig"},
        SHORT_RSA.jwk(),
        WRONG_CURVE.jwk(),
        Key.ec("ec-says-rs256").jwk(alg="RS256"),
        Key.ec("encryption").jwk(use="enc"),
    ]
    with ingress(jwks_settings(settings, supabase.url), rds) as client:
        assert call(client, tenant, ES.token(tenant.admin)).status_code == 200
        for kind, make in REFUSED.items():
            answer = call(client, tenant, make(tenant.admin))
            assert answer.status_code == 401, (kind, answer.text)
            assert answer.headers["www-authenticate"].lower().startswith("bearer"), kind
        # a body is never read for a refused token
        posted = client.post(
            f"/v1/companies/{tenant.id}/quests",
            json={"goal": "hello"},
            headers={"Authorization": f"Bearer {ES.token(tenant.admin, kid='made-up')}"},
        )
        assert_refused(posted)


# --- the key set over time --------------------------------------------------------------


def test_a_rotated_key_works_without_a_restart(
    settings: Settings, rds: redis.Redis, supabase: JwksStandin, tenant: Tenant
) -> None:
    new = Key.ec("es-key-2")
    publish(supabase, ES)
    with ingress(jwks_settings(settings, supabase.url, ttl_s=2, min_refresh_s=1), rds) as client:
        assert call(client, tenant, ES.token(tenant.admin)).status_code == 200
        publish(supabase, ES, new)  # the new key published, the old one kept a while
        time.sleep(1.2)
        assert call(client, tenant, new.token(tenant.admin)).status_code == 200
        assert call(client, tenant, ES.token(tenant.admin)).status_code == 200
        publish(supabase, new)  # the old one removed: refused once the set is refetched
        wait_for(lambda: call(client, tenant, ES.token(tenant.admin)).status_code == 401)
        assert call(client, tenant, new.token(tenant.admin)).status_code == 200


def test_a_flood_of_made_up_kids_costs_supabase_one_request_per_interval(
    settings: Settings, rds: redis.Redis, supabase: JwksStandin, tenant: Tenant
) -> None:
    interval = 2.0
    with ingress(jwks_settings(settings, supabase.url, min_refresh_s=interval), rds) as client:
        assert call(client, tenant, ES.token(tenant.admin)).status_code == 200
        began, sent = time.monotonic(), 0
        while time.monotonic() - began < 3 * interval:
            made_up = ES.token(tenant.admin, kid=f"made-up-{uuid.uuid4().hex}")
            assert_refused(call(client, tenant, made_up))
            sent += 1
        elapsed = time.monotonic() - began
        assert call(client, tenant, RS.token(tenant.admin)).status_code == 200
    assert sent > 50
    # the first fetch, then at most one per interval begun during the flood
    assert 2 <= supabase.count() <= 1 + int(elapsed / interval) + 1, (supabase.count(), sent)


@pytest.mark.parametrize("mode", ["error", "garbage", "slow", "hangup", "empty"])
def test_the_last_good_set_is_kept_while_supabase_misbehaves(
    settings: Settings, rds: redis.Redis, supabase: JwksStandin, tenant: Tenant, mode: Mode
) -> None:
    s = jwks_settings(settings, supabase.url, ttl_s=1, min_refresh_s=1)
    with ingress(s, rds) as client:
        assert call(client, tenant, ES.token(tenant.admin)).status_code == 200
        supabase.mode = mode
        time.sleep(1.2)  # the set is stale: the next token makes us fetch it again
        began = time.monotonic()
        assert call(client, tenant, ES.token(tenant.admin)).status_code == 200
        assert time.monotonic() - began < SLOW_S  # the fetch's timeout (1 s) bounds the wait
        assert supabase.count() == 2  # it was asked, and failed
        assert call(client, tenant, RS.token(tenant.admin)).status_code == 200
        supabase.mode = "ok"  # back: a key published meanwhile is found
        new = Key.rsa("rs-key-2")
        publish(supabase, ES, RS, new)
        time.sleep(1.2)
        assert call(client, tenant, new.token(tenant.admin)).status_code == 200


def test_no_set_fetched_yet_is_503_then_it_comes(
    settings: Settings, rds: redis.Redis, supabase: JwksStandin, tenant: Tenant
) -> None:
    supabase.mode = "error"
    with ingress(jwks_settings(settings, supabase.url, min_refresh_s=1), rds) as client:
        answer = call(client, tenant, ES.token(tenant.admin))
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "1"
        supabase.mode = "ok"
        time.sleep(1.2)
        assert call(client, tenant, ES.token(tenant.admin)).status_code == 200


# --- a real ingress process -------------------------------------------------------------


def test_a_real_ingress_shares_one_fetch_and_logs_no_token(
    settings: Settings, supabase: JwksStandin, tenant: Tenant, tmp_path: Path
) -> None:
    """``system2 ingress`` configured by its environment alone: many verifications at once
    wait for one fetch; a flood of made-up kids at once costs at most one more; the HS256
    dev token is refused (no secret set); and no token reaches its log."""
    env = {
        "S2_JWT_SECRET": "",
        "S2_JWT_JWKS_URL": supabase.url,
        "S2_JWT_ISSUER": ISSUER,
        "S2_JWKS_MIN_REFRESH_S": "30",
    }
    good = [ES.token(tenant.admin) for _ in range(20)] + [RS.token(tenant.admin)] * 5
    made_up = [ES.token(tenant.admin, kid=f"made-up-{i}") for i in range(40)]

    async def statuses(url: str, tokens: list[str]) -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            answers = await asyncio.gather(
                *(
                    client.get(
                        f"/v1/companies/{tenant.id}/activity",
                        headers={"Authorization": f"Bearer {t}"},
                    )
                    for t in tokens
                )
            )
        return [a.status_code for a in answers]

    with ingress_process(settings, tmp_path, **env) as server:
        assert set(asyncio.run(statuses(server.url, good))) == {200}
        assert supabase.count() == 1
        assert set(asyncio.run(statuses(server.url, made_up))) == {401}
        assert supabase.count() == 1  # within the interval: not asked again
        assert asyncio.run(statuses(server.url, [mint(DEV_JWT_SECRET, tenant.admin)])) == [401]
        log = (tmp_path / f"ingress-{server.port}.log").read_text()
    for token in [*good, *made_up]:
        assert token not in log and token.split(".")[2] not in log


def test_dev_signing_keys_from_the_console_command_work_with_a_real_ingress(
    settings: Settings, tenant: Tenant, tmp_path: Path
) -> None:
    """``system2 token jwks`` publishes a dev key as Supabase would, ``token mint --key``
    signs ES256 with it, and an ingress on those signing keys alone takes the token; minting
    HS256 there is refused in one line."""
    key, port = tmp_path / "dev-key.pem", free_port()
    url = f"http://127.0.0.1:{port}/auth/v1/.well-known/jwks.json"
    env = {"S2_JWT_SECRET": "", "S2_JWT_JWKS_URL": url, "S2_JWT_ISSUER": ISSUER}
    served = Proc(
        "jwks",
        system2("token", "jwks", "--key", str(key), "--port", str(port)),
        env=settings_env(settings, **env),
        log_path=tmp_path / "jwks.log",
    ).start()

    def console(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            system2(*args),
            env=settings_env(settings, **env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    try:
        wait_http(url, proc=served)
        assert wait_for(lambda: f"S2_JWT_JWKS_URL={url}" in served.output())
        minted = console("token", "mint", "--user", tenant.admin, "--key", str(key))
        assert minted.returncode == 0, minted.stderr
        token = minted.stdout.strip()
        assert jwt.get_unverified_header(token)["alg"] == "ES256"
        refused = console("token", "mint", "--user", tenant.admin)
        assert refused.returncode == 1
        assert refused.stderr.strip() == (
            "error: HS256 is off (S2_JWT_SECRET is not set); mint with --key"
        )
        with ingress_process(settings, tmp_path, **env) as server:
            answer = httpx.get(
                f"{server.url}/v1/companies/{tenant.id}/activity",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert answer.status_code == 200, answer.text
    finally:
        served.stop()


def test_the_smoke_test_asks_for_a_session_where_hs256_is_off(
    settings: Settings, supabase: JwksStandin
) -> None:
    """Nothing to mint the smoke user's token with: one readable line, no request sent."""
    env = {"S2_JWT_SECRET": "", "S2_JWT_JWKS_URL": supabase.url, "S2_JWT_ISSUER": ISSUER}
    done = subprocess.run(
        system2("ops", "smoke", "--url", "http://127.0.0.1:1", "--company", str(uuid.uuid4())),
        env={**settings_env(settings, **env), "S2_SMOKE_USER": "smoke-bot"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: no smoke token: HS256 is off (S2_JWT_SECRET is not set), so set "
        "S2_SMOKE_TOKEN, a Supabase session of the smoke user"
    )


def test_a_slow_fetch_of_the_keys_holds_only_the_requests_that_need_it(
    settings: Settings, supabase: JwksStandin, tenant: Tenant, tmp_path: Path
) -> None:
    """While Supabase takes its time to answer, the ingress keeps serving: its health check
    and an HS256 caller are answered before the ES256 caller, who gets in once the keys come."""
    supabase.mode = "slow"
    env = {
        "S2_JWT_SECRET": JWT_SECRET,
        "S2_JWT_JWKS_URL": supabase.url,
        "S2_JWT_ISSUER": ISSUER,
        "S2_JWKS_TIMEOUT_S": str(SLOW_S + 5),
    }
    url = f"/v1/companies/{tenant.id}/activity"

    async def scenario(base: str) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            es256 = asyncio.create_task(
                client.get(url, headers={"Authorization": f"Bearer {ES.token(tenant.admin)}"})
            )
            while supabase.count() == 0:  # the fetch is under way
                await asyncio.sleep(0.05)
            assert (await client.get("/healthz")).status_code == 200
            hs256 = mint(JWT_SECRET, tenant.admin, issuer=ISSUER)
            answer = await client.get(url, headers={"Authorization": f"Bearer {hs256}"})
            assert answer.status_code == 200
            assert not es256.done()
            assert (await es256).status_code == 200

    with ingress_process(settings, tmp_path, **env) as server:
        asyncio.run(scenario(server.url))
    assert supabase.count() == 1
