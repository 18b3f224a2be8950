"""The GitHub stand-in, run as its own process and driven by a real httpx client.

One server serves the module (each test uses its own logins and repositories, so tests do
not see each other's data); a second one, with a one-second token lifetime and a tiny rate
limit, serves the tests of expiry and exhaustion. Assertions are what a client would notice:
statuses, headers and bodies.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest

from standins.github import CLIENT_ID, CLIENT_SECRET, pkce_challenge
from system2.procs import Proc, free_port, wait_http

REDIRECT = "http://127.0.0.1:9/callback"
JSON = {"Accept": "application/json"}
ISSUES_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@contextlib.contextmanager
def standin(log: Path, *flags: str) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "standins.github", "--port", str(port), *flags]
    proc = Proc("github-standin", argv, log_path=log).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/", proc=proc)
        yield url
    finally:
        proc.stop()


class Hub:
    """A client of one stand-in, with the steps every test repeats."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def authorize(self, login: str, **params: str) -> httpx.Response:
        query = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT, "state": "st", "login": login}
        return self.http.get("/login/oauth/authorize", params={**query, **params})

    def code(self, login: str, **params: str) -> str:
        reply = self.authorize(login, **params)
        assert reply.status_code == 302, reply.text
        found = parse_qs(urlsplit(reply.headers["location"]).query)
        assert found["state"] == ["st"]
        return found["code"][0]

    def token(self, accept_json: bool = True, **form: str) -> httpx.Response:
        data = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **form}
        headers = JSON if accept_json else {}
        return self.http.post("/login/oauth/access_token", data=data, headers=headers)

    def connect(self, login: str) -> dict[str, Any]:
        reply = self.token(code=self.code(login), redirect_uri=REDIRECT)
        body: dict[str, Any] = reply.json()
        assert "access_token" in body, body
        return body

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        body: dict[str, Any] = self.token(
            grant_type="refresh_token", refresh_token=refresh_token
        ).json()
        return body

    def seed(self, owner: str, name: str, *logins: str) -> str:
        body = {"owner": owner, "name": name, "logins": list(logins)}
        assert self.http.post("/_repos", json=body).status_code == 201
        return f"/repos/{owner}/{name}"

    def fault(self, **rule: Any) -> None:
        reply = self.http.post("/_faults", json=rule)
        assert reply.status_code == 201, reply.text

    def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = self.http.get("/_stats").json()
        return body


def auth(token: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}", "X-GitHub-Api-Version": "2022-11-28"}


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with standin(tmp_path_factory.mktemp("logs") / "github.log") as url:
        client = Hub(url)
        yield client
        client.http.close()


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """Tokens that live one second and a core budget of three requests."""
    log = tmp_path_factory.mktemp("logs") / "github-short.log"
    with standin(log, "--access-ttl", "1", "--rate-limit", "3") as url:
        client = Hub(url)
        yield client
        client.http.close()


@pytest.fixture(autouse=True)
def _no_faults_left(hub: Hub) -> Iterator[None]:
    yield
    hub.http.delete("/_faults")


@pytest.fixture
def octo(hub: Hub) -> tuple[str, str, str]:
    """(login, access token, repository path) of a fresh user owning a private repo."""
    login = name("octo")
    token = hub.connect(login)["access_token"]
    return login, token, hub.seed(login, name("repo"), login)


def new_issue(hub: Hub, token: str, repo: str, **fields: Any) -> dict[str, Any]:
    reply = hub.http.post(f"{repo}/issues", json={"title": "t", **fields}, headers=auth(token))
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body


# --- OAuth --------------------------------------------------------------------------------


def test_authorize_redirects_with_code_and_state_keeping_the_callback_query(hub: Hub) -> None:
    reply = hub.authorize("octocat", redirect_uri=REDIRECT + "?keep=1")
    assert reply.status_code == 302
    location = urlsplit(reply.headers["location"])
    query = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    assert query["keep"] == ["1"] and query["state"] == ["st"]
    assert re.fullmatch(r"[0-9a-f]{20}", query["code"][0])


def test_authorize_with_an_unknown_client_is_an_html_404_without_redirect(hub: Hub) -> None:
    reply = hub.authorize("octocat", client_id="someone-else")
    assert reply.status_code == 404
    assert "location" not in reply.headers
    assert reply.headers["content-type"].startswith("text/html")


def test_code_exchange_gives_github_app_user_tokens(hub: Hub) -> None:
    body = hub.token(code=hub.code(name("u")), redirect_uri=REDIRECT).json()
    assert re.fullmatch(r"ghu_[A-Za-z0-9]{36}", body["access_token"])
    assert re.fullmatch(r"ghr_[A-Za-z0-9]{76}", body["refresh_token"])
    assert body["expires_in"] == 28800
    assert body["refresh_token_expires_in"] == 15897600
    assert (body["scope"], body["token_type"]) == ("", "bearer")


def test_token_reply_is_form_encoded_unless_json_is_asked_for(hub: Hub) -> None:
    reply = hub.token(accept_json=False, code=hub.code(name("u")))
    assert reply.headers["content-type"].startswith("application/x-www-form-urlencoded")
    form = dict(parse_qsl(reply.text, keep_blank_values=True))
    assert form["access_token"].startswith("ghu_") and form["token_type"] == "bearer"
    refused = hub.token(accept_json=False, code="0" * 20)
    assert refused.status_code == 200
    assert dict(parse_qsl(refused.text))["error"] == "bad_verification_code"


def test_pkce_right_verifier_passes_and_a_wrong_one_is_a_bad_code(hub: Hub) -> None:
    verifier = secrets.token_urlsafe(48)
    challenge = {"code_challenge": pkce_challenge(verifier), "code_challenge_method": "S256"}
    good = hub.token(code=hub.code(name("u"), **challenge), code_verifier=verifier)
    assert good.json()["access_token"].startswith("ghu_")
    wrong = hub.token(code=hub.code(name("u"), **challenge), code_verifier=verifier[::-1])
    assert wrong.status_code == 200
    body = wrong.json()
    assert body["error"] == "bad_verification_code"
    assert body["error_uri"].startswith("https://docs.github.com/")
    missing = hub.token(code=hub.code(name("u"), **challenge))
    assert missing.json()["error"] == "bad_verification_code"


def test_pkce_needs_s256(hub: Hub) -> None:
    reply = hub.authorize("octocat", code_challenge="a" * 43, code_challenge_method="plain")
    assert reply.status_code == 302
    query = parse_qs(urlsplit(reply.headers["location"]).query)
    assert query["error"] == ["invalid_request"] and "code" not in query


def test_code_is_single_use_and_tied_to_its_redirect_uri(hub: Hub) -> None:
    code = hub.code(name("u"))
    assert "access_token" in hub.token(code=code).json()
    assert hub.token(code=code).json()["error"] == "bad_verification_code"
    mismatch = hub.token(code=hub.code(name("u")), redirect_uri="http://127.0.0.1:9/other")
    assert mismatch.json()["error"] == "redirect_uri_mismatch"


def test_wrong_client_secret_is_incorrect_client_credentials(hub: Hub) -> None:
    code = hub.code(name("u"))
    reply = hub.token(code=code, client_secret="nope")
    assert reply.status_code == 200
    assert reply.json()["error"] == "incorrect_client_credentials"
    basic = hub.http.post(
        "/login/oauth/access_token",
        data={"code": code},
        auth=(CLIENT_ID, CLIENT_SECRET),
        headers=JSON,
    )
    assert basic.json()["access_token"].startswith("ghu_")  # the refused try left the code


def test_refresh_rotates_and_a_used_refresh_token_is_refused(hub: Hub) -> None:
    login = name("u")
    first = hub.connect(login)
    second = hub.refresh(first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    before = hub.stats()["refresh_reuse_refused"]
    reused = hub.refresh(first["refresh_token"])
    assert reused["error"] == "bad_refresh_token"
    assert hub.stats()["refresh_reuse_refused"] == before + 1
    # GitHub: once a refresh token is used, the access token issued with it stops working.
    assert hub.http.get("/user", headers=auth(first["access_token"])).status_code == 401
    me = hub.http.get("/user", headers=auth(second["access_token"]))
    assert me.status_code == 200 and me.json()["login"] == login
    assert "error" not in hub.refresh(second["refresh_token"])


def test_revoked_user_loses_api_access_and_refresh(hub: Hub) -> None:
    login = name("u")
    tokens = hub.connect(login)
    assert hub.http.post("/_revoke", json={"login": login}).json()["revoked"] == 2
    reply = hub.http.get("/user", headers=auth(tokens["access_token"]))
    assert reply.status_code == 401
    assert reply.json()["message"] == "Bad credentials"
    assert hub.refresh(tokens["refresh_token"])["error"] == "bad_refresh_token"


def test_access_tokens_expire_and_refresh_brings_a_working_one(short: Hub) -> None:
    tokens = short.connect(name("u"))
    assert tokens["expires_in"] == 1
    time.sleep(1.2)
    assert short.http.get("/rate_limit", headers=auth(tokens["access_token"])).status_code == 401
    fresh = short.refresh(tokens["refresh_token"])
    assert short.http.get("/rate_limit", headers=auth(fresh["access_token"])).status_code == 200


# --- REST: auth, versions, errors ---------------------------------------------------------


def test_credentials_are_required_and_checked(hub: Hub, octo: tuple[str, str, str]) -> None:
    _, token, repo = octo
    missing = hub.http.get(f"{repo}/issues")
    assert missing.status_code == 401
    assert missing.json() == {
        "message": "Requires authentication",
        "documentation_url": "https://docs.github.com/rest",
        "status": "401",
    }
    bogus = hub.http.get(f"{repo}/issues", headers=auth("ghu_" + "x" * 36))
    assert bogus.status_code == 401 and bogus.json()["message"] == "Bad credentials"
    assert "x-github-request-id" in bogus.headers
    assert hub.http.get(f"{repo}/issues", headers=auth(token, "token")).status_code == 200


def test_api_versions(hub: Hub, octo: tuple[str, str, str]) -> None:
    _, token, repo = octo
    plain = {"Authorization": f"Bearer {token}"}
    default = hub.http.get(f"{repo}/issues", headers=plain)
    assert default.headers["x-github-api-version-selected"] == "2022-11-28"
    newer = hub.http.get(f"{repo}/issues", headers={**plain, "X-GitHub-Api-Version": "2026-03-10"})
    assert newer.headers["x-github-api-version-selected"] == "2026-03-10"
    bad = hub.http.get(f"{repo}/issues", headers={**plain, "X-GitHub-Api-Version": "v3"})
    assert bad.status_code == 400
    assert bad.json()["message"] == "Bad Request"
    assert '"v3", is not a supported version' in bad.json()["errors"]


def test_unknown_paths_and_methods_are_github_404s(hub: Hub, octo: tuple[str, str, str]) -> None:
    _, token, repo = octo
    for reply in (
        hub.http.get("/nope", headers=auth(token)),
        hub.http.delete(f"{repo}/issues", headers=auth(token)),
        hub.http.get(f"{repo}/issues/abc", headers=auth(token)),
    ):
        assert reply.status_code == 404
        assert reply.json()["message"] == "Not Found"
        assert reply.json()["status"] == "404"


def test_a_private_repo_is_invisible_to_another_user(hub: Hub) -> None:
    alice, bob = name("alice"), name("bob")
    a, b = hub.connect(alice)["access_token"], hub.connect(bob)["access_token"]
    private = hub.seed(alice, name("secret"), alice)
    new_issue(hub, a, private, title="only alice")
    assert hub.http.get(f"{private}/issues", headers=auth(b)).status_code == 404
    assert hub.http.get(f"{private}/issues/1", headers=auth(b)).status_code == 404
    found = hub.http.get("/search/issues", params={"q": "only alice is:issue"}, headers=auth(b))
    assert found.json()["total_count"] == 0
    mine = hub.http.get("/search/issues", params={"q": "only alice is:issue"}, headers=auth(a))
    assert mine.json()["total_count"] == 1


def test_rate_limit_headers_count_down(hub: Hub, octo: tuple[str, str, str]) -> None:
    _, token, repo = octo
    first = hub.http.get(f"{repo}/issues", headers=auth(token))
    second = hub.http.get(f"{repo}/issues", headers=auth(token))
    for reply in (first, second):
        assert all(h in reply.headers for h in ISSUES_HEADERS)
        assert reply.headers["x-ratelimit-resource"] == "core"
        assert reply.headers["x-ratelimit-limit"] == "5000"
    left = int(first.headers["x-ratelimit-remaining"])
    assert int(second.headers["x-ratelimit-remaining"]) == left - 1
    assert int(second.headers["x-ratelimit-used"]) == 5000 - left + 1
    assert int(first.headers["x-ratelimit-reset"]) > time.time()
    search = hub.http.get("/search/issues", params={"q": "is:issue"}, headers=auth(token))
    assert search.headers["x-ratelimit-resource"] == "search"
    assert search.headers["x-ratelimit-limit"] == "30"


def test_spent_budget_is_the_primary_rate_limit(short: Hub) -> None:
    token = short.connect(name("u"))["access_token"]
    for _ in range(3):
        assert short.http.get("/user", headers=auth(token)).status_code == 200
    refused = short.http.get("/user", headers=auth(token))
    assert refused.status_code == 403
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["x-ratelimit-reset"]) > time.time()
    assert refused.json()["message"].startswith("API rate limit exceeded for user ID ")
    assert short.stats()["rate_limited"] >= 1


# --- REST: issues -------------------------------------------------------------------------


def test_issue_lifecycle(hub: Hub, octo: tuple[str, str, str]) -> None:
    login, token, repo = octo
    reply = hub.http.post(
        f"{repo}/issues",
        json={"title": "Crash", "body": "boom", "labels": ["bug"], "assignees": [login]},
        headers=auth(token),
    )
    assert reply.status_code == 201
    issue = reply.json()
    assert reply.headers["location"] == issue["url"] == f"{hub.url}{repo}/issues/1"
    assert issue["number"] == 1 and issue["state"] == "open" and issue["closed_at"] is None
    assert issue["html_url"] == f"https://github.com{repo.removeprefix('/repos')}/issues/1"
    assert issue["user"]["login"] == login and issue["author_association"] == "OWNER"
    assert issue["labels"][0]["name"] == "bug" and issue["labels"][0]["default"] is True
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", issue["created_at"])

    comment = hub.http.post(
        f"{repo}/issues/1/comments", json={"body": "on it"}, headers=auth(token)
    )
    assert comment.status_code == 201 and comment.json()["body"] == "on it"
    assert comment.json()["issue_url"] == issue["url"]

    labels = hub.http.post(f"{repo}/issues/1/labels", json={"labels": ["p1"]}, headers=auth(token))
    assert labels.status_code == 200
    assert [label["name"] for label in labels.json()] == ["bug", "p1"]
    assert re.fullmatch(r"[0-9a-f]{6}", labels.json()[1]["color"])

    closed = hub.http.patch(
        f"{repo}/issues/1",
        json={"state": "closed", "state_reason": "not_planned"},
        headers=auth(token),
    ).json()
    assert closed["state"] == "closed" and closed["state_reason"] == "not_planned"
    assert closed["closed_at"] is not None and closed["comments"] == 1

    got = hub.http.get(f"{repo}/issues/1", headers=auth(token)).json()
    assert got["state"] == "closed" and [x["name"] for x in got["labels"]] == ["bug", "p1"]
    assert hub.http.get(f"{repo}/issues/2", headers=auth(token)).status_code == 404
    state = hub.http.get("/_state").json()["repos"]
    mine = next(r for r in state if f"/repos/{r['owner']}/{r['name']}" == repo)
    assert mine["issues"][0]["comments"][0]["body"] == "on it"


def test_listing_filters(hub: Hub, octo: tuple[str, str, str]) -> None:
    _, token, repo = octo
    new_issue(hub, token, repo, title="a", labels=["bug"])
    new_issue(hub, token, repo, title="b", labels=["bug", "ui"])
    new_issue(hub, token, repo, title="c")
    hub.http.patch(f"{repo}/issues/3", json={"state": "closed"}, headers=auth(token))

    def titles(**params: str) -> list[str]:
        reply = hub.http.get(f"{repo}/issues", params=params, headers=auth(token))
        assert reply.status_code == 200, reply.text
        return [issue["title"] for issue in reply.json()]

    assert titles() == ["b", "a"]
    assert titles(state="all", direction="asc") == ["a", "b", "c"]
    assert titles(state="closed") == ["c"]
    assert titles(labels="bug,ui") == ["b"]
    assert titles(creator="someone-else") == []
    assert titles(since="2999-01-01T00:00:00Z") == []
    refused = hub.http.get(f"{repo}/issues", params={"state": "bogus"}, headers=auth(token))
    assert refused.status_code == 422 and refused.json()["message"] == "Validation Failed"


def test_link_pagination_walks_to_the_end(hub: Hub, octo: tuple[str, str, str]) -> None:
    _, token, repo = octo
    for n in range(7):
        new_issue(hub, token, repo, title=f"issue {n}")
    first = hub.http.get(f"{repo}/issues", params={"per_page": 3}, headers=auth(token))
    assert 'rel="next"' in first.headers["link"] and 'rel="last"' in first.headers["link"]
    assert 'rel="prev"' not in first.headers["link"]
    seen: list[int] = []
    reply = first
    while True:
        seen += [issue["number"] for issue in reply.json()]
        links = httpx.Response(200, headers={"link": reply.headers.get("link", "")}).links
        if "next" not in links:
            assert {"prev", "first"} <= set(links)
            break
        assert links["next"]["url"].startswith(hub.url)
        reply = hub.http.get(links["next"]["url"], headers=auth(token))
    assert seen == [7, 6, 5, 4, 3, 2, 1]


def test_comments_are_listed_oldest_first_with_pagination(
    hub: Hub, octo: tuple[str, str, str]
) -> None:
    _, token, repo = octo
    new_issue(hub, token, repo)
    for n in range(3):
        hub.http.post(f"{repo}/issues/1/comments", json={"body": f"c{n}"}, headers=auth(token))
    page = hub.http.get(f"{repo}/issues/1/comments", params={"per_page": 2}, headers=auth(token))
    assert [c["body"] for c in page.json()] == ["c0", "c1"]
    assert set(page.json()[0]) >= {"id", "node_id", "user", "html_url", "author_association"}
    last = hub.http.get(page.links["next"]["url"], headers=auth(token))
    assert [c["body"] for c in last.json()] == ["c2"]


def test_validation_errors_are_githubs(hub: Hub, octo: tuple[str, str, str]) -> None:
    _, token, repo = octo
    url = f"{repo}/issues"
    empty = hub.http.post(url, json={"title": ""}, headers=auth(token))
    assert empty.status_code == 422
    assert empty.json()["message"] == "Validation Failed"
    assert empty.json()["errors"] == [
        {"resource": "Issue", "code": "missing_field", "field": "title"}
    ]
    assert empty.json()["status"] == "422"
    absent = hub.http.post(url, json={"body": "x"}, headers=auth(token))
    assert absent.status_code == 422
    assert absent.json()["message"] == 'Invalid request.\n\n"title" wasn\'t supplied.'
    long = hub.http.post(url, json={"title": "t", "body": "a" * 65537}, headers=auth(token))
    assert long.status_code == 422
    assert long.json()["errors"][0]["message"] == "body is too long (maximum is 65536 characters)"
    broken = hub.http.post(url, content=b"{not json", headers=auth(token))
    assert broken.status_code == 400 and broken.json()["message"] == "Problems parsing JSON"
    new_issue(hub, token, repo)
    blank = hub.http.post(f"{url}/1/comments", json={"body": " "}, headers=auth(token))
    assert blank.status_code == 422
    assert blank.json()["errors"][0]["message"] == "Body cannot be blank"
    huge = hub.http.post(url, content=b"x" * (1 << 21), headers=auth(token))
    assert huge.status_code == 413


def test_search(hub: Hub, octo: tuple[str, str, str]) -> None:
    login, token, repo = octo
    full = repo.removeprefix("/repos/")
    new_issue(hub, token, repo, title="Printer on fire", body="smoke", labels=["bug"])
    new_issue(hub, token, repo, title="Paper jam", body="the printer again")

    def numbers(q: str, **params: str) -> list[int]:
        reply = hub.http.get("/search/issues", params={"q": q, **params}, headers=auth(token))
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["incomplete_results"] is False
        assert body["total_count"] == len(body["items"]) or "per_page" in params
        return sorted(item["number"] for item in body["items"])

    assert numbers(f"repo:{full} is:issue printer") == [1, 2]
    assert numbers(f"repo:{full} is:issue PRINTER in:title") == [1]
    assert numbers(f"repo:{full} is:issue label:bug") == [1]
    assert numbers(f"repo:{full} is:issue author:{login} is:open") == [1, 2]
    assert numbers(f"repo:{full} is:issue is:closed") == []
    assert numbers(f"repo:{full} is:pr") == []
    paged = hub.http.get(
        "/search/issues", params={"q": f"repo:{full} is:issue", "per_page": 1}, headers=auth(token)
    )
    assert paged.json()["total_count"] == 2 and 'rel="next"' in paged.headers["link"]
    untyped = hub.http.get("/search/issues", params={"q": f"repo:{full}"}, headers=auth(token))
    assert untyped.status_code == 422
    missing = hub.http.get("/search/issues", headers=auth(token))
    assert missing.status_code == 422 and missing.json()["errors"][0]["code"] == "missing"


# --- faults -------------------------------------------------------------------------------


def test_primary_rate_limit_fault(hub: Hub, octo: tuple[str, str, str]) -> None:
    _, token, repo = octo
    hub.fault(kind="primary_rate_limit", reset_s=120, count=1, paths=[repo])
    reply = hub.http.get(f"{repo}/issues", headers=auth(token))
    assert reply.status_code == 403
    assert reply.headers["x-ratelimit-remaining"] == "0"
    assert int(reply.headers["x-ratelimit-reset"]) >= int(time.time()) + 110
    assert reply.json()["message"].startswith("API rate limit exceeded for user ID")
    assert hub.http.get(f"{repo}/issues", headers=auth(token)).status_code == 200


@pytest.mark.parametrize("status", [403, 429])
def test_secondary_rate_limit_fault(hub: Hub, octo: tuple[str, str, str], status: int) -> None:
    _, token, repo = octo
    hub.fault(kind="secondary_rate_limit", status=status, retry_after_s=7, count=1)
    reply = hub.http.post(f"{repo}/issues", json={"title": "x"}, headers=auth(token))
    assert reply.status_code == status
    assert reply.headers["retry-after"] == "7"
    assert reply.json()["message"].startswith("You have exceeded a secondary rate limit")
    assert reply.headers["x-ratelimit-remaining"] != "0"
    assert hub.http.get(f"{repo}/issues/1", headers=auth(token)).status_code == 404  # not made


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_error_faults_then_recovery(
    hub: Hub, octo: tuple[str, str, str], status: int
) -> None:
    _, token, repo = octo
    hub.fault(status=status, count=1)
    assert hub.http.get(f"{repo}/issues", headers=auth(token)).status_code == status
    assert hub.http.get(f"{repo}/issues", headers=auth(token)).status_code == 200


def test_html_fault_is_a_proxy_page(hub: Hub, octo: tuple[str, str, str]) -> None:
    _, token, repo = octo
    hub.fault(status=502, html=True, count=1)
    reply = hub.http.get(f"{repo}/issues", headers=auth(token))
    assert reply.status_code == 502
    assert reply.headers["content-type"].startswith("text/html")
    assert "<html" in reply.text


def test_delay_fault_performs_the_request_even_after_a_client_timeout(
    hub: Hub, octo: tuple[str, str, str]
) -> None:
    _, token, repo = octo
    hub.fault(delay_s=0.6, count=1, methods=["POST"], paths=[repo])
    with pytest.raises(httpx.ReadTimeout):
        hub.http.post(f"{repo}/issues", json={"title": "late"}, headers=auth(token), timeout=0.2)
    deadline = time.monotonic() + 5
    while (got := hub.http.get(f"{repo}/issues/1", headers=auth(token))).status_code == 404:
        assert time.monotonic() < deadline, "the held request was never performed"
        time.sleep(0.05)
    assert got.json()["title"] == "late"


def test_after_fault_performs_then_fails(hub: Hub, octo: tuple[str, str, str]) -> None:
    _, token, repo = octo
    hub.fault(status=502, after=True, count=1, methods=["POST"])
    reply = hub.http.post(f"{repo}/issues", json={"title": "made"}, headers=auth(token))
    assert reply.status_code == 502
    assert hub.http.get(f"{repo}/issues/1", headers=auth(token)).json()["title"] == "made"


def test_faults_can_target_one_user(hub: Hub) -> None:
    alice, bob = name("alice"), name("bob")
    a, b = hub.connect(alice)["access_token"], hub.connect(bob)["access_token"]
    hub.fault(status=503, logins=[alice])
    assert hub.http.get("/user", headers=auth(a)).status_code == 503
    assert hub.http.get("/user", headers=auth(b)).status_code == 200
    assert hub.http.get("/_faults").json()["faults"][0]["hits"] == 1


def test_fault_rules_are_checked(hub: Hub) -> None:
    assert hub.http.post("/_faults", json={"status": 418}).status_code == 400
    assert (
        hub.http.post("/_faults", json={"kind": "primary_rate_limit", "status": 500}).status_code
        == 400
    )
    assert hub.http.post("/_faults", json={"bogus": 1}).status_code == 400


def test_journal_and_stats_hold_no_tokens(hub: Hub, octo: tuple[str, str, str]) -> None:
    login, token, repo = octo
    hub.http.get(f"{repo}/issues", headers={**auth(token), "Accept": "application/vnd.github+json"})
    entries = hub.http.get("/_requests", params={"login": login}).json()["requests"]
    last = entries[-1]
    assert (last["method"], last["path"], last["status"]) == ("GET", f"{repo}/issues", 200)
    assert last["api_version"] == "2022-11-28"
    assert last["accept"] == "application/vnd.github+json"
    everything = hub.http.get("/_requests").text + hub.http.get("/_stats").text
    assert token not in everything and token[4:] not in everything
    assert hub.stats()["codes_exchanged"] >= 1


def test_concurrent_refreshes_of_one_token_lose_it_for_one_caller(hub: Hub) -> None:
    """No grace window: the second of two simultaneous refreshes is refused."""
    refresh_token = hub.connect(name("u"))["refresh_token"]
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: hub.refresh(refresh_token), range(4)))
    assert sum("access_token" in reply for reply in replies) == 1
    assert sum(reply.get("error") == "bad_refresh_token" for reply in replies) == 3


def test_concurrent_creates_get_distinct_numbers(hub: Hub, octo: tuple[str, str, str]) -> None:
    _, token, repo = octo
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda n: new_issue(hub, token, repo, title=f"n{n}"), range(8)))
    assert sorted(issue["number"] for issue in made) == list(range(1, 9))
