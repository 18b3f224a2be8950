"""OAuth v2: slack.com's install page (``/oauth/v2/authorize``) and ``oauth.v2.access``.

The install page approves at once, since there is no user to ask: the workspace is the
``team`` parameter (``T0000DEMO`` when absent), created on first use. It answers 302 to
``redirect_uri`` with ``code`` and ``state``, keeping the URI's own query. Problems that
make the redirect unsafe or meaningless (unknown ``client_id``, a bad ``redirect_uri``,
malformed scopes) are an HTML error page with status 400, as Slack shows one. Scopes are
comma-separated, Slack's way; a space-separated list is refused.

``oauth.v2.access`` takes the client's credentials as HTTP Basic or as ``client_id`` /
``client_secret`` arguments (Slack accepts both) and answers, as every Web API method,
HTTP 200 with ``ok``.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from standins.slack.edge import TEAM_KEY
from standins.slack.errors import NO_STORE, SlackError, html_page, slack_json
from standins.slack.oauth import Issued
from standins.slack.state import Slack
from standins.slack.workspace import DEFAULT_TEAM, Team

TEAM_ID = re.compile(r"T[A-Z0-9]{2,20}")
_SCOPE = re.compile(r"[a-z][a-z0-9_.:-]*")


def _valid_redirect(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and "#" not in uri


def _with_query(uri: str, params: dict[str, str]) -> str:
    parts = urlsplit(uri)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))


def parse_scopes(text: str | None) -> tuple[str, ...] | None:
    """``"a:read,b:write"`` in order, without repeats; ``None`` when malformed."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    if not all(_SCOPE.fullmatch(n) for n in names):
        return None
    return tuple(dict.fromkeys(names))


def _basic(header: str) -> tuple[str | None, str | None]:
    try:
        decoded = base64.b64decode(header.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else (None, None)


def client_credentials(request: Request, args: dict[str, Any]) -> tuple[str | None, str | None]:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        return _basic(value)
    client_id, secret = args.get("client_id"), args.get("client_secret")
    return (
        client_id if isinstance(client_id, str) else None,
        secret if isinstance(secret, str) else None,
    )


def token_body(issued: Issued, team: Team, app_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ok": True,
        "app_id": app_id,
        "authed_user": {"id": team.installer_id},
        "scope": issued.grant.scope_text,
        "token_type": "bot",
        "access_token": issued.access_token,
        "bot_user_id": team.bot_user_id,
        "team": {"id": team.id, "name": team.name},
        "enterprise": None,
        "is_enterprise_install": False,
    }
    if issued.refresh_token is not None:
        body |= {"refresh_token": issued.refresh_token, "expires_in": issued.expires_in}
    return body


class OAuthEndpoints:
    def __init__(self, slack: Slack) -> None:
        self.slack = slack

    def routes(self) -> list[Route]:
        return [Route("/oauth/v2/authorize", self.authorize, methods=["GET"])]

    async def authorize(self, request: Request) -> Response:
        params = request.query_params
        if params.get("client_id") != self.slack.oauth.client_id:
            return html_page(400, "invalid_client_id", "This app is not known to Slack.")
        redirect_uri = params.get("redirect_uri", "")
        if not _valid_redirect(redirect_uri):
            return html_page(
                400, "bad_redirect_uri", "redirect_uri must be an absolute http(s) URI."
            )
        scopes, user_scopes = (
            parse_scopes(params.get("scope")),
            parse_scopes(params.get("user_scope")),
        )
        if scopes is None or user_scopes is None:
            return html_page(400, "invalid_scope", "Scopes are a comma-separated list.")
        if not scopes and not user_scopes:
            return html_page(400, "no_scopes", "The app asked for no scopes.")
        team = params.get("team") or DEFAULT_TEAM
        if not TEAM_ID.fullmatch(team):
            return html_page(400, "invalid_team", "team must be a workspace id such as T0000DEMO.")
        with self.slack.lock:
            self.slack.directory.ensure(team, self.slack.clock())
            code = self.slack.oauth.issue_code(team, scopes, user_scopes, redirect_uri)
        reply = {"code": code} | ({"state": params["state"]} if "state" in params else {})
        return RedirectResponse(_with_query(redirect_uri, reply), 302, NO_STORE)

    def access(self, request: Request, args: dict[str, Any]) -> Response:
        client_id, secret = client_credentials(request, args)
        grant_type = args.get("grant_type") or "authorization_code"
        slack = self.slack
        with slack.lock:
            slack.oauth.check_client(client_id, secret)
            if grant_type == "authorization_code":
                issued = slack.oauth.redeem(_text(args, "code"), _text(args, "redirect_uri"))
            elif grant_type == "refresh_token":
                issued = slack.oauth.refresh(_text(args, "refresh_token"))
            else:
                raise SlackError("invalid_grant_type")
            request.scope[TEAM_KEY] = issued.grant.team
            team = slack.directory.get(issued.grant.team)
            return slack_json(token_body(issued, team, slack.app_id), headers=NO_STORE)


def _text(args: dict[str, Any], name: str) -> str | None:
    value = args.get(name)
    return value if isinstance(value, str) else None
