"""The OAuth 2.0 endpoints: authorize (RFC 6749 §4.1), token (§4.1.3, §6), revoke (RFC 7009).

The authorize step auto-approves, since there is no user to ask in a demo. The account
being connected is the ``login_hint`` parameter (as in OpenID Connect Core §3.1.2.1): the
caller names who is "logging in", and every token from that authorization reaches only
that account's tasks. System2 passes the company id, so two companies connected to the
demo provider see separate task lists.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from standins.demo_provider.errors import NO_STORE, ProviderError, invalid_request, oauth_error
from standins.demo_provider.oauth import parse_scope
from standins.demo_provider.state import Provider

ACCOUNT = re.compile(r"[A-Za-z0-9._@:+-]{1,128}")
"""What a ``login_hint`` may be: company ids, emails and slugs all fit."""

_FORM = "application/x-www-form-urlencoded"


def _valid_redirect(uri: str) -> bool:
    """RFC 6749 §3.1.2: absolute, no fragment. There is no registration, so any http(s) URI."""
    parts = urlsplit(uri)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and "#" not in uri


def _with_query(uri: str, params: dict[str, str]) -> str:
    """Adds ``params`` while keeping any query the client registered (§3.1.2)."""
    parts = urlsplit(uri)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))


def _single(request: Request) -> dict[str, str]:
    """RFC 6749 §3.1: no parameter twice; an empty one counts as absent."""
    params = request.query_params
    for name in params:
        if len(params.getlist(name)) > 1:
            raise invalid_request(f"parameter {name} is repeated")
    return {k: v for k, v in params.items() if v}


def _pkce(params: dict[str, str]) -> tuple[str | None, str]:
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method", "plain")
    if method not in ("S256", "plain"):
        raise invalid_request("code_challenge_method must be S256 or plain")
    if challenge is not None and not re.fullmatch(r"[A-Za-z0-9._~-]{43,128}", challenge):
        raise invalid_request("code_challenge is malformed")
    return challenge, method


def _authorize_reply(uri: str, params: dict[str, str], as_json: bool, status: int) -> Response:
    if as_json:
        return JSONResponse(params, status, NO_STORE)
    return RedirectResponse(_with_query(uri, params), 302, NO_STORE)


async def _read_form(request: Request) -> dict[str, str]:
    """The token and revocation endpoints take only urlencoded forms (§4.1.3, RFC 7009 §2.1)."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != _FORM:
        raise invalid_request(f"Content-Type must be {_FORM}")
    try:
        pairs = parse_qsl((await request.body()).decode(), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise invalid_request("the form is not valid UTF-8 urlencoded data") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise invalid_request(f"parameter {name} is repeated")
        form[name] = value
    return {k: v for k, v in form.items() if v}


def _basic(header: str) -> tuple[str, str]:
    """RFC 6749 §2.3.1: id and secret are form-encoded, then joined by ':' and base64'd."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise oauth_error("invalid_client", "client authentication must use HTTP Basic")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise oauth_error("invalid_client", "malformed Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise oauth_error("invalid_client", "malformed Basic credentials")
    return unquote_plus(client_id), unquote_plus(secret)


class OAuthEndpoints:
    """The handlers, bound to one provider's state."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.oauth = provider.oauth

    def routes(self) -> list[Route]:
        return [
            Route("/oauth/authorize", self.authorize, methods=["GET"]),
            Route("/oauth/token", self.token, methods=["POST"]),
            Route("/oauth/revoke", self.revoke, methods=["POST"]),
        ]

    def authenticate_client(self, request: Request, form: dict[str, str]) -> str:
        """HTTP Basic or ``client_id``/``client_secret`` in the form, never both (§2.3)."""
        header = request.headers.get("authorization")
        if header is not None:
            if "client_secret" in form:
                raise invalid_request("use one client authentication method, not two")
            client_id, secret = _basic(header)
            if form.get("client_id", client_id) != client_id:
                raise invalid_request("client_id differs from the authenticated client")
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
            if not client_id or not secret:
                raise oauth_error("invalid_client", "client authentication is required")
        self.oauth.check_client(client_id, secret)
        return client_id

    async def authorize(self, request: Request) -> Response:
        params = _single(request)
        if params.get("client_id") != self.oauth.client_id:
            raise invalid_request("unknown client_id")  # §4.1.2.1: never redirect for these
        redirect_uri = params.get("redirect_uri", "")
        if not _valid_redirect(redirect_uri):
            raise invalid_request("redirect_uri must be an absolute http(s) URI, no fragment")
        as_json = "application/json" in request.headers.get("accept", "")
        reply = {"state": params["state"]} if "state" in params else {}
        try:
            code = self._issue_code(params, redirect_uri)
        except ProviderError as error:
            failure = {"error": error.error, "error_description": error.description, **reply}
            return _authorize_reply(redirect_uri, failure, as_json, 400)
        return _authorize_reply(redirect_uri, {"code": code, **reply}, as_json, 200)

    def _issue_code(self, params: dict[str, str], redirect_uri: str) -> str:
        """Errors from here go back to the client's redirect_uri (§4.1.2.1)."""
        if params.get("response_type") != "code":
            raise oauth_error("unsupported_response_type", "response_type must be code")
        account = params.get("login_hint", "")
        if not ACCOUNT.fullmatch(account):
            raise invalid_request("login_hint must name the account (1-128 of A-Za-z0-9._@:+-)")
        scope = parse_scope(params.get("scope"))
        challenge, method = _pkce(params)
        with self.provider.lock:
            return self.oauth.issue_code(
                redirect_uri=redirect_uri,
                account=account,
                scope=scope,
                challenge=challenge,
                challenge_method=method,
            )

    async def token(self, request: Request) -> Response:
        form = await _read_form(request)
        client_id = self.authenticate_client(request, form)
        grant_type = form.get("grant_type")
        with self.provider.lock:
            if grant_type == "authorization_code":
                tokens = self.oauth.redeem_code(
                    client_id, form.get("code"), form.get("redirect_uri"), form.get("code_verifier")
                )
            elif grant_type == "refresh_token":
                tokens = self.oauth.refresh(client_id, form.get("refresh_token"), form.get("scope"))
            elif grant_type is None:
                raise invalid_request("grant_type is required")
            else:
                raise oauth_error("unsupported_grant_type", f"grant_type {grant_type!r}")
        return JSONResponse(tokens.body(), 200, NO_STORE)

    async def revoke(self, request: Request) -> Response:
        form = await _read_form(request)
        client_id = self.authenticate_client(request, form)
        if "token" not in form:
            raise invalid_request("token is required")
        with self.provider.lock:
            self.oauth.revoke(client_id, form["token"])
        return Response(status_code=200, headers=NO_STORE)
