"""The Slack stand-in, in its own process, driven by a real httpx client.

Three servers per module: the default one (token rotation on, 12-hour tokens), one whose
tokens expire after a second, and one with rotation off whose app credentials come from
the environment. Every test works in workspaces of its own, so they share a server freely;
injected faults are cleared after each test.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from standins.slack import ACCESS_PREFIX, BOT_PREFIX, REFRESH_PREFIX
from system2.procs import Proc, free_port, wait_http

CLIENT_ID = "system2-slack"
SECRET = "slack-secret"
REDIRECT = "http://127.0.0.1:9/slack/callback"
SCOPES = "channels:read,channels:history,chat:write"
TS = re.compile(r"\d{10}\.\d{6}")


@dataclass
class Stand:
    """One stand-in process and a client for it."""

    url: str
    http: httpx.Client
    client_id: str = CLIENT_ID
    secret: str = SECRET

    def authorize(self, team: str, scope: str = SCOPES, **extra: str) -> str:
        query = {"client_id": self.client_id, "scope": scope, "redirect_uri": REDIRECT}
        reply = self.http.get("/oauth/v2/authorize", params={**query, "team": team, **extra})
        assert reply.status_code == 302, reply.text
        code: str = parse_qs(urlsplit(reply.headers["location"]).query)["code"][0]
        return code

    def access(self, basic: bool = True, **form: str) -> dict[str, Any]:
        """``oauth.v2.access``, with the client credentials as Basic auth or form fields."""
        if basic:
            reply = self.http.post(
                "/api/oauth.v2.access", data=form, auth=(self.client_id, self.secret)
            )
        else:
            creds = {"client_id": self.client_id, "client_secret": self.secret}
            reply = self.http.post("/api/oauth.v2.access", data={**form, **creds})
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def install(self, team: str, scope: str = SCOPES) -> dict[str, Any]:
        body = self.access(code=self.authorize(team, scope), redirect_uri=REDIRECT)
        assert body["ok"], body
        return body

    def api(self, method: str, token: str | None, **args: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.post(f"/api/{method}", data=args, headers=headers)

    def ok(self, method: str, token: str, **args: Any) -> dict[str, Any]:
        reply = self.api(method, token, **args)
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        assert body["ok"] is True, body
        return body

    def error(self, method: str, token: str | None, **args: Any) -> str:
        reply = self.api(method, token, **args)
        assert reply.status_code == 200 and reply.json()["ok"] is False, reply.text
        error: str = reply.json()["error"]
        return error

    def channel(self, team: str, name: str, member: bool = True, **flags: bool) -> str:
        body = {"team": team, "name": name, "member": member, **flags}
        reply = self.http.post("/_channels", json=body)
        assert reply.status_code in (200, 201), reply.text
        channel_id: str = reply.json()["id"]
        return channel_id

    def fault(self, **rule: Any) -> dict[str, Any]:
        reply = self.http.post("/_faults", json=rule)
        assert reply.status_code == 201, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def messages(self, team: str, channel_id: str) -> list[dict[str, Any]]:
        state = self.http.get("/_state").json()
        channels = state["teams"][team]["channels"]
        found: list[dict[str, Any]] = next(c for c in channels if c["id"] == channel_id)["messages"]
        return found


def team_id() -> str:
    return "T" + uuid.uuid4().hex[:10].upper()


def _serve(tmp_path_factory: pytest.TempPathFactory, name: str, *flags: str) -> Iterator[Stand]:
    port = free_port()
    argv = [sys.executable, "-m", "standins.slack", "--port", str(port), *flags]
    log = tmp_path_factory.mktemp("logs") / f"{name}.log"
    proc = Proc(name, argv, log_path=log).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/", proc=proc)
        with httpx.Client(base_url=url, timeout=10) as http:
            yield Stand(url, http)
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def slack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stand]:
    yield from _serve(tmp_path_factory, "slack")


@pytest.fixture(scope="module")
def brief(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stand]:
    """Bot tokens that live one second."""
    yield from _serve(tmp_path_factory, "slack-brief", "--access-ttl", "1")


@pytest.fixture(scope="module")
def static(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stand]:
    """Rotation off; the app's credentials from the command line."""
    flags = ("--no-rotation", "--client-id", "env-app", "--client-secret", "env-secret")
    for stand in _serve(tmp_path_factory, "slack-static", *flags):
        stand.client_id, stand.secret = "env-app", "env-secret"
        yield stand


@pytest.fixture(autouse=True)
def _no_faults_left(slack: Stand) -> Iterator[None]:
    yield
    slack.http.delete("/_faults")


@pytest.fixture
def team(slack: Stand) -> str:
    return team_id()


@pytest.fixture
def bot(slack: Stand, team: str) -> str:
    """A bot token of a fresh workspace."""
    token: str = slack.install(team)["access_token"]
    return token


# --- OAuth v2 -----------------------------------------------------------------------------


def test_authorize_redirects_back_with_code_and_state(slack: Stand) -> None:
    query = {
        "client_id": CLIENT_ID,
        "scope": SCOPES,
        "user_scope": "search:read",
        "redirect_uri": REDIRECT + "?keep=1",
        "state": "st-1",
    }
    reply = slack.http.get("/oauth/v2/authorize", params=query)
    assert reply.status_code == 302
    location = urlsplit(reply.headers["location"])
    params = parse_qs(location.query)
    assert location.path == "/slack/callback" and params["keep"] == ["1"]
    assert params["state"] == ["st-1"] and params["code"][0]
    body = slack.access(code=params["code"][0], redirect_uri=REDIRECT + "?keep=1")
    assert body["team"]["id"] == "T0000DEMO"  # the default workspace

    for bad in (
        {"client_id": "intruder"},
        {"scope": "channels:read chat:write"},
        {"redirect_uri": "/cb"},
    ):
        page = slack.http.get("/oauth/v2/authorize", params={**query, **bad})
        assert page.status_code == 400 and "location" not in page.headers
        assert page.headers["content-type"].startswith("text/html")


def test_code_exchange_gives_a_rotating_token_pair(slack: Stand, team: str) -> None:
    body = slack.access(code=slack.authorize(team), redirect_uri=REDIRECT)
    assert body["ok"] is True and body["token_type"] == "bot"
    assert body["access_token"].startswith(ACCESS_PREFIX)
    assert body["refresh_token"].startswith(REFRESH_PREFIX)
    assert body["expires_in"] == 43200 and body["scope"] == SCOPES
    assert body["team"] == {"id": team, "name": body["team"]["name"]}
    assert body["enterprise"] is None and body["is_enterprise_install"] is False
    assert body["app_id"].startswith("A") and body["bot_user_id"].startswith("U")
    assert body["authed_user"]["id"].startswith("U")
    me = slack.ok("auth.test", body["access_token"])
    assert me["team_id"] == team and me["user_id"] == body["bot_user_id"]
    assert me["bot_id"].startswith("B") and me["url"].startswith("https://")


def test_codes_work_once_with_either_credential_style(slack: Stand, team: str) -> None:
    code = slack.authorize(team)
    assert (
        slack.access(basic=False, code=code, redirect_uri=REDIRECT + "x")["error"]
        == "bad_redirect_uri"
    )
    assert slack.access(basic=False, code=code, redirect_uri=REDIRECT)["ok"] is True
    assert slack.access(code=code, redirect_uri=REDIRECT) == {"ok": False, "error": "invalid_code"}

    fresh = slack.authorize(team)
    wrong = slack.http.post("/api/oauth.v2.access", data={"code": fresh}, auth=(CLIENT_ID, "nope"))
    assert wrong.json()["error"] == "bad_client_secret"
    stranger = slack.http.post("/api/oauth.v2.access", data={"code": fresh}, auth=("x", SECRET))
    assert stranger.json()["error"] == "invalid_client_id"
    assert slack.access(grant_type="password", code=fresh)["error"] == "invalid_grant_type"
    assert slack.http.get("/_stats").json()["teams"][team]["codes_exchanged"] == 1


def test_refresh_rotates_and_a_used_refresh_token_is_refused(slack: Stand, team: str) -> None:
    first = slack.install(team)
    second = slack.access(grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert second["ok"] is True and second["access_token"].startswith(ACCESS_PREFIX)
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    # Reusing the retired refresh token (two refreshes racing) loses.
    reuse = slack.access(grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert reuse == {"ok": False, "error": "invalid_refresh_token"}
    third = slack.access(
        basic=False, grant_type="refresh_token", refresh_token=second["refresh_token"]
    )
    assert third["ok"] is True
    for token in (first, second, third):  # old access tokens live until they expire
        assert slack.ok("auth.test", token["access_token"])["team_id"] == team
    stats = slack.http.get("/_stats").json()["teams"][team]
    assert stats["refreshes"] == 2 and stats["refresh_reuse_refused"] == 1


def test_tokens_expire_and_a_refresh_brings_them_back(brief: Stand) -> None:
    team = team_id()
    body = brief.install(team)
    assert body["expires_in"] == 1
    assert brief.ok("auth.test", body["access_token"])["team_id"] == team
    time.sleep(1.1)
    assert brief.error("auth.test", body["access_token"]) == "token_expired"
    fresh = brief.access(grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert brief.ok("auth.test", fresh["access_token"])["team_id"] == team


def test_without_rotation_tokens_never_expire(static: Stand) -> None:
    team = team_id()
    body = static.install(team)
    assert body["access_token"].startswith(BOT_PREFIX)
    assert "refresh_token" not in body and "expires_in" not in body
    assert static.ok("auth.test", body["access_token"])["team_id"] == team
    nope = static.access(grant_type="refresh_token", refresh_token="xoxe-1-whatever")
    assert nope["error"] == "invalid_refresh_token"
    default_app = static.http.post(
        "/api/oauth.v2.access", data={"code": static.authorize(team)}, auth=(CLIENT_ID, SECRET)
    )
    assert default_app.json()["error"] == "invalid_client_id"  # the env's app, not the default


def test_revoking_a_workspace_stops_its_tokens(slack: Stand, team: str) -> None:
    body = slack.install(team)
    other = slack.install(team_id())
    reply = slack.http.post("/_revoke", json={"team": team})
    assert reply.json() == {"ok": True, "team": team, "revoked": 1}
    assert slack.error("auth.test", body["access_token"]) == "token_revoked"
    refresh = slack.access(grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert refresh["error"] == "invalid_refresh_token"
    assert slack.ok("auth.test", other["access_token"])["ok"]  # other workspaces unaffected
    again = slack.install(team)  # reinstalling works
    assert slack.ok("auth.test", again["access_token"])["team_id"] == team


def test_token_placement_follows_web_api_basics(slack: Stand, bot: str, team: str) -> None:
    assert slack.error("auth.test", None) == "not_authed"
    assert slack.error("auth.test", "xoxb-1-2-unknown") == "invalid_auth"
    as_form = slack.http.post("/api/auth.test", data={"token": bot}).json()
    assert as_form["ok"] is True and as_form["team_id"] == team
    as_query = slack.http.get("/api/auth.test", params={"token": bot}).json()
    assert as_query["ok"] is True
    in_json = slack.http.post("/api/auth.test", json={"token": bot})  # JSON needs a bearer token
    assert in_json.json() == {"ok": False, "error": "not_authed"}
    reply = slack.api("auth.test", bot)
    assert reply.headers["x-slack-req-id"] and reply.headers["x-oauth-scopes"] == SCOPES
    unknown = slack.api("chat.explode", bot)
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_method"


# --- Web API ------------------------------------------------------------------------------


def test_conversations_list_pages_with_cursors(slack: Stand, team: str, bot: str) -> None:
    made = [slack.channel(team, f"room-{i}", member=i % 2 == 0) for i in range(5)]
    slack.channel(team, "old", archived=True)
    pages: list[list[dict[str, Any]]] = []
    cursor = ""
    while True:
        body = slack.ok("conversations.list", bot, limit=2, cursor=cursor, exclude_archived="true")
        pages.append(body["channels"])
        cursor = body["response_metadata"]["next_cursor"]
        if not cursor:
            break
    seen = [c for page in pages for c in page]
    assert [len(p) for p in pages] == [2, 2, 2]
    assert [c["name"] for c in seen] == ["general", *(f"room-{i}" for i in range(5))]
    assert [c["id"] for c in seen[1:]] == made
    assert [c["is_member"] for c in seen[1:]] == [True, False, True, False, True]
    assert all(re.fullmatch(r"C[A-Z0-9]{10}", c["id"]) for c in seen)
    everything = slack.ok("conversations.list", bot, limit=5000)["channels"]
    assert len(everything) == 7 and everything[-1]["is_archived"] is True
    assert slack.error("conversations.list", bot, limit="many") == "invalid_limit"
    assert slack.error("conversations.list", bot, cursor="bm9wZQ==") == "invalid_cursor"
    needed = slack.api("conversations.list", bot, types="public_channel,private_channel").json()
    assert needed["error"] == "missing_scope" and needed["needed"] == "groups:read"
    assert needed["provided"] == SCOPES


def test_history_is_newest_first_and_pages_by_cursor(slack: Stand, team: str, bot: str) -> None:
    ops = slack.channel(team, "ops")
    posted = [slack.ok("chat.postMessage", bot, channel=ops, text=f"m{i}")["ts"] for i in range(5)]
    assert all(TS.fullmatch(ts) for ts in posted) and posted == sorted(set(posted))
    texts: list[str] = []
    cursor = ""
    while True:
        body = slack.ok("conversations.history", bot, channel=ops, limit=2, cursor=cursor)
        texts += [m["text"] for m in body["messages"]]
        cursor = body["response_metadata"]["next_cursor"]
        assert body["has_more"] is bool(cursor) and body["pin_count"] == 0
        if not cursor:
            break
    assert texts == ["m4", "m3", "m2", "m1", "m0"]
    window = slack.ok("conversations.history", bot, channel=ops, oldest=posted[1], latest=posted[3])
    assert [m["text"] for m in window["messages"]] == ["m2"]
    closed = slack.ok(
        "conversations.history", bot, channel=ops, oldest=posted[1], latest=posted[3], inclusive="1"
    )
    assert [m["text"] for m in closed["messages"]] == ["m3", "m2", "m1"]
    as_get = slack.http.get(
        "/api/conversations.history",
        params={"channel": ops, "limit": 1},
        headers={"Authorization": f"Bearer {bot}"},
    ).json()
    assert [m["text"] for m in as_get["messages"]] == ["m4"] and as_get["has_more"] is True
    message = window["messages"][0]
    assert message["type"] == "message" and message["bot_id"].startswith("B")
    assert message["user"] == slack.ok("auth.test", bot)["user_id"]


def test_threads_and_replies(slack: Stand, team: str, bot: str) -> None:
    ops = slack.channel(team, "ops")
    parent = slack.ok("chat.postMessage", bot, channel=ops, text="parent")["ts"]
    first = slack.ok("chat.postMessage", bot, channel=ops, text="r1", thread_ts=parent)
    assert first["message"]["thread_ts"] == parent
    slack.ok(
        "chat.postMessage", bot, channel=ops, text="r2", thread_ts=first["ts"]
    )  # under the parent
    slack.ok(
        "chat.postMessage", bot, channel=ops, text="r3", thread_ts=parent, reply_broadcast="true"
    )
    history = slack.ok("conversations.history", bot, channel=ops)["messages"]
    assert [m["text"] for m in history] == ["r3", "parent"]
    assert history[0]["subtype"] == "thread_broadcast"
    head = history[1]
    assert head["thread_ts"] == parent and head["reply_count"] == 3
    page = slack.ok("conversations.replies", bot, channel=ops, ts=parent, limit=2)
    assert [m["text"] for m in page["messages"]] == ["parent", "r1"] and page["has_more"]
    cursor = page["response_metadata"]["next_cursor"]
    rest = slack.ok("conversations.replies", bot, channel=ops, ts=parent, limit=2, cursor=cursor)
    assert [m["text"] for m in rest["messages"]] == ["r2", "r3"] and not rest["has_more"]
    assert rest["response_metadata"]["next_cursor"] == ""
    from_reply = slack.ok("conversations.replies", bot, channel=ops, ts=first["ts"])["messages"]
    assert [m["text"] for m in from_reply] == ["parent", "r1", "r2", "r3"]
    assert (
        slack.error("conversations.replies", bot, channel=ops, ts="1.000001") == "thread_not_found"
    )
    assert (
        slack.error("chat.postMessage", bot, channel=ops, text="x", thread_ts="1.000001")
        == "thread_not_found"
    )


def test_metadata_round_trips_from_json_and_form(slack: Stand, team: str, bot: str) -> None:
    ops = slack.channel(team, "ops")
    meta = {"event_type": "quest_update", "event_payload": {"quest": "q-1", "step": 2}}
    as_json = slack.http.post(
        "/api/chat.postMessage",
        json={"channel": ops, "text": "json", "metadata": meta},
        headers={"Authorization": f"Bearer {bot}"},
    ).json()
    assert as_json["ok"] is True and as_json["message"]["metadata"] == meta
    slack.ok("chat.postMessage", bot, channel=ops, text="form", metadata=json.dumps(meta))
    plain = slack.ok("conversations.history", bot, channel=ops)["messages"]
    assert all("metadata" not in m for m in plain)
    full = slack.ok("conversations.history", bot, channel=ops, include_all_metadata="true")
    assert [m["metadata"] for m in full["messages"]] == [meta, meta]
    assert (
        slack.error("chat.postMessage", bot, channel=ops, text="x", metadata="{not json")
        == "invalid_metadata_format"
    )
    schema = json.dumps({"event_type": "x"})
    assert (
        slack.error("chat.postMessage", bot, channel=ops, text="x", metadata=schema)
        == "invalid_metadata_schema"
    )
    assert len(slack.messages(team, ops)) == 2


def test_posting_rules(slack: Stand, team: str, bot: str) -> None:
    ops = slack.channel(team, "ops")
    lobby = slack.channel(team, "lobby", member=False)
    by_name = slack.ok("chat.postMessage", bot, channel="#ops", text="hi", unfurl_links="false")
    assert by_name["channel"] == ops and by_name["message"]["text"] == "hi"
    assert slack.error("chat.postMessage", bot, channel=lobby, text="hi") == "not_in_channel"
    assert slack.error("conversations.history", bot, channel=lobby) == "not_in_channel"
    assert (
        slack.error("chat.postMessage", bot, channel="C0NOSUCH00", text="hi") == "channel_not_found"
    )
    assert slack.error("chat.postMessage", bot, channel=ops, text=" ") == "no_text"
    assert slack.error("chat.postMessage", bot, channel=ops, text="x" * 40_001) == "msg_too_long"
    assert slack.ok("chat.postMessage", bot, channel=ops, text="x" * 40_000)["ok"]
    writer = slack.install(team, scope="chat:write")["access_token"]
    refused = slack.api("conversations.history", writer, channel=ops).json()
    assert refused == {
        "ok": False,
        "error": "missing_scope",
        "needed": "channels:history",
        "provided": "chat:write",
    }
    public = slack.install(team, scope="chat:write,chat:write.public")["access_token"]
    assert slack.ok("chat.postMessage", public, channel=lobby, text="hello")["channel"] == lobby
    assert slack.channel(team, "lobby", member=True) == lobby  # the bot is invited
    assert slack.ok("chat.postMessage", bot, channel=lobby, text="in")["channel"] == lobby


def test_seeded_messages_and_permalinks(slack: Stand, team: str, bot: str) -> None:
    ops = slack.channel(team, "ops")
    seeded = slack.http.post(
        "/_messages", json={"team": team, "channel": "ops", "text": "help!", "user": "U0HUMAN0001"}
    )
    assert seeded.status_code == 201
    ts = seeded.json()["ts"]
    reply = slack.ok("chat.postMessage", bot, channel=ops, text="on it", thread_ts=ts)
    history = slack.ok("conversations.history", bot, channel=ops)["messages"]
    assert history[0]["user"] == "U0HUMAN0001" and "bot_id" not in history[0]
    link = slack.ok("chat.getPermalink", bot, channel=ops, message_ts=ts)
    domain = slack.http.get("/_state").json()["teams"][team]["domain"]
    assert link["permalink"] == f"https://{domain}.slack.com/archives/{ops}/p{ts.replace('.', '')}"
    threaded = slack.ok("chat.getPermalink", bot, channel=ops, message_ts=reply["ts"])["permalink"]
    assert threaded.endswith(f"?thread_ts={ts}&cid={ops}")
    assert (
        slack.error("chat.getPermalink", bot, channel=ops, message_ts="1.000001")
        == "message_not_found"
    )


def test_workspaces_do_not_see_each_other(slack: Stand) -> None:
    a, b = team_id(), team_id()
    token_a, token_b = slack.install(a)["access_token"], slack.install(b)["access_token"]
    secret = slack.channel(b, "secret")
    names_a = [c["name"] for c in slack.ok("conversations.list", token_a)["channels"]]
    assert names_a == ["general"]
    assert slack.error("conversations.history", token_a, channel=secret) == "channel_not_found"
    assert (
        slack.error("chat.postMessage", token_a, channel=secret, text="hi") == "channel_not_found"
    )
    assert slack.ok("chat.postMessage", token_b, channel=secret, text="hi")["channel"] == secret
    state = slack.http.get("/_state").json()["teams"]
    assert {c["name"] for c in state[b]["channels"]} == {"general", "secret"}


# --- Faults, stats and the journal ---------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(slack: Stand, team: str, bot: str) -> None:
    ops = slack.channel(team, "ops")
    rule = slack.fault(status=429, retry_after_s=7, count=1, methods=["chat.postMessage"])
    limited = slack.api("chat.postMessage", bot, channel=ops, text="x")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
    assert limited.json() == {"ok": False, "error": "ratelimited"}
    assert slack.messages(team, ops) == []  # not performed
    assert slack.ok("chat.postMessage", bot, channel=ops, text="x")["ok"]
    journal = slack.http.get("/_requests", params={"team": team}).json()["requests"]
    assert {
        "method": "chat.postMessage",
        "team": team,
        "status": 429,
        "ok": False,
        "error": "ratelimited",
        "fault": rule["id"],
    } in journal
    assert journal[-1] == {
        "method": "chat.postMessage",
        "team": team,
        "status": 200,
        "ok": True,
        "error": None,
        "fault": None,
    }


def test_server_errors_and_proxy_pages(slack: Stand, bot: str) -> None:
    slack.fault(status=503, count=1)
    down = slack.api("auth.test", bot)
    assert down.status_code == 503 and down.json()["error"] == "service_unavailable"
    slack.fault(status=502, html=True, count=1)
    proxy = slack.api("auth.test", bot)
    assert proxy.status_code == 502 and proxy.headers["content-type"].startswith("text/html")
    assert proxy.text.startswith("<!DOCTYPE html>")
    assert slack.ok("auth.test", bot)["ok"]


def test_injected_error_codes_answer_http_200(slack: Stand, bot: str) -> None:
    slack.fault(error="token_revoked", count=2, methods=["auth.test"])
    for _ in range(2):
        assert slack.error("auth.test", bot) == "token_revoked"
    assert slack.ok("auth.test", bot)["ok"]
    listed = slack.http.get("/_faults").json()["faults"]
    assert listed == []  # used up


def test_a_delayed_call_is_performed_after_its_client_gives_up(
    slack: Stand, team: str, bot: str
) -> None:
    ops = slack.channel(team, "ops")
    slack.fault(delay_s=0.6, count=1, methods=["chat.postMessage"])
    with pytest.raises(httpx.ReadTimeout):
        slack.http.post(
            "/api/chat.postMessage",
            data={"channel": ops, "text": "late"},
            headers={"Authorization": f"Bearer {bot}"},
            timeout=0.2,
        )
    deadline = time.monotonic() + 5
    while not slack.messages(team, ops):
        assert time.monotonic() < deadline, "the held call was never performed"
        time.sleep(0.05)
    assert [m["text"] for m in slack.messages(team, ops)] == ["late"]


def test_after_faults_perform_the_call_then_fail_it(slack: Stand, team: str, bot: str) -> None:
    ops = slack.channel(team, "ops")
    slack.fault(status=500, after=True, count=1, methods=["chat.postMessage"])
    failed = slack.api("chat.postMessage", bot, channel=ops, text="twice?")
    assert failed.status_code == 500 and failed.json()["error"] == "internal_error"
    assert [m["text"] for m in slack.messages(team, ops)] == ["twice?"]  # it happened


def test_faults_can_target_one_workspace(slack: Stand) -> None:
    a, b = team_id(), team_id()
    body_a, body_b = slack.install(a), slack.install(b)
    slack.fault(error="invalid_auth", teams=[a])
    assert slack.error("auth.test", body_a["access_token"]) == "invalid_auth"
    assert slack.ok("auth.test", body_b["access_token"])["team_id"] == b
    refresh = slack.access(grant_type="refresh_token", refresh_token=body_a["refresh_token"])
    assert refresh["error"] == "invalid_auth"  # the refresh token is a's too
    assert slack.http.get("/_state").status_code == 200  # /_ is never faulted


def test_fault_rules_are_checked(slack: Stand) -> None:
    for bad in (
        {"status": 418},
        {},
        {"after": True, "delay_s": 1},
        {"html": True, "error": "x_y"},
        {"colour": "red"},
    ):
        assert slack.http.post("/_faults", json=bad).status_code == 400
    rule = slack.fault(status=429)
    assert rule["retry_after_s"] == 1 and rule["count"] is None
    assert slack.http.delete("/_faults").status_code == 204
    assert slack.http.get("/_faults").json() == {"faults": []}


def test_stats_and_journal_hold_no_tokens(slack: Stand, team: str) -> None:
    body = slack.install(team)
    slack.ok("auth.test", body["access_token"])
    slack.access(grant_type="refresh_token", refresh_token=body["refresh_token"])
    stats = slack.http.get("/_stats").json()
    assert stats["teams"][team]["methods"]["auth.test"] == 1
    assert stats["totals"]["api_calls"] >= 3
    journal = slack.http.get("/_requests", params={"team": team}).json()["requests"]
    assert [e["method"] for e in journal] == ["oauth.v2.access", "auth.test", "oauth.v2.access"]
    text = json.dumps(stats) + json.dumps(journal)
    assert "xox" not in text and body["refresh_token"] not in text
    assert slack.http.delete("/_requests").status_code == 204
    assert slack.http.get("/_requests").json() == {"requests": []}
