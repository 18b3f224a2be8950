"""The HTTP ingress under property-based fuzzing (issue 6, "bad messages and bad input").

The app is built in-process the way ``tests/test_ingress.py`` builds it, on the session's real
Postgres and Redis, with a vault (so integrations can be connected) and an async Redis (so
the live event stream is served). Hypothesis throws bodies, raw bytes, content types,
headers, tokens, path parameters and query parameters at every route the served OpenAPI
spec lists, and every answer is held to four properties:

1. never a 5xx: Redis and Postgres are up, so not even a 503;
2. a rejected (non-2xx) request changed nothing: the Dramatiq queues (``quests``,
   ``control``, ``audit``, ``maintenance`` and their delay queues: the lists and the
   ``.msgs`` hashes), the cancel flags in Redis, and each tenant's quests (ids, statuses,
   cancel requests) and integration credentials are exactly as before;
3. a rejected request's body never echoes a planted secret-looking value (``sk-ant-…``,
   ``demo_at_…``) given in its body, headers or query;
4. a rejected request answers an RFC 9457 problem (``application/problem+json``) with a
   ``detail`` string and one of the contract's codes.

The inputs the fuzzing found crashing the ingress with a 500 (NUL in text that reaches
Postgres, dates Python cannot read back, dollar amounts that overflow or round to zero, a
stream id beyond Redis's 64 bits) are kept as plain regression cases at the end of this file
(``FOUND_500S``). NUL, CR and LF are never put in header values: uvicorn's parsers reject
them before the app sees the request.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import hypothesis
import jwt
import pytest
import redis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from pydantic import SecretStr, TypeAdapter
from redis.asyncio import Redis as AsyncRedis

from ingress import problems
from ingress.schemas import MODEL_PATTERN
from ingress.submit import QuestSpec, create_quest
from messages import Actor, ActorType
from runtime.settings import Settings
from runtime.wiring import build_vault
from system2.dev_tokens import mint
from tests.conftest import JWT_SECRET, Tenant
from tests.support import InTenant, add_activity, ingress_client
from vault.keys import new_key_entry

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

QUEUE_KEYS = tuple(
    f"dramatiq:{queue}{delay}"
    for queue in ("quests", "control", "audit", "maintenance", "webhooks")
    for delay in ("", ".DQ")
)
# A fingerprint of what a request may change in one company's rows (RLS scopes it too).
ROWS_SQL = """
SELECT
  (SELECT count(*) FROM quests WHERE company_id = %(c)s),
  (SELECT md5(coalesce(string_agg(
       concat_ws('|', id, status, cancel_requested_at, first_step_enqueued_at), ',' ORDER BY id
   ), '')) FROM quests WHERE company_id = %(c)s),
  (SELECT md5(coalesce(string_agg(
       concat_ws('|', id, integration, version, updated_at), ',' ORDER BY id
   ), '')) FROM integration_credentials WHERE company_id = %(c)s)
"""


def fuzz(examples: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


# --- the ingress under test and the properties every answer is held to -----------------


@dataclass
class Answer:
    method: str
    url: str
    status: int
    headers: Mapping[str, str]
    text: str

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300

    def describe(self) -> str:
        return f"{self.method} {self.url[:300]} -> {self.status} {self.text[:500]!r}"


@dataclass
class Ingress:
    """The app in-process, the tenants and quests it knows, and a checked ``send``."""

    client: TestClient
    rds: redis.Redis
    in_tenant: InTenant
    tenant: Tenant
    other: Tenant
    stranger: str
    quests: dict[str, uuid.UUID] = field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        pipe = self.rds.pipeline(transaction=False)
        for key in QUEUE_KEYS:
            pipe.llen(key)
            pipe.hlen(key + ".msgs")
        lengths = pipe.execute()
        rows = {}
        for company in (self.tenant.id, self.other.id):
            rows[str(company)] = self.in_tenant(
                company, lambda tx, c=company: tx.one(ROWS_SQL, {"c": c})
            )
        return {
            "queues": dict(
                zip([f"{k}{m}" for k in QUEUE_KEYS for m in ("", ".msgs")], lengths, strict=True)
            ),
            "cancel flags": sorted(self.rds.scan_iter(match="s2:cancel:*", count=1000)),
            "rows": rows,
        }

    def send(
        self,
        method: str,
        url: str,
        *,
        secrets: tuple[str, ...] = (),
        json_body: Any = None,
        **kwargs: Any,
    ) -> Answer:
        """One request, checked against the four properties."""
        if json_body is not None:
            kwargs["content"] = json.dumps(json_body, allow_nan=True).encode()
            kwargs["headers"] = {"Content-Type": "application/json", **kwargs.get("headers", {})}
        before = self.state()
        answer = self._request(method, url, **kwargs)
        after = self.state()
        if currently_in_test_context():  # shown by --hypothesis-show-statistics
            hypothesis.event("status", answer.status)
        check(answer, before, after, secrets)
        return answer

    def _request(self, method: str, url: str, **kwargs: Any) -> Answer:
        kwargs["headers"] = {k: wire(v) for k, v in kwargs.get("headers", {}).items()}
        path, mark, query = url.partition("?")
        # Starlette's TestClient decodes the path twice (httpx's URL.path, then unquote) where
        # a server decodes it once: escape every "%" once more, so that the app sees the path
        # it would see behind uvicorn.
        wired = path.replace("%", "%25") + mark + query
        if method == "GET" and path.endswith("/events"):
            # A live stream does not end while its quest runs: read the status line and the
            # first chunk of a 2xx, the whole body of anything else, and hang up.
            with self.client.stream(method, wired, follow_redirects=False, **kwargs) as resp:
                if 200 <= resp.status_code < 300:
                    first = next(resp.iter_text(), "")
                    return Answer(method, url, resp.status_code, resp.headers, first)
                resp.read()
                return Answer(method, url, resp.status_code, resp.headers, resp.text)
        resp = self.client.request(method, wired, follow_redirects=False, **kwargs)
        return Answer(method, url, resp.status_code, resp.headers, resp.text)


def wire(value: str | bytes) -> bytes:
    """A header value as the server's HTTP parser would let it through: UTF-8 bytes for
    text, and no NUL, CR or LF (uvicorn refuses those before the app sees the request)."""
    raw = value.encode() if isinstance(value, str) else value
    return raw.translate(None, b"\x00\r\n")


def check(
    answer: Answer, before: dict[str, Any], after: dict[str, Any], secrets: tuple[str, ...]
) -> None:
    assert answer.status < 500, answer.describe()
    if answer.accepted:
        return
    assert after == before, f"a rejected request changed state: {answer.describe()}"
    for secret in secrets:
        assert secret not in answer.text, f"secret echoed: {answer.describe()}"
    if answer.headers.get("content-type", "").startswith("text/html"):  # a browser's page
        assert answer.url.startswith("/v1/oauth/"), answer.describe()
        assert 'data-reason="' in answer.text, answer.describe()
        return
    if answer.status >= 400 and answer.method != "HEAD":
        assert answer.headers.get("content-type", "").startswith("application/problem+json"), (
            answer.describe()
        )
        body = json.loads(answer.text)
        assert isinstance(body, dict), answer.describe()
        assert isinstance(body.get("detail"), str), answer.describe()
        assert body.get("code") in problems.CODES, answer.describe()
        assert body["status"] == answer.status, answer.describe()


def quest_in(in_tenant: InTenant, company: uuid.UUID, *, by: str, goal: str) -> uuid.UUID:
    """A quest row as a submit makes it (its first step is not queued: no worker runs)."""
    actor = Actor(type=ActorType.user, id=by)
    quest, _ = in_tenant(company, lambda tx: create_quest(tx, actor, QuestSpec(goal, "m-1")))
    return quest.id


@pytest.fixture
def ingress(
    settings: Settings,
    in_tenant: InTenant,
    rds: redis.Redis,
    tenant: Tenant,
    other_tenant: Tenant,
) -> Iterator[Ingress]:
    rds.flushdb()
    keys = SecretStr(new_key_entry(datetime.now(UTC)))
    aredis = AsyncRedis.from_url(settings.redis_url)
    vault = build_vault(settings.model_copy(update={"vault_keys": keys}), rds)
    with ingress_client(
        settings, rds, raise_server_exceptions=False, vault=vault, aredis=aredis
    ) as client:
        it = Ingress(
            client, rds, in_tenant, tenant, other_tenant, f"stranger-{uuid.uuid4().hex[:8]}"
        )
        it.quests = {
            "member": quest_in(in_tenant, tenant.id, by=tenant.member, goal="Plan the offsite"),
            "admin": quest_in(in_tenant, tenant.id, by=tenant.admin, goal="Close the books"),
            "finished": quest_in(in_tenant, tenant.id, by=tenant.member, goal="Done already"),
            "theirs": quest_in(
                in_tenant, other_tenant.id, by=other_tenant.member, goal="Globex's secret plan"
            ),
        }
        in_tenant(
            tenant.id,
            lambda tx: tx.execute(
                "UPDATE quests SET status = 'succeeded', finished_at = now(), result = 'ok' "
                "WHERE company_id = %s AND id = %s",
                (tenant.id, it.quests["finished"]),
            ),
        )
        for who in (tenant, other_tenant):  # each company has its demo connected
            put = client.put(
                f"/v1/companies/{who.id}/integrations/demo",
                json={"access_token": "demo_at_seed", "scopes": ["tasks.read"]},
                headers=who.headers(who.admin),
            )
            assert put.status_code == 200, put.text
        add_activity(in_tenant, tenant.id, 7)
        add_activity(in_tenant, other_tenant.id, 2)
        yield it
        client.portal.call(aredis.aclose)


# --- strategies ----------------------------------------------------------------------------

# Text that may reach Postgres: anything UTF-8 can carry, NUL included (Postgres refuses it).
CHARS = st.characters(codec="utf-8")
TEXT = st.text(CHARS, max_size=30)
WORDS = st.sampled_from(
    [
        *("", " ", "null", "0", "-1", "true", "..", "../../etc/passwd", "%00", "' OR 1=1;--"),
        *("\u202e\u200b", "Ω≈ç√", "🦄" * 3, "a" * 300, "<script>", "${jndi:x}", "\\u0000"),
    ]
)
STRINGS = st.one_of(TEXT, WORDS)
HUGE = st.builds(
    lambda ch, n: ch * n, st.sampled_from(["x", "é", "🦄", " "]), st.integers(1, 120_000)
)
HEX = st.text("0123456789abcdef", min_size=20, max_size=40)
SECRETS = st.builds(
    str.__add__, st.sampled_from(["sk-ant-api03-", "sk-ant-admin01-", "demo_at_", "demo_rt_"]), HEX
)
JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(),  # NaN and ±Infinity too: Python's JSON reader takes them
        STRINGS,
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(STRINGS, inner, max_size=4),
    max_leaves=12,
)
UUIDS = st.uuids().map(str)
MONEY = st.decimals(min_value="0.000001", max_value="1000", places=6).map(str)
BAD_MONEY = st.one_of(
    st.sampled_from(["", " ", "abc", "-1", "0", "-0", "0.0000001", "NaN", "sNaN", "Infinity"])
    | st.sampled_from(["1e30", "1000000.000001", "2,50", "$2.50", "0x10", "1e-7", "--1"])
    | st.sampled_from(["1e999999", "-1e999999", "1e-1000100", "9" * 400]),
    STRINGS,
)


def header_values(max_size: int = 80) -> st.SearchStrategy[str | bytes]:
    """What a client can put in a header: printable ASCII, or any bytes (latin-1, UTF-8)
    but NUL, CR and LF, which the server's HTTP parser refuses."""
    return st.one_of(
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=max_size),
        st.binary(max_size=max_size).filter(lambda b: not {0, 10, 13} & set(b)),
        st.text(st.characters(min_codepoint=0xA0, max_codepoint=0xFF), max_size=20).map(
            lambda t: t.encode("utf-8")
        ),
    )


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": "someone", "aud": "authenticated", "role": "authenticated", "iat": now}
    claims["exp"] = now + 600
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _signed(claims: dict[str, Any], *, key: str = JWT_SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg)


def _tampered(sub: str) -> str:
    head, _, sig = mint(JWT_SECRET, "someone").split(".")
    return ".".join([head, _b64(json.dumps(_claims(sub=sub)).encode()), sig])


SUBJECTS = st.text(CHARS, min_size=1, max_size=40)
BAD_TOKENS = st.one_of(
    st.sampled_from(["", "wrong", "not.a.jwt", "a.b.c", "..", "e30.e30.", "e30.e30.e30"]),
    SUBJECTS,
    st.builds(
        lambda key, sub: _signed(_claims(sub=sub), key=key), HEX.map("wrong-key-".__add__), SUBJECTS
    ),
    st.builds(lambda sub: jwt.encode(_claims(sub=sub), None, algorithm="none"), SUBJECTS),
    st.builds(lambda ago: _signed(_claims(exp=int(time.time()) - ago)), st.integers(15, 10**9)),
    st.builds(
        lambda aud: _signed(_claims(aud=aud)), STRINGS.filter(lambda a: a != "authenticated")
    ),
    st.builds(lambda alg: _signed(_claims(), alg=alg), st.sampled_from(["HS384", "HS512"])),
    st.builds(
        lambda gone: _signed({k: v for k, v in _claims().items() if k != gone}),
        st.sampled_from(["sub", "aud", "exp"]),
    ),
    st.builds(
        lambda sub: _signed(_claims(sub=sub)),
        st.one_of(
            st.just(""),
            st.integers(),
            st.lists(st.integers(), max_size=2),
            st.text(CHARS, min_size=201, max_size=300),
        ),
    ),
    st.builds(lambda exp: _signed(_claims(exp=exp)), st.sampled_from(["soon", "1e3x", None])),
    st.builds(_tampered, SUBJECTS),
    st.builds(lambda sub: mint(JWT_SECRET, sub).rsplit(".", 1)[0] + ".", SUBJECTS),
    st.builds(lambda sub, junk: mint(JWT_SECRET, sub) + "." + junk, SUBJECTS, HEX),
    st.builds(lambda n: "eyJ" + "A" * n, st.integers(1_000, 200_000)),
)
BAD_AUTHORIZATION = st.one_of(
    st.sampled_from(
        ["", "Bearer", "Bearer ", "Bearer    ", "bearer\t", "Token x", "Basic dXNlcjpwYXNz"]
    ),
    BAD_TOKENS.map("Bearer ".__add__),
    BAD_TOKENS.map("bEaReR ".__add__),
    st.builds(
        lambda scheme, tok: f"{scheme} {tok}",
        st.sampled_from(["Basic", "Digest", "JWT"]),
        BAD_TOKENS,
    ),
    header_values(),
    header_values().map(lambda v: b"Bearer " + (v if isinstance(v, bytes) else v.encode())),
    st.binary(min_size=1, max_size=60)
    .filter(lambda b: not {0, 10, 13} & set(b))
    .map(lambda b: b"Bearer " + b),
)


def who(ingress: Ingress, kind: str) -> dict[str, str]:
    """Authorization of a caller, by kind."""
    t, o = ingress.tenant, ingress.other
    users = {
        "admin": (t, t.admin),
        "member": (t, t.member),
        "other admin": (o, o.admin),
        "other member": (o, o.member),
    }
    if kind in users:
        company, user = users[kind]
        return company.headers(user)
    if kind == "stranger":
        return {"Authorization": f"Bearer {mint(JWT_SECRET, ingress.stranger)}"}
    return {}


CALLERS = st.sampled_from(["admin", "member", "other admin", "other member", "stranger", "none"])


def auth_headers(ingress: Ingress, data: st.DataObject) -> dict[str, Any]:
    if data.draw(st.integers(0, 5), label="bad token?") == 0:
        return {"Authorization": data.draw(BAD_AUTHORIZATION, label="authorization")}
    return who(ingress, data.draw(mostly(st.sampled_from(["admin", "member"]), CALLERS)))


def companies(ingress: Ingress) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([str(ingress.tenant.id), str(ingress.other.id)]),
        UUIDS,
        st.sampled_from([str(ingress.tenant.id).upper(), ingress.tenant.id.hex]),
        STRINGS,
    )


def quest_ids(ingress: Ingress) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from([str(q) for q in ingress.quests.values()]), UUIDS, STRINGS)


INTEGRATIONS = st.one_of(
    st.just("demo"),
    st.from_regex(r"[a-z][a-z0-9_]{0,45}", fullmatch=True),
    st.sampled_from(["DEMO", "demo ", "de-mo", "..", "demo%2F..", "0demo", "démo", "demo.json"]),
    STRINGS,
)


def mostly(usual: st.SearchStrategy[Any], rest: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` three times in four, else ``rest``."""
    return st.integers(0, 3).flatmap(lambda i: rest if i == 0 else usual)


def segment(value: str) -> str:
    """A path parameter as a client puts it in the URL, for the app to get ``value``."""
    return quote(value, safe="")


def submit_bodies(ingress: Ingress, secret: str) -> st.SearchStrategy[Any]:
    """Bodies for POST quests: junk, near-valid with one thing wrong, valid, huge."""
    valid = st.fixed_dictionaries(
        {"goal": st.text(CHARS, min_size=1, max_size=200).filter(str.strip)},
        optional={
            "model": st.from_regex(MODEL_PATTERN, fullmatch=True),
            "max_usd": MONEY,
        },
    )
    wrong_value = st.one_of(JSON, BAD_MONEY, HUGE, st.just(secret))
    extra_keys = st.sampled_from(
        ["company_id", "quest_id", "status", "created_by", "actor", "id", "goal ", "Goal"]
    )

    def one_wrong(body: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
        return {**body, key: value}

    def without(body: dict[str, Any], key: str) -> dict[str, Any]:
        return {k: v for k, v in body.items() if k != key}

    other_company = str(ingress.other.id)
    return st.one_of(
        JSON,
        valid,
        st.builds(one_wrong, valid, st.sampled_from(["goal", "model", "max_usd"]), wrong_value),
        st.builds(
            one_wrong, valid, extra_keys, st.one_of(st.just(other_company), st.just(secret), JSON)
        ),
        st.builds(without, valid, st.just("goal")),
        st.builds(lambda body, goal: {**body, "goal": goal}, valid, HUGE),
        st.builds(lambda body: [body], valid),
    )


RAW_BODIES = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"",
            b"{",
            b"{goal: nope",
            b"null",
            b"[]",
            b'"goal"',
            b'{"goal": "a", "goal": "b"}',
            b'{"goal": "\\ud800"}',
            b'{"goal": "\xff\xfe"}',
            b"\xef\xbb\xbf" + b'{"goal": "with a BOM"}',
            '{"goal": "latin-1 caf\xe9"}'.encode("latin-1"),
            '{"goal": "utf-16"}'.encode("utf-16"),
            b'{"goal": NaN}',
            b'{"goal": 1e999999}',
            b"[" * 50_000 + b"]" * 50_000,
            b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
            b"goal=hello&company_id=x",
            b"--x\r\nContent-Disposition: form-data; name=goal\r\n\r\nhi\r\n--x--\r\n",
        ]
    ),
)
CONTENT_TYPES = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=latin-1",
            "application/vnd.api+json",
            "text/plain",
            "text/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/octet-stream",
            "",
            "json",
            "*/*",
        ]
    ),
    header_values(40),
)


def token_bodies(secret: str) -> st.SearchStrategy[Any]:
    """Bodies for PUT integrations; the tokens always carry the planted secret."""
    dates = st.one_of(
        st.datetimes(
            min_value=datetime(1, 1, 1),
            max_value=datetime(9999, 12, 31, 23, 59, 59),
            timezones=st.none() | st.timezones(),
        ).map(lambda d: d.isoformat()),
        STRINGS,
        st.integers(),
    )
    valid = st.fixed_dictionaries(
        {"access_token": st.just(secret)},
        optional={
            "refresh_token": st.just(secret.replace("_at_", "_rt_")),
            "expires_at": dates,
            "scopes": st.lists(st.text(CHARS, max_size=20), max_size=5),
            "account": st.text(CHARS, max_size=40),
        },
    )
    fields = st.sampled_from(["access_token", "refresh_token", "expires_at", "scopes", "account"])
    return st.one_of(
        valid,
        st.builds(lambda b, k, v: {**b, k: v}, valid, fields, st.one_of(JSON, HUGE, st.just(""))),
        st.builds(lambda b, v: {**b, "company_id": v}, valid, UUIDS | JSON),
        st.builds(lambda b: {**b, "scopes": ["s"] * 51}, valid),
        st.builds(lambda v: {"access_token": v, "refresh_token": secret}, JSON),
        JSON,
    )


# --- the fuzzing ---------------------------------------------------------------------------


def query_params(ingress: Ingress, data: st.DataObject, names: list[str]) -> dict[str, Any]:
    """Values for the named query parameters (each one maybe left out), and sometimes junk."""
    cursors = st.one_of(
        STRINGS,
        st.builds(
            lambda at, i: _b64(f"{at}|{i}".encode()),
            st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
            st.integers(min_value=-(10**40), max_value=10**40),
        ),
        st.text(CHARS, max_size=60).map(lambda t: _b64(t.encode())),
    )
    dates = st.one_of(
        st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
        st.dates().map(str),
        STRINGS,
        st.integers().map(str),
    )
    choices: dict[str, st.SearchStrategy[Any]] = {
        "limit": st.one_of(st.integers(-(10**20), 10**20), STRINGS, st.just(200), st.just(201)),
        "cursor": cursors,
        "since": dates,
        "until": dates,
        "quest_id": quest_ids(ingress),
        "actor": st.one_of(TEXT, st.just(ingress.tenant.admin), st.text(CHARS, min_size=190)),
        "action": st.one_of(TEXT, st.just("integration.connected")),
    }
    params = {}
    for name in names:
        if data.draw(st.booleans(), label=f"with {name}?"):
            params[name] = data.draw(choices.get(name, STRINGS), label=name)
    if data.draw(st.integers(0, 9), label="junk params?") == 0:
        params.update(data.draw(st.dictionaries(TEXT, STRINGS, max_size=3), label="junk params"))
    return params


def _spec_routes(ingress: Ingress) -> list[tuple[str, str, dict[str, Any]]]:
    spec = ingress.client.get("/openapi.json").json()
    return sorted(
        (method.upper(), path, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    )


@fuzz(300)
@given(data=st.data())
def test_every_route_in_the_openapi_spec_survives_fuzzed_requests(
    ingress: Ingress, data: st.DataObject
) -> None:
    """Any route of the served spec, any parameters, any caller, any body: never a 5xx, and
    a rejected request changes nothing and echoes no secret."""
    method, template, op = data.draw(st.sampled_from(_spec_routes(ingress)), label="route")
    secret = data.draw(SECRETS, label="secret")
    url, headers, query = template, {}, []
    for param in op.get("parameters", []):
        name, where = param["name"], param["in"]
        if where == "path":
            value = data.draw(
                {
                    "company_id": mostly(st.just(str(ingress.tenant.id)), companies(ingress)),
                    "quest_id": mostly(
                        st.sampled_from([str(q) for q in ingress.quests.values()]),
                        quest_ids(ingress),
                    ),
                    "integration": mostly(st.just("demo"), INTEGRATIONS),
                }.get(name, STRINGS),
                label=name,
            )
            url = url.replace("{" + name + "}", segment(value))
        elif where == "query":
            query.append(name)
        elif where == "header" and name != "authorization":
            strategy = {
                "x-correlation-id": st.one_of(UUIDS, header_values(), st.just(secret)),
                "last-event-id": st.one_of(
                    st.from_regex(r"[0-9]{1,15}-[0-9]{1,5}", fullmatch=True), header_values()
                ),
            }.get(name, st.one_of(header_values(250), st.just(secret)))
            if data.draw(st.booleans(), label=f"with {name}?"):
                headers[name] = data.draw(strategy, label=name)
    headers.update(auth_headers(ingress, data))
    if data.draw(st.booleans(), label="with x-request-id?"):
        headers["X-Request-ID"] = data.draw(
            st.one_of(header_values(100), st.just(secret)), label="x-request-id"
        )
    params = query_params(ingress, data, query)
    body: dict[str, Any] = {}
    if "requestBody" in op or data.draw(st.integers(0, 9), label="body anyway?") == 0:
        ref = json.dumps(op.get("requestBody", {}))
        if data.draw(st.integers(0, 4), label="raw body?") == 0:
            body["content"] = data.draw(RAW_BODIES, label="raw body")
            headers["Content-Type"] = data.draw(CONTENT_TYPES, label="content type")
        elif "QuestSubmit" in ref:
            body["json_body"] = data.draw(submit_bodies(ingress, secret), label="body")
        elif "IntegrationTokens" in ref:
            body["json_body"] = data.draw(token_bodies(secret), label="body")
        else:
            body["json_body"] = data.draw(
                st.one_of(JSON, st.fixed_dictionaries({"reason": STRINGS | st.just(secret)})),
                label="body",
            )
    ingress.send(method, url, headers=headers, params=params, secrets=(secret,), **body)


ENDPOINT = "00000000-0000-4000-8000-00000000e1d0"  # a webhook endpoint's id in a path
PROTECTED = [
    ("GET", "/v1/companies", None),
    ("POST", "/v1/companies/{c}/quests", {"goal": "hello"}),
    ("GET", "/v1/companies/{c}/quests", None),
    ("GET", "/v1/companies/{c}/events", None),
    ("GET", "/v1/companies/{c}/quests/{q}", None),
    ("POST", "/v1/companies/{c}/quests/{q}/cancel", {"reason": "stop"}),
    ("GET", "/v1/companies/{c}/quests/{q}/events", None),
    ("GET", "/v1/companies/{c}/activity", None),
    ("GET", "/v1/companies/{c}/guard", None),
    ("GET", "/v1/companies/{c}/integrations", None),
    ("PUT", "/v1/companies/{c}/integrations/demo", {"access_token": "demo_at_x"}),
    ("DELETE", "/v1/companies/{c}/integrations/demo", None),
    ("GET", "/v1/companies/{c}/integrations/demo/uses", None),
    ("POST", "/v1/companies/{c}/integrations/demo/authorize", None),
    ("POST", "/v1/companies/{c}/webhooks", {"url": "https://example.com/h", "event_types": []}),
    ("GET", "/v1/companies/{c}/webhooks", None),
    ("DELETE", f"/v1/companies/{{c}}/webhooks/{ENDPOINT}", None),
    ("GET", f"/v1/companies/{{c}}/webhooks/{ENDPOINT}/deliveries", None),
]
# A provider sends an admin's browser back here: no bearer token (the signed, single-use
# state is the credential), and the answers are pages for a person.
BROWSER_ROUTES = {("GET", "/v1/oauth/{integration}/callback")}


def test_the_token_fuzz_covers_every_protected_route_of_the_spec(ingress: Ingress) -> None:
    spec = {(m, p) for m, p, _ in _spec_routes(ingress) if p.startswith("/v1/")} - BROWSER_ROUTES
    covered = {
        (
            m,
            p.replace("{c}", "{company_id}")
            .replace("{q}", "{quest_id}")
            .replace("demo", "{integration}")
            .replace(ENDPOINT, "{endpoint_id}"),
        )
        for m, p, _ in PROTECTED
    }
    assert spec == covered


@fuzz(200)
@given(data=st.data())
def test_a_bad_token_is_401_on_every_route_and_nothing_happens(
    ingress: Ingress, data: st.DataObject
) -> None:
    """Empty, truncated, random, wrongly signed, ``alg: none``, expired, wrong audience,
    missing or malformed claims, tampered, huge, non-ASCII: always 401, on every route, for
    the caller's own company and quest."""
    method, template, body = data.draw(st.sampled_from(PROTECTED), label="route")
    quest = data.draw(st.sampled_from(sorted(ingress.quests)), label="quest")
    url = template.format(c=ingress.tenant.id, q=ingress.quests[quest])
    secret = data.draw(SECRETS, label="secret")
    headers = {
        "Authorization": data.draw(BAD_AUTHORIZATION, label="authorization"),
        "Idempotency-Key": secret,
    }
    answer = ingress.send(method, url, headers=headers, json_body=body, secrets=(secret,))
    assert answer.status == 401, answer.describe()
    assert answer.headers["www-authenticate"].lower().startswith("bearer"), answer.describe()


@fuzz(200)
@given(data=st.data())
def test_fuzzed_quest_submissions(ingress: Ingress, data: st.DataObject) -> None:
    """POST quests as a member with fuzzed bodies, content types and headers. A rejected one
    changes nothing; an accepted one queues exactly its first step, stamped with the path's
    company and the token's user whatever the body said."""
    secret = data.draw(SECRETS, label="secret")
    headers: dict[str, Any] = dict(ingress.tenant.headers(ingress.tenant.member))
    kwargs: dict[str, Any] = {}
    if data.draw(st.integers(0, 3), label="raw?") == 0:
        kwargs["content"] = data.draw(RAW_BODIES, label="raw body")
        headers["Content-Type"] = data.draw(CONTENT_TYPES, label="content type")
    else:
        kwargs["json_body"] = data.draw(submit_bodies(ingress, secret), label="body")
    if data.draw(st.booleans(), label="idempotency key?"):
        headers["Idempotency-Key"] = data.draw(
            st.one_of(header_values(250), st.just(secret), HEX), label="idempotency key"
        )
    if data.draw(st.booleans(), label="correlation id?"):
        headers["X-Correlation-ID"] = data.draw(
            st.one_of(UUIDS, header_values(), st.just(secret)), label="correlation id"
        )
    queued_before = ingress.rds.lrange("dramatiq:quests", 0, -1)
    answer = ingress.send(
        "POST",
        f"/v1/companies/{ingress.tenant.id}/quests",
        headers=headers,
        secrets=(secret,),
        **kwargs,
    )
    body = kwargs.get("json_body")
    if isinstance(body, dict) and {"company_id", "quest_id", "status"} & set(body):
        assert answer.status == 422, answer.describe()
    if answer.status == 202:
        quest_id = json.loads(answer.text)["quest_id"]
        new = [i for i in ingress.rds.lrange("dramatiq:quests", 0, -1) if i not in queued_before]
        assert len(new) <= 1, answer.describe()
        for message_id in new:
            raw = ingress.rds.hget("dramatiq:quests.msgs", message_id)
            assert raw is not None
            envelope = json.loads(raw)["args"][0]
            assert envelope["company_id"] == str(ingress.tenant.id)
            assert envelope["actor"] == {"type": "user", "id": ingress.tenant.member}
            assert envelope["payload"] == {"quest_id": quest_id, "step": 1}


@fuzz(150)
@given(data=st.data())
def test_fuzzed_reads_and_cancels_of_quests(ingress: Ingress, data: st.DataObject) -> None:
    """GET a quest and POST its cancel, for any caller, company, quest id and body: another
    company's quest is not found through one's own company, and only the quest's submitter
    or an admin may cancel it."""
    own, quests = str(ingress.tenant.id), [str(q) for q in ingress.quests.values()]
    kind = data.draw(mostly(st.sampled_from(["admin", "member"]), CALLERS), label="caller")
    company = data.draw(mostly(st.just(own), companies(ingress)), label="company")
    quest = data.draw(mostly(st.sampled_from(quests), quest_ids(ingress)), label="quest")
    secret = data.draw(SECRETS, label="secret")
    url = f"/v1/companies/{segment(company)}/quests/{segment(quest)}"
    headers = who(ingress, kind)
    if data.draw(st.booleans(), label="cancel?"):
        body = data.draw(
            st.one_of(
                st.none(),
                st.fixed_dictionaries({"reason": TEXT}),
                st.fixed_dictionaries({"reason": st.one_of(HUGE, st.just(secret), JSON)}),
                st.fixed_dictionaries({"reason": TEXT, "quest_id": UUIDS}),
                JSON,
            ),
            label="body",
        )
        answer = ingress.send(
            "POST", url + "/cancel", headers=headers, json_body=body, secrets=(secret,)
        )
    else:
        answer = ingress.send("GET", url, headers=headers)
    if company == own and kind in ("admin", "member") and quest == str(ingress.quests["theirs"]):
        assert answer.status in (404, 413, 422), answer.describe()  # 413: a HUGE reason
        assert "Globex" not in answer.text
    if answer.method == "POST" and answer.status == 202:
        assert kind == "admin" or quest != str(ingress.quests["admin"]), answer.describe()


@fuzz(150)
@given(data=st.data())
def test_fuzzed_integration_routes(ingress: Ingress, data: st.DataObject) -> None:
    """PUT, DELETE and GET uses with fuzzed names, bodies and callers. The tokens are never
    echoed back, not even by an accepted PUT."""
    method = data.draw(st.sampled_from(["PUT", "DELETE", "GET"]), label="method")
    kind = data.draw(CALLERS, label="caller")
    company = data.draw(st.sampled_from([ingress.tenant.id, ingress.other.id]), label="company")
    name = data.draw(INTEGRATIONS, label="integration")
    secret = "demo_at_" + data.draw(HEX, label="secret")
    url = f"/v1/companies/{company}/integrations/{segment(name)}"
    headers = who(ingress, kind)
    if method == "PUT":
        body = data.draw(token_bodies(secret), label="body")
        answer = ingress.send(method, url, headers=headers, json_body=body, secrets=(secret,))
        assert secret not in answer.text, answer.describe()
        assert secret.replace("_at_", "_rt_") not in answer.text, answer.describe()
    elif method == "DELETE":
        answer = ingress.send(method, url, headers=headers)
    else:
        answer = ingress.send(method, url + "/uses", headers=headers)
    if answer.accepted:
        assert (company, kind) in ((ingress.tenant.id, "admin"), (ingress.other.id, "other admin"))


@fuzz(150)
@given(data=st.data())
def test_fuzzed_activity_queries(ingress: Ingress, data: st.DataObject) -> None:
    """Limits, cursors, dates, ids, actors and actions of any shape: a 200 page or a 4xx."""
    kind = data.draw(st.sampled_from(["admin", "admin", "admin", "member", "other admin"]))
    secret = data.draw(SECRETS, label="secret")
    names = ["quest_id", "actor", "action", "since", "until", "cursor", "limit"]
    params = query_params(ingress, data, names)
    if data.draw(st.booleans(), label="plant the secret?"):
        params[data.draw(st.sampled_from(names), label="secret in")] = secret
    answer = ingress.send(
        "GET",
        f"/v1/companies/{ingress.tenant.id}/activity",
        headers=who(ingress, kind),
        params=params,
        secrets=(secret,),
    )
    if answer.accepted:
        assert kind == "admin"
        page = json.loads(answer.text)
        limit = TypeAdapter(int).validate_python(params.get("limit", 50))  # as FastAPI reads it
        assert len(page["items"]) <= limit
        assert all(item["target"].startswith("note:") for item in page["items"])


@fuzz(100)
@given(data=st.data())
def test_fuzzed_event_streams(ingress: Ingress, data: st.DataObject) -> None:
    """GET events with any Last-Event-ID, for own, finished, other company's and unknown
    quests: a stream for a quest of the caller's company, a 4xx otherwise."""
    kind = data.draw(st.sampled_from(["admin", "member", "other member", "stranger"]))
    quest = data.draw(quest_ids(ingress), label="quest")
    headers = who(ingress, kind)
    if data.draw(st.booleans(), label="last event id?"):
        headers["Last-Event-ID"] = data.draw(
            st.one_of(
                st.from_regex(r"[0-9]{1,15}-[0-9]{1,5}", fullmatch=True),
                header_values(),
                st.just("0-0"),
                st.just("1-1" * 30),
            ),
            label="last event id",
        )
    answer = ingress.send(
        "GET", f"/v1/companies/{ingress.tenant.id}/quests/{segment(quest)}/events", headers=headers
    )
    if answer.accepted:
        assert kind in ("admin", "member")
        assert answer.headers["content-type"].startswith("text/event-stream")
        if quest == "..":  # .../quests/../events is the company's feed, which members may read
            return
        assert quest in {str(ingress.quests[k]) for k in ("member", "admin", "finished")}


PATH_PIECES = st.one_of(
    st.sampled_from(
        [
            *("v1", "companies", "quests", "cancel", "events", "integrations", "demo", "uses"),
            *("guard", "activity", "healthz", "readyz", "openapi.json", "docs", "metrics"),
            *("", ".", "..", "%2e%2e", "%2E%2E%2F", "..%2f", "%2f", "%5c..%5c", "%25", "~"),
            *(";x=1", "%c0%af", "%e2%80%ae", "%ff", "*", "@", ":", "%3f", "%23", "+"),
        ]
    ),
    STRINGS.map(segment),
)


def mutate(path: str, how: str, at: int, piece: str) -> str:
    """A real path with one thing changed."""
    parts = path.split("/")
    at = 1 + at % (len(parts) - 1)
    if how == "insert":
        parts.insert(at, piece)
    elif how == "replace":
        parts[at] = piece
    elif how == "drop":
        del parts[at]
    elif how == "upper":
        parts[at] = parts[at].upper()
    elif how == "double slash":
        parts.insert(at, "")
    elif how == "trailing slash":
        parts.append("")
    return "/".join(parts)


def real_paths(ingress: Ingress) -> st.SearchStrategy[str]:
    t, q = ingress.tenant.id, ingress.quests["member"]
    company, quest = f"/v1/companies/{t}", f"/v1/companies/{t}/quests/{q}"
    return st.sampled_from(
        [
            *(f"{company}/quests", quest, f"{quest}/cancel", f"{quest}/events"),
            *(f"{company}/activity", f"{company}/guard", f"{company}/integrations"),
            *(f"{company}/integrations/demo", f"{company}/integrations/demo/uses"),
            *("/healthz", "/readyz", "/openapi.json", "/docs"),
        ]
    )


@fuzz(150)
@given(data=st.data())
def test_fuzzed_paths_and_methods(ingress: Ingress, data: st.DataObject) -> None:
    """Made-up paths (traversal, encodings, known words in the wrong places, real paths with
    one thing changed) with any method: never a 5xx, nothing done unless it is a 2xx."""
    piece = st.one_of(
        PATH_PIECES,
        st.sampled_from([str(ingress.tenant.id), str(ingress.other.id)]),
        quest_ids(ingress).map(segment),
    )
    hows = ["keep", "insert", "replace", "drop", "upper", "double slash", "trailing slash"]
    path = data.draw(
        st.one_of(
            st.lists(piece, max_size=8).map("/".join),
            st.builds(mutate, real_paths(ingress), st.sampled_from(hows), st.integers(0, 9), piece),
        ),
        label="path",
    )
    method = data.draw(
        st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
        label="method",
    )
    headers = auth_headers(ingress, data)
    body = data.draw(st.none() | JSON, label="body") if method in ("POST", "PUT", "PATCH") else None
    url = "http://testserver/" + path.lstrip("/")  # absolute: the path may start with "//"
    ingress.send(method, url, headers=headers, json_body=body)


def test_healthz_and_readyz_take_any_headers(ingress: Ingress) -> None:
    for path in ("/healthz", "/readyz"):
        for headers in ({}, {"Authorization": "Bearer junk"}, {"X-Request-ID": "x" * 1000}):
            assert ingress.send("GET", path, headers=headers).status == 200


def test_the_state_snapshot_sees_what_accepted_requests_do(ingress: Ingress) -> None:
    """The "nothing changed" property is only as good as its snapshot: each accepted kind of
    request shows up in it (its queue, and its rows or cancel flag)."""
    t, company = ingress.tenant, str(ingress.tenant.id)
    quest = f"/v1/companies/{company}/quests/{ingress.quests['member']}"
    demo = f"/v1/companies/{company}/integrations/demo"
    for method, url, body, queue, changed in (
        ("POST", f"/v1/companies/{company}/quests", {"goal": "Count chairs"}, "quests", "rows"),
        ("POST", f"{quest}/cancel", {"reason": "not needed"}, "control", "cancel flags"),
        ("PUT", demo, {"access_token": "demo_at_new"}, "audit", "rows"),
        ("DELETE", demo, None, "audit", "rows"),
    ):
        before = ingress.state()
        resp = ingress.client.request(method, url, json=body, headers=t.headers(t.admin))
        after = ingress.state()
        assert 200 <= resp.status_code < 300, resp.text
        for key in (f"dramatiq:{queue}", f"dramatiq:{queue}.msgs"):
            assert after["queues"][key] == before["queues"][key] + 1, (method, url, key)
        assert after[changed] != before[changed], (method, url)
        if changed == "rows":
            assert after["rows"][str(ingress.other.id)] == before["rows"][str(ingress.other.id)]


# --- example-based: known tricky inputs ----------------------------------------------------


def test_a_company_id_in_the_body_pointing_at_another_company_is_422_and_never_used(
    ingress: Ingress,
) -> None:
    t, o = ingress.tenant, ingress.other
    for user in (t.member, t.admin):
        answer = ingress.send(
            "POST",
            f"/v1/companies/{t.id}/quests",
            json_body={"goal": "Move Globex's money", "company_id": str(o.id)},
            headers=t.headers(user),
        )
        assert answer.status == 422, answer.describe()
        assert "company_id" in json.loads(answer.text)["detail"]


def test_another_companys_quest_is_a_404_like_an_unknown_one_and_is_never_cancelled(
    ingress: Ingress,
) -> None:
    t = ingress.tenant
    theirs, unknown = ingress.quests["theirs"], uuid.uuid4()
    for user in (t.member, t.admin):
        headers = t.headers(user)
        for quest in (theirs, unknown):
            base = f"/v1/companies/{t.id}/quests/{quest}"
            answers = [
                ingress.send("GET", base, headers=headers),
                ingress.send("POST", base + "/cancel", headers=headers),
                ingress.send("POST", base + "/cancel", json_body={"reason": "x"}, headers=headers),
                ingress.send("GET", base + "/events", headers=headers),
            ]
            assert [a.status for a in answers] == [404] * 4, [a.describe() for a in answers]
            assert all("Globex" not in a.text for a in answers)
    row = ingress.in_tenant(
        ingress.other.id,
        lambda tx: tx.one(
            "SELECT status, cancel_requested_at FROM quests WHERE id = %s", (theirs,)
        ),
    )
    assert row == ("queued", None)
    assert ingress.rds.exists(f"s2:cancel:{theirs}") == 0


def test_a_member_of_one_company_gets_403_on_the_others_paths(ingress: Ingress) -> None:
    t, o = ingress.tenant, ingress.other
    theirs = ingress.quests["theirs"]
    for user in (t.member, t.admin):
        for method, url in (
            ("GET", f"/v1/companies/{o.id}/quests/{theirs}"),
            ("POST", f"/v1/companies/{o.id}/quests/{theirs}/cancel"),
            ("GET", f"/v1/companies/{o.id}/quests/{theirs}/events"),
            ("DELETE", f"/v1/companies/{o.id}/integrations/demo"),
        ):
            answer = ingress.send(method, url, headers=t.headers(user))
            assert answer.status == 403, answer.describe()


def test_a_member_cannot_cancel_the_admins_quest(ingress: Ingress) -> None:
    t = ingress.tenant
    url = f"/v1/companies/{t.id}/quests/{ingress.quests['admin']}/cancel"
    answer = ingress.send("POST", url, headers=t.headers(t.member))
    assert answer.status == 403, answer.describe()


def test_tokens_sent_with_a_wrong_field_are_not_echoed_in_the_422(ingress: Ingress) -> None:
    t = ingress.tenant
    secret = "demo_at_" + uuid.uuid4().hex
    for body in (
        {"access_token": secret, "scopes": "not a list"},
        {"access_token": secret, "expires_at": secret},
        {"access_token": [secret]},
        {"access_token": secret, "company_id": str(ingress.other.id)},
    ):
        answer = ingress.send(
            "PUT",
            f"/v1/companies/{t.id}/integrations/demo",
            json_body=body,
            headers=t.headers(t.admin),
            secrets=(secret,),
        )
        assert answer.status == 422, answer.describe()


def test_a_huge_body_is_refused_without_harm(ingress: Ingress) -> None:
    t = ingress.tenant
    answer = ingress.send(
        "POST",
        f"/v1/companies/{t.id}/quests",
        json_body={"goal": "x" * 5_000_000},
        headers=t.headers(t.member),
    )
    assert answer.status == 413, answer.describe()
    assert json.loads(answer.text)["reason"] == "body_too_large"


def test_a_stream_with_a_valid_last_event_id_is_served(ingress: Ingress) -> None:
    t = ingress.tenant
    url = f"/v1/companies/{t.id}/quests/{ingress.quests['member']}/events"
    answer = ingress.send("GET", url, headers={**t.headers(t.member), "Last-Event-ID": "0-0"})
    assert answer.status == 200, answer.describe()
    assert answer.text.startswith("retry:")


# --- inputs the fuzzing once found answering 500 ------------------------------------------

NUL_REASON = (
    "NUL in a text value reaches Postgres, which refuses it: psycopg.DataError is mapped to "
    "no status, so the ingress answers 500 (the transaction rolls back; nothing is enqueued)"
)
DATE_REASON = (
    "an expires_at whose UTC value falls outside years 1-9999 is stored, then cannot be read "
    "back into a Python datetime: psycopg.DataError, 500"
)


def _known(
    case: str, method: str, path: str, *, reason: str, json_body: Any = None, sub: str = ""
) -> Any:
    return pytest.param(
        method,
        path,
        json_body,
        sub,
        reason,
        id=case,
    )


FOUND_500S = [
    _known("goal with NUL", "POST", "/quests", json_body={"goal": "a\x00b"}, reason=NUL_REASON),
    _known(
        "cancel reason with NUL",
        "POST",
        "/quests/{member}/cancel",
        json_body={"reason": "stop\x00"},
        reason=NUL_REASON,
    ),
    _known("integration %00 on DELETE", "DELETE", "/integrations/%00", reason=NUL_REASON),
    _known("integration %00 on uses", "GET", "/integrations/a%00/uses", reason=NUL_REASON),
    _known("activity actor %00", "GET", "/activity?actor=%00", reason=NUL_REASON),
    _known("activity action %00", "GET", "/activity?action=x%00", reason=NUL_REASON),
    _known(
        "integration account with NUL",
        "PUT",
        "/integrations/demo",
        json_body={"access_token": "demo_at_x", "account": "\x00"},
        reason=NUL_REASON,
    ),
    _known(
        "integration scope with NUL",
        "PUT",
        "/integrations/demo",
        json_body={"access_token": "demo_at_x", "scopes": ["tasks.read\x00"]},
        reason=NUL_REASON,
    ),
    _known(
        "expires_at before year 1 in UTC",
        "PUT",
        "/integrations/demo",
        json_body={"access_token": "demo_at_x", "expires_at": "0001-01-01T00:00:00+14:00"},
        reason=DATE_REASON,
    ),
    _known(
        "expires_at after year 9999 in UTC",
        "PUT",
        "/integrations/demo",
        json_body={"access_token": "demo_at_x", "expires_at": "9999-12-31T23:59:59-14:00"},
        reason=DATE_REASON,
    ),
    _known(
        "max_usd that overflows",
        "POST",
        "/quests",
        json_body={"goal": "g", "max_usd": "1e999999"},
        reason="usd_to_micros multiplies before it bounds the amount: decimal.Overflow is no "
        "ValueError, so it escapes pydantic's validation as a 500",
    ),
    _known(
        "max_usd that underflows to zero",
        "POST",
        "/quests",
        json_body={"goal": "g", "max_usd": "1e-1000100"},
        reason="usd_to_micros rounds a positive amount far below a micro-dollar to 0 micros and "
        "accepts it; the insert then breaks CHECK (max_usd_micros > 0): CheckViolation, 500",
    ),
    _known(
        "a signed token whose sub has NUL",
        "GET",
        "/guard",
        sub="admin\x00",
        reason="TokenVerifier accepts any string sub; member_tx sends it to Postgres, which "
        "refuses NUL: 500 instead of 401 (needs a token signed with the JWT secret)",
    ),
]


@pytest.mark.parametrize(("method", "path", "json_body", "sub", "was"), FOUND_500S)
def test_input_that_once_answered_500_is_a_4xx(
    ingress: Ingress, method: str, path: str, json_body: Any, sub: str, was: str
) -> None:
    t = ingress.tenant
    path = path.replace("{member}", str(ingress.quests["member"]))
    headers = {"Authorization": f"Bearer {mint(JWT_SECRET, sub)}"} if sub else t.headers(t.admin)
    answer = ingress.send(
        method, f"/v1/companies/{t.id}{path}", json_body=json_body, headers=headers
    )
    assert 400 <= answer.status < 500, f"{answer.describe()} (it once was: {was})"


@pytest.mark.parametrize("last_event_id", ["99999999999999999999-0", "0-18446744073709551616"])
def test_an_out_of_range_last_event_id_is_refused_before_streaming(
    ingress: Ingress, last_event_id: str
) -> None:
    t = ingress.tenant
    url = f"/v1/companies/{t.id}/quests/{ingress.quests['member']}/events"
    headers = {**t.headers(t.member), "Last-Event-ID": last_event_id}
    answer = ingress.send("GET", url, headers=headers)
    assert answer.status == 422, answer.describe()
