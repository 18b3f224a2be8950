"""The one redaction function: planted secrets never survive it, ordinary data is untouched.

Property tests plant secrets of every kind the module docstring lists inside random nested
structures (under a telling key, or by shape inside free text) and check that the rendered
result holds none of them; and check that data with no secret in it comes back equal.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.logs import redact_processor
from runtime.redact import REDACTED, is_secret_key, redact, redact_text
from vault import MemoryEncryptionCounter, Secret, Vault, describe, new_key_entry, parse_keyring
from vault.webhook_secrets import new_secret

ENTRY = new_key_entry(datetime.now(UTC))
VAULT = Vault(parse_keyring(ENTRY, source="test"), MemoryEncryptionCounter())


def ciphertext() -> bytes:
    return VAULT.encrypt(
        Secret("demo_at_" + secrets.token_urlsafe(12)),
        company_id=uuid.uuid4(),
        integration="demo",
        credential_id=f"{uuid.uuid4()}/access_token",
    )


def token(n: int = 24) -> str:
    return secrets.token_urlsafe(n)


def jwt() -> str:
    def part(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'sub': token(6)})}.{token(32)}"


# (secret, how it is written into text): each shape the redactor recognises in free text.
SHAPED = [
    lambda: (s := f"Ab1{token()}", f"Authorization: Bearer {s}"),
    lambda: (s := f"Zz9{token()}", f"curl -H 'authorization: bearer {s}'"),
    lambda: (s := base64.b64encode(f"ops:{token()}".encode()).decode(), f"Basic {s}"),
    lambda: (s := jwt(), f"token was {s}, expired"),
    lambda: (s := f"sk-ant-api03-{token()}", f"key {s} rejected"),
    lambda: (s := f"demo_at_{token()}", f"access {s}"),
    lambda: (s := f"demo_rt_{token()}", f"refresh {s}"),
    lambda: (s := f"ghp_{secrets.token_hex(18)}", f"github {s}"),
    lambda: (s := f"xoxb-{secrets.token_hex(12)}", f"slack {s}"),
    lambda: (s := new_secret().reveal(), f"webhook secret {s}!"),
    lambda: (s := f"xoxe.xoxb-1-{secrets.token_hex(20)}", f"slack rotating {s}"),
    lambda: (s := f"xoxe-1-{secrets.token_hex(30)}", f"slack refresh {s}"),
    lambda: (s := f"ghu_{secrets.token_hex(18)}", f"github user token {s}"),
    lambda: (s := f"ghr_{secrets.token_hex(38)}", f"github refresh {s}"),
    lambda: (s := f"ya29.{token()}", f"google {s}"),
    lambda: (s := f"sk_live_{secrets.token_hex(12)}", f"stripe {s}"),
    lambda: (s := token(12), f"postgresql://app:{s}@db.internal:5432/system2"),
    lambda: (s := token(12), f"https://{s}@o1.ingest.sentry.io/42"),
    lambda: (s := token(12), f"password={s}&user=bob"),
    lambda: (s := token(12), f"{{'refresh_token': '{s}', 'scope': 'tasks'}}"),
    lambda: (s := token(12), f'{{"client_secret": "{s}"}}'),
    lambda: (s := token(12), f"Cookie: session={s}; theme=dark"),
    lambda: (lambda e: (e.split("=", 1)[1], f"keys: {e}"))(new_key_entry(datetime.now(UTC))),
    lambda: (s := base64.b64encode(secrets.token_bytes(32)).decode(), f"raw key {s} end"),
    lambda: (s := token(32), f"opaque {s}"),
]
SECRET_KEY_NAMES = [
    "password",
    "DB_PASSWORD",
    "access_token",
    "Refresh-Token",
    "id_token",
    "client_secret",
    "clientSecret",
    "api_key",
    "X-Api-Key",
    "Authorization",
    "cookie",
    "Set-Cookie",
    "S2_VAULT_KEYS",
    "SENTRY_DSN",
    "secret",
    "private_key",
    "credentials",
]
SAFE_KEYS = st.sampled_from(
    [
        "quest_id",
        "company_id",
        "step",
        "status",
        "reason",
        "input_tokens",
        "output_tokens",
        "max_tokens",
        "cache_read_input_tokens",
        "token_type",
        "idempotency_key",
        "key_id",
        "credential_id",
        "cost_usd_micros",
        "goal",
        "path",
        "event",
        "model",
    ]
)
SAFE_TEXT = (
    st.sampled_from(
        [
            "Order new chairs for the Berlin office",
            "Basic information about the team's functionality",
            "bearer tokens are short-lived",
            "step 3 of 20 done",
            "claude-sonnet-5-5",
            "/work/main/.venv/lib/python3.11/site-packages/sentry_sdk/integrations/starlette.py",
            "2026-11-29T10:00:00+00:00",
            "s2v1:k20261129abcd1234:61 bytes",
            "GET /v1/companies/{company_id}/quests 202",
            "the database is unavailable; nothing was done, retry later",
            '{"token_type": "Bearer", "expires_in": 3600, "max_tokens": 1024}',
            "max_tokens=1024 input_tokens=12 output_tokens=7",
            "key_id=k20261129abcd1234",
            "http://127.0.0.1:8790/api/v1/tasks?status=open",
            "",
        ]
    )
    | st.uuids().map(str)
    | st.uuids().map(lambda u: u.hex)
    | st.integers().map(str)
)
SAFE_SCALARS = SAFE_TEXT | st.integers() | st.booleans() | st.none() | st.floats(allow_nan=False)


def nested(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.lists(inner, max_size=3).map(tuple)
            | st.dictionaries(SAFE_KEYS, inner, max_size=4)
        ),
        max_leaves=20,
    )


def plant(structure: Any, value: Any, path: list[int]) -> Any:
    """``structure`` with ``value`` placed somewhere inside it, chosen by ``path``."""
    if isinstance(structure, dict) and structure and path:
        key = sorted(structure)[path[0] % len(structure)]
        return {**structure, key: plant(structure[key], value, path[1:])}
    if isinstance(structure, list | tuple) and structure and path:
        items = list(structure)
        i = path[0] % len(items)
        items[i] = plant(items[i], value, path[1:])
        return type(structure)(items) if isinstance(structure, tuple) else items
    return {"note": structure, "payload": value}


def rendered(value: Any) -> str:
    return json.dumps(value, default=repr) + repr(value)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    structure=nested(SAFE_SCALARS),
    path=st.lists(st.integers(min_value=0, max_value=10), max_size=6),
    shape=st.integers(min_value=0, max_value=len(SHAPED) - 1),
    prefix=SAFE_TEXT,
)
def test_a_secret_shaped_value_is_gone_wherever_it_is_planted(
    structure: Any, path: list[int], shape: int, prefix: str
) -> None:
    secret, text = SHAPED[shape]()
    out = redact(plant(structure, f"{prefix} {text} (while saving)", path))
    assert secret not in rendered(out)
    assert redact(out) == out  # idempotent: Sentry's hooks may see a value twice


@settings(max_examples=300)
@given(
    structure=nested(SAFE_SCALARS),
    path=st.lists(st.integers(min_value=0, max_value=10), max_size=6),
    name=st.sampled_from(SECRET_KEY_NAMES),
    wrap=st.sampled_from(["dict", "pair", "nested"]),
)
def test_a_value_under_a_secret_key_is_gone_wherever_it_is_planted(
    structure: Any, path: list[int], name: str, wrap: str
) -> None:
    secret = "plain-" + secrets.token_hex(4)  # no shape at all: only the key gives it away
    planted: Any = {
        "dict": {name: secret},
        "pair": [name, secret],
        "nested": {name: {"value": secret, "list": [secret]}},
    }[wrap]
    out = redact(plant(structure, planted, path))
    assert secret not in rendered(out)


@settings(max_examples=200)
@given(structure=nested(SAFE_SCALARS), path=st.lists(st.integers(0, 10), max_size=6))
def test_vault_ciphertexts_and_their_repr_become_descriptions(
    structure: Any, path: list[int]
) -> None:
    ct = ciphertext()
    body = ct[-28:]  # nonce tail, ciphertext and tag: what must never be shown
    for planted in (ct, bytearray(ct), memoryview(ct), f"row={ct!r}", f"{[ct]}"):
        out = rendered(redact(plant(structure, planted, path)))
        assert repr(body)[2:-1] not in out and body.hex() not in out
    assert redact(ct) == describe(ct)
    assert redact(f"cred={ct!r}") == f"cred={describe(ct)}"


@settings(max_examples=300)
@given(structure=nested(SAFE_SCALARS))
def test_data_without_secrets_is_left_alone(structure: Any) -> None:
    assert redact(structure) == structure


def test_keys_are_matched_case_and_separator_insensitively() -> None:
    for key in ["ACCESS_TOKEN", "access-token", "AccessToken", "x_api_key", "X-API-KEY", b"cookie"]:
        assert is_secret_key(key), key
    for key in ["input_tokens", "max_tokens", "token_type", "idempotency_key", "key_id", "tokens"]:
        assert not is_secret_key(key), key
    assert redact({"Authorization": "x", "has_refresh_token": True, "password": None}) == {
        "Authorization": REDACTED,
        "has_refresh_token": True,
        "password": None,
    }


def test_text_keeps_the_scheme_and_the_key_id() -> None:
    assert redact_text("Authorization: Bearer abc123DEF456") == "Authorization: [redacted]"
    assert redact_text("got Bearer abc123DEF456") == "got Bearer [redacted]"
    kid = ENTRY.split("=", 1)[0]
    assert redact_text(ENTRY) == f"{kid}=[redacted]"
    assert redact_text("postgresql://s2:pw@db/x") == "postgresql://[redacted]@db/x"


def test_the_log_processor_redacts_every_field_and_keeps_formatter_metadata() -> None:
    secret = f"demo_rt_{token()}"
    record = object()
    with structlog.testing.capture_logs(processors=[redact_processor]) as captured:
        structlog.get_logger("t").warning(
            "refresh failed", body={"refresh_token": secret}, reason=f"answer was {secret}"
        )
    assert secret not in rendered(captured)
    assert captured[0]["event"] == "refresh failed"
    kept = redact_processor(None, "info", {"event": "x", "_record": record})
    assert kept["_record"] is record
