"""Connecting GitHub and Slack by the OAuth code flow, end to end on real parts: the ingress in
its own process (``POST .../authorize`` for a company admin, the browser callback at
``/v1/oauth/<name>/callback``), ``system2 integration connect``, the GitHub and Slack
stand-ins in their own processes (their consent pages approve at once and send the browser
back), the vault, Redis (the single-use states) and Postgres (what is stored).

Each test follows what an admin or an operator would see: the status and the page's
``data-reason``, what the integration list shows, what is stored or not, the audit row."""

from __future__ import annotations

import base64
import json
import re
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
import redis

from ingress.oauth_flow import OAuthStates
from messages import Actor, ActorType
from tests.conftest import Stack, Tenant, serve, system2
from tests.support import wait_for
from tests.test_integrations import fresh_key, vault_for
from vault import Secret
from vault.sealed_tokens import ACCESS, unseal

pytestmark = pytest.mark.slow

STATE_SECRET = "test-oauth-state-secret-" + uuid.uuid4().hex
SLACK_SCOPES = "channels:read,channels:history,chat:write"
REASON = re.compile(r'data-reason="([^"]*)"')


def _standin(module: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    def argv(port: int) -> list[str]:
        return [sys.executable, "-m", f"standins.{module}", "--port", str(port)]

    yield from serve(module, tmp_path_factory, argv)


@pytest.fixture(scope="module")
def github_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """GitHub's OAuth endpoints (and API) on loopback, in their own process."""
    yield from _standin("github", tmp_path_factory)


@pytest.fixture(scope="module")
def slack_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Slack's install page and Web API on loopback, in their own process."""
    yield from _standin("slack", tmp_path_factory)


@pytest.fixture
def vault_key() -> str:
    return fresh_key()


@pytest.fixture
def ostack(stack: Stack, github_standin: str, slack_standin: str, vault_key: str) -> Stack:
    """An ingress (S2_PUBLIC_URL: its own address) that reaches both stand-ins and holds the
    vault's key; every process of the stack shares the state secret."""
    stack.base_env.update(
        S2_VAULT_KEYS=vault_key,
        S2_OAUTH_STATE_SECRET=STATE_SECRET,
        S2_GITHUB_PROVIDER_URL=github_standin,
        S2_GITHUB_OAUTH_URL=github_standin,
        S2_SLACK_PROVIDER_URL=slack_standin + "/api",
        S2_SLACK_OAUTH_URL=slack_standin,
    )
    stack.start_ingress()
    return stack


# -- helpers: what a browser, an admin's client and an operator do --------------------------


def authorize(stack: Stack, tenant: Tenant, integration: str, user: str | None = None) -> Any:
    """``POST .../authorize`` as the tenant's admin (or ``user``): the JSON answer."""
    resp = httpx.post(
        f"{stack.ingress_url}/v1/companies/{tenant.id}/integrations/{integration}/authorize",
        headers=tenant.headers(user),
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def params(url: str | httpx.URL) -> dict[str, str]:
    return dict(httpx.URL(url).params)


def approve(authorize_url: str, **login: str) -> str:
    """The admin approves on the provider's consent page: where it sends the browser back
    (our callback, with the provider's ``code`` and our ``state``), not yet followed."""
    resp = httpx.get(httpx.URL(authorize_url).copy_merge_params(login), timeout=30)
    assert resp.status_code == 302, resp.text
    return resp.headers["location"]


def browse(url: str | httpx.URL) -> httpx.Response:
    """A browser opening ``url`` (no bearer token), following redirects."""
    return httpx.get(url, follow_redirects=True, timeout=30)


def reason(page: httpx.Response) -> str:
    found = REASON.search(page.text)
    assert found, page.text
    return found.group(1)


def with_params(url: str, **changes: str | None) -> str:
    """``url`` with some query parameters replaced (``None``: removed)."""
    kept = {k: v for k, v in params(url).items() if k not in changes}
    added = {k: v for k, v in changes.items() if v is not None}
    return str(httpx.URL(url).copy_with(params={**kept, **added}))


def stored(
    admin_conn: psycopg.Connection[Any], company_id: uuid.UUID, integration: str | None = None
) -> list[tuple[Any, ...]]:
    """The company's stored credentials (integration, version, account, connected_by), read
    as the database's owner: what is really there, past row-level security."""
    rows = admin_conn.execute(
        "SELECT integration, version, account, connected_by FROM integration_credentials"
        " WHERE company_id = %s AND (%s::text IS NULL OR integration = %s) ORDER BY integration",
        (company_id, integration, integration),
    ).fetchall()
    return list(rows)


def listed(stack: Stack, tenant: Tenant) -> list[dict[str, Any]]:
    resp = httpx.get(
        f"{stack.ingress_url}/v1/companies/{tenant.id}/integrations",
        headers=tenant.headers(tenant.member),
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    found: list[dict[str, Any]] = resp.json()
    return found


def connect_cli(stack: Stack, company_id: uuid.UUID, integration: str) -> subprocess.Popen[str]:
    """``system2 integration connect`` waiting for the browser, as an operator runs it."""
    return subprocess.Popen(
        system2("integration", "connect", str(company_id), integration, "--timeout", "60"),
        env=stack.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def printed_url(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """The first line the command prints on stdout: the consent URL."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the command printed no URL"
    line = proc.stdout.readline().strip()
    assert line, proc.communicate(timeout=10)[1]
    return line


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int, list[str]]:
    """The command's exit status and its stderr's lines."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.strip().splitlines()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- beginning: the authorize URL ------------------------------------------------------------


def test_an_admin_gets_githubs_consent_url_with_pkce(
    ostack: Stack, tenant: Tenant, github_standin: str
) -> None:
    begun = authorize(ostack, tenant, "github")
    url = httpx.URL(begun["authorize_url"])
    assert str(url).startswith(github_standin + "/login/oauth/authorize?")
    got = params(url)
    callback = f"{ostack.ingress_url}/v1/oauth/github/callback"
    assert got["client_id"] == "system2-github"
    assert got["redirect_uri"] == callback == begun["redirect_uri"]
    assert got["response_type"] == "code" and got["state"]
    assert got["code_challenge_method"] == "S256"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", got["code_challenge"])
    expires = datetime.fromisoformat(begun["expires_at"])
    assert timedelta(minutes=9) < expires - datetime.now(UTC) <= timedelta(minutes=10)
    again = params(authorize(ostack, tenant, "github")["authorize_url"])
    assert again["state"] != got["state"] and again["code_challenge"] != got["code_challenge"]


def test_an_admin_gets_slacks_install_url_with_comma_separated_scopes(
    ostack: Stack, tenant: Tenant, slack_standin: str
) -> None:
    begun = authorize(ostack, tenant, "slack")
    url = httpx.URL(begun["authorize_url"])
    assert str(url).startswith(slack_standin + "/oauth/v2/authorize?")
    got = params(url)
    assert got["client_id"] == "system2-slack" and got["state"]
    assert got["redirect_uri"] == f"{ostack.ingress_url}/v1/oauth/slack/callback"
    assert got["scope"] == SLACK_SCOPES
    assert "code_challenge" not in got and "code_challenge_method" not in got


def test_only_a_company_admin_may_begin_connecting(
    ostack: Stack, tenant: Tenant, other_tenant: Tenant
) -> None:
    def post(company: uuid.UUID, integration: str, headers: dict[str, str]) -> int:
        path = f"/v1/companies/{company}/integrations/{integration}/authorize"
        return httpx.post(ostack.ingress_url + path, headers=headers, timeout=30).status_code

    assert post(tenant.id, "github", tenant.headers(tenant.member)) == 403
    assert post(tenant.id, "github", other_tenant.headers()) == 403  # another company's admin
    assert post(tenant.id, "nope", tenant.headers()) == 404
    assert post(tenant.id, "github", {}) == 401
    assert post(tenant.id, "github", {"Authorization": "Bearer not-a-token"}) == 401
    assert listed(ostack, tenant) == []


# -- completing: the browser comes back ------------------------------------------------------


def test_an_admin_approving_connects_github_and_it_is_audited(
    ostack: Stack, tenant: Tenant, admin_conn: psycopg.Connection[Any]
) -> None:
    ostack.start_workers(processes=1)  # the audit log writer
    login = f"user-{uuid.uuid4().hex[:8]}"
    page = browse(
        httpx.URL(authorize(ostack, tenant, "github")["authorize_url"]).copy_merge_params(
            {"login": login}
        )
    )
    assert page.status_code == 200, page.text
    assert reason(page) == "connected" and "GitHub is connected" in page.text
    assert str(page.url).startswith(f"{ostack.ingress_url}/v1/oauth/github/callback?")

    (item,) = listed(ostack, tenant)
    assert item["integration"] == "github" and item["status"] == "connected"
    assert item["has_refresh_token"] and item["access_expires_at"] is not None
    assert item["connected_by"] == f"user:{tenant.admin}"
    assert [row[0] for row in stored(admin_conn, tenant.id)] == ["github"]

    def audited() -> list[dict[str, Any]] | None:
        resp = httpx.get(
            f"{ostack.ingress_url}/v1/companies/{tenant.id}/activity",
            params={"action": "integration.connected"},
            headers=tenant.headers(),
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        items: list[dict[str, Any]] = resp.json()["items"]
        return items or None

    (row,) = wait_for(audited)
    assert row["actor_type"] == "user" and row["actor_id"] == tenant.admin
    assert row["target"] == "integration:github"
    assert row["payload"]["by"] == "oauth"


def test_an_admin_installing_slack_connects_the_workspace(
    ostack: Stack, tenant: Tenant, admin_conn: psycopg.Connection[Any]
) -> None:
    team = f"T{uuid.uuid4().hex[:8].upper()}"
    url = httpx.URL(authorize(ostack, tenant, "slack")["authorize_url"])
    page = browse(url.copy_merge_params({"team": team}))
    assert page.status_code == 200 and reason(page) == "connected", page.text
    assert "Slack is connected" in page.text
    (item,) = listed(ostack, tenant)
    assert item["integration"] == "slack" and item["status"] == "connected"
    assert item["account"] == f"Workspace {team}"
    assert ",".join(item["scopes"]) == SLACK_SCOPES
    assert stored(admin_conn, tenant.id, "slack")[0][2] == f"Workspace {team}"


def test_a_replayed_callback_is_refused_and_changes_nothing(
    ostack: Stack, tenant: Tenant, admin_conn: psycopg.Connection[Any]
) -> None:
    callback = approve(authorize(ostack, tenant, "github")["authorize_url"], login="replayer")
    first = browse(callback)
    assert first.status_code == 200 and reason(first) == "connected", first.text
    before = stored(admin_conn, tenant.id, "github")
    assert [row[1] for row in before] == [1]

    again = browse(callback)
    assert again.status_code == 400 and reason(again) == "state_used", again.text
    assert stored(admin_conn, tenant.id, "github") == before
    assert [i["status"] for i in listed(ostack, tenant)] == ["connected"]


def test_a_forged_or_altered_state_is_refused_and_stores_nothing(
    ostack: Stack, tenant: Tenant, other_tenant: Tenant, admin_conn: psycopg.Connection[Any]
) -> None:
    callback = approve(authorize(ostack, tenant, "github")["authorize_url"], login="forger")
    state = params(callback)["state"]
    body, _, signature = state.partition(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    claims = json.loads(_unb64(body))
    assert claims["c"] == str(tenant.id)
    elsewhere = _b64(
        json.dumps(claims | {"c": str(other_tenant.id)}, separators=(",", ":")).encode()
    )
    forgeries = {
        "signature changed": f"{body}.{flipped}",
        "another company, signature kept": f"{elsewhere}.{signature}",
        "no signature": body,
        "not a state at all": "not-a-state",
    }
    for case, forged in forgeries.items():
        page = browse(with_params(callback, state=forged))
        assert page.status_code == 400 and reason(page) == "state_invalid", (case, page.text)
    assert stored(admin_conn, tenant.id) == [] and stored(admin_conn, other_tenant.id) == []
    assert listed(ostack, tenant) == [] and listed(ostack, other_tenant) == []

    # The genuine link still works, and connects the company it was issued for, only.
    page = browse(callback)
    assert page.status_code == 200 and reason(page) == "connected", page.text
    assert [row[0] for row in stored(admin_conn, tenant.id)] == ["github"]
    assert stored(admin_conn, other_tenant.id) == []


def test_a_github_state_at_the_slack_callback_is_refused(
    ostack: Stack, tenant: Tenant, admin_conn: psycopg.Connection[Any]
) -> None:
    callback = approve(authorize(ostack, tenant, "github")["authorize_url"], login="crosser")
    at_slack = callback.replace("/v1/oauth/github/callback", "/v1/oauth/slack/callback")
    assert at_slack != callback
    page = browse(at_slack)
    assert page.status_code == 400 and reason(page) == "state_invalid", page.text
    assert stored(admin_conn, tenant.id) == []
    assert listed(ostack, tenant) == []


def test_an_expired_state_is_refused(
    ostack: Stack, tenant: Tenant, admin_conn: psycopg.Connection[Any]
) -> None:
    client = redis.Redis.from_url(ostack.settings.redis_url)
    states = OAuthStates(client, Secret(STATE_SECRET), ttl_s=1)
    admin = Actor(type=ActorType.user, id=tenant.admin)
    state, grant = states.issue(tenant.id, "github", admin, None)
    client.close()
    begun = authorize(ostack, tenant, "github")["authorize_url"]
    consent = with_params(begun, state=state, code_challenge=None, code_challenge_method=None)
    callback = approve(consent, login="latecomer")  # a genuine code, with the short-lived state
    assert params(callback)["state"] == state
    while time.time() <= grant.expires:
        time.sleep(0.1)
    page = browse(callback)
    assert page.status_code == 400 and reason(page) == "state_expired", page.text
    assert stored(admin_conn, tenant.id) == []


def test_an_admin_declining_stores_nothing_and_the_waiting_command_says_why(
    ostack: Stack, tenant: Tenant, admin_conn: psycopg.Connection[Any]
) -> None:
    proc = connect_cli(ostack, tenant.id, "github")
    try:
        state = params(printed_url(proc))["state"]
        declined = f"{ostack.ingress_url}/v1/oauth/github/callback"
        page = browse(httpx.URL(declined, params={"error": "access_denied", "state": state}))
        assert page.status_code == 400 and reason(page) == "declined", page.text
        status, lines = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert status != 0
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "declined" in errors[0], lines
    assert "Traceback" not in "\n".join(lines)
    assert stored(admin_conn, tenant.id) == []


def test_a_code_the_provider_refuses_stores_nothing(
    ostack: Stack, tenant: Tenant, admin_conn: psycopg.Connection[Any]
) -> None:
    state = params(authorize(ostack, tenant, "github")["authorize_url"])["state"]
    callback = httpx.URL(
        f"{ostack.ingress_url}/v1/oauth/github/callback",
        params={"code": "made-up-code-0123456789", "state": state},
    )
    page = browse(callback)
    assert page.status_code == 400 and reason(page) == "provider_refused", page.text
    assert stored(admin_conn, tenant.id) == []
    assert listed(ostack, tenant) == []


def test_the_connect_command_waits_for_the_browser_and_says_it_is_connected(
    ostack: Stack, tenant: Tenant, admin_conn: psycopg.Connection[Any], github_standin: str
) -> None:
    proc = connect_cli(ostack, tenant.id, "github")
    try:
        url = printed_url(proc)
        assert url.startswith(github_standin + "/login/oauth/authorize?")
        page = browse(httpx.URL(url).copy_merge_params({"login": "operator-approved"}))
        assert page.status_code == 200 and reason(page) == "connected", page.text
        status, lines = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert status == 0, lines
    assert lines[-1] == "github is connected", lines
    assert not [line for line in lines if line.startswith("error:")]
    ((integration, _, _, by),) = stored(admin_conn, tenant.id)
    assert integration == "github" and by == "operator:cli"


def test_the_callback_page_never_echoes_the_code_or_the_state(
    ostack: Stack, tenant: Tenant
) -> None:
    connected = approve(authorize(ostack, tenant, "github")["authorize_url"], login="quiet")
    refused = approve(authorize(ostack, tenant, "github")["authorize_url"], login="quiet")
    declined_state = params(authorize(ostack, tenant, "github")["authorize_url"])["state"]
    callback = f"{ostack.ingress_url}/v1/oauth/github/callback"
    pages = {
        "connected": connected,
        "state_used": connected,
        "state_invalid": with_params(refused, state=params(refused)["state"] + "x"),
        "declined": str(
            httpx.URL(callback, params={"error": "access_denied", "state": declined_state})
        ),
    }
    for expected, url in pages.items():
        page = browse(url)
        assert reason(page) == expected, page.text
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert page.headers["content-type"].startswith("text/html")
        for given in params(url).values():
            assert given not in page.text, (expected, given)


def test_two_companies_connecting_github_each_get_their_own_account(
    ostack: Stack,
    tenant: Tenant,
    other_tenant: Tenant,
    admin_conn: psycopg.Connection[Any],
    rds: redis.Redis,
    vault_key: str,
    github_standin: str,
) -> None:
    logins = {
        tenant.id: f"acme-{uuid.uuid4().hex[:6]}",
        other_tenant.id: f"globex-{uuid.uuid4().hex[:6]}",
    }
    for company in (tenant, other_tenant):
        consent = authorize(ostack, company, "github")["authorize_url"]
        page = browse(httpx.URL(consent).copy_merge_params({"login": logins[company.id]}))
        assert page.status_code == 200 and reason(page) == "connected", page.text

    vault = vault_for(ostack.settings, rds, vault_key)
    for company in (tenant, other_tenant):
        (item,) = listed(ostack, company)
        assert item["integration"] == "github" and item["connected_by"] == f"user:{company.admin}"
        row = admin_conn.execute(
            "SELECT id, access_token FROM integration_credentials"
            " WHERE company_id = %s AND integration = 'github'",
            (company.id,),
        ).fetchone()
        assert row is not None
        token = unseal(
            vault,
            bytes(row[1]),
            company_id=company.id,
            integration="github",
            credential_id=row[0],
            field=ACCESS,
        )
        me = httpx.get(
            github_standin + "/user",
            headers={
                "Authorization": f"Bearer {token.reveal()}",
                "Accept": "application/vnd.github+json",
            },
            timeout=30,
        )
        assert me.status_code == 200, me.text
        assert me.json()["login"] == logins[company.id]

    other_list = httpx.get(
        f"{ostack.ingress_url}/v1/companies/{other_tenant.id}/integrations",
        headers=tenant.headers(),
        timeout=30,
    )
    assert other_list.status_code == 403


def test_an_admin_demoted_before_the_callback_connects_nothing(
    ostack: Stack, tenant: Tenant, admin_conn: psycopg.Connection[Any]
) -> None:
    """The state names who began; the callback checks they are still an admin."""
    callback = approve(authorize(ostack, tenant, "github")["authorize_url"], login="demoted")
    admin_conn.execute(
        "UPDATE memberships SET role = 'member' WHERE company_id = %s AND user_id = %s",
        (tenant.id, tenant.admin),
    )
    page = browse(callback)
    assert page.status_code == 400 and reason(page) == "not_admin", page.text
    assert stored(admin_conn, tenant.id) == []
