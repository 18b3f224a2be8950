"""github.com's OAuth endpoints for a GitHub App: ``/login/oauth/authorize`` and
``/login/oauth/access_token`` (the web application flow, with optional PKCE, and refresh).

Authorize approves at once as the user named by ``login`` (GitHub's own hint parameter;
default ``octocat``): there is nobody to click "Authorize" in a test. The token endpoint
takes its parameters from the query or the body (form or JSON) and the client credentials
in them, as GitHub does, and answers JSON only when asked (``Accept: application/json``);
otherwise form-encoded. Its refusals are HTTP 200 with an ``error`` field, as GitHub's are.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from html import escape
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from standins.github.oauth import OAuthFailure, Tokens
from standins.github.state import GitHub

DEFAULT_LOGIN = "octocat"
LOGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
_FORM = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store"}


def _page(status: int, title: str, text: str) -> HTMLResponse:
    body = f"<!DOCTYPE html><html><head><title>{escape(title)}</title></head>"
    body += f"<body><h1>{escape(title)}</h1><p>{escape(text)}</p></body></html>"
    return HTMLResponse(body, status)


def _with_query(uri: str, params: dict[str, str]) -> str:
    """Appends ``params`` and keeps whatever query the client's redirect_uri already had."""
    parts = urlsplit(uri)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))


def _valid_redirect(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.fragment


def _pkce_problem(params: dict[str, str]) -> str | None:
    challenge = params.get("code_challenge")
    if challenge is None:
        return None
    if params.get("code_challenge_method") != "S256":
        return "code_challenge_method must be S256"
    if not _CHALLENGE.fullmatch(challenge):
        return "code_challenge must be 43 base64url characters"
    return None


def _basic(request: Request) -> dict[str, str]:
    """Client credentials sent as HTTP Basic instead of in the form (RFC 6749 §2.3.1)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return {}
    try:
        client_id, _, secret = (
            base64.b64decode(value.strip(), validate=True).decode().partition(":")
        )
    except (binascii.Error, UnicodeDecodeError):
        return {}
    return {"client_id": unquote_plus(client_id), "client_secret": unquote_plus(secret)}


async def _token_params(request: Request) -> dict[str, str]:
    """GitHub reads the query string and the body alike, form-encoded or JSON; client
    credentials in them win over an HTTP Basic header."""
    params = {**_basic(request), **{k: v for k, v in request.query_params.items() if v}}
    raw = await request.body()
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    found: dict[str, Any] = {}
    try:
        if media == "application/json":
            loaded = json.loads(raw or b"{}")
            found = loaded if isinstance(loaded, dict) else {}
        elif raw:
            found = dict(parse_qsl(raw.decode(), keep_blank_values=True))
    except (ValueError, UnicodeDecodeError):
        found = {}
    params.update({k: str(v) for k, v in found.items() if isinstance(v, str | int) and v != ""})
    return params


def _reply(request: Request, body: dict[str, Any]) -> Response:
    if "application/json" in request.headers.get("accept", "").lower():
        return JSONResponse(body, 200, NO_STORE)
    text = urlencode({k: str(v) for k, v in body.items()})
    return Response(text, 200, NO_STORE, media_type=f"{_FORM}; charset=utf-8")


class OAuthEndpoints:
    """The handlers, bound to one stand-in's state."""

    def __init__(self, github: GitHub) -> None:
        self.github = github
        self.oauth = github.oauth

    def routes(self) -> list[Route]:
        return [
            Route("/login/oauth/authorize", self.authorize, methods=["GET"]),
            Route("/login/oauth/access_token", self.access_token, methods=["POST"]),
        ]

    async def authorize(self, request: Request) -> Response:
        params = {k: v for k, v in request.query_params.items() if v}
        if params.get("client_id") != self.oauth.client_id:
            return _page(404, "Not Found", "No application is registered with this client_id.")
        redirect_uri = params.get("redirect_uri", "")
        if not _valid_redirect(redirect_uri):
            text = "redirect_uri must be an absolute http(s) URL (no callback is registered)."
            return _page(400, "Bad Request", text)
        state = {"state": params["state"]} if "state" in params else {}
        login = params.get("login", DEFAULT_LOGIN)
        problem = _pkce_problem(params)
        if problem is None and not LOGIN.fullmatch(login):
            problem = "login must be a GitHub username"
        if problem is not None:
            error = {"error": "invalid_request", "error_description": problem, **state}
            return RedirectResponse(_with_query(redirect_uri, error), 302)
        with self.github.lock:
            code = self.oauth.issue_code(login, redirect_uri, params.get("code_challenge"))
        return RedirectResponse(_with_query(redirect_uri, {"code": code, **state}), 302)

    async def access_token(self, request: Request) -> Response:
        params = await _token_params(request)
        try:
            with self.github.lock:
                tokens = self._exchange(params)
        except OAuthFailure as failure:
            return _reply(request, failure.body())
        return _reply(request, tokens.body())

    def _exchange(self, params: dict[str, str]) -> Tokens:
        self.oauth.check_client(params.get("client_id", ""), params.get("client_secret", ""))
        grant_type = params.get("grant_type", "authorization_code")
        if grant_type == "refresh_token":
            return self.oauth.refresh(params.get("refresh_token", ""))
        if grant_type != "authorization_code":
            raise OAuthFailure("unsupported_grant_type")
        return self.oauth.redeem(
            params.get("code", ""), params.get("redirect_uri"), params.get("code_verifier")
        )
