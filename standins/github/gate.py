"""The REST API's front door: version, credentials, rate limit, and GitHub's headers.

In GitHub's order: an unsupported ``X-GitHub-Api-Version`` is 400; a token that is unknown,
expired or revoked is 401 "Bad credentials"; a path or method the API does not have is 404
(never 405, as GitHub answers); no token at all is 401 "Requires authentication"; a spent
budget is the primary rate limit (403). Only then does a handler run, with the caller's
login in ``scope["github.login"]``. Every answer carries ``x-github-request-id``,
``x-github-api-version-selected`` and the ``x-ratelimit-*`` headers. ``GET /rate_limit``
is not counted, as on GitHub. Paths ``/``, ``/_…`` and ``/login/…`` are not the API.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from standins.github.errors import (
    RATE_DOCS,
    ApiError,
    bad_credentials,
    error_response,
    not_found,
    requires_authentication,
)
from standins.github.fault_edge import request_id
from standins.github.presented import api_version, token_of
from standins.github.ratelimit import Quota
from standins.github.state import GitHub
from standins.github.users import user_id


def is_api(path: str) -> bool:
    return path != "/" and not path.startswith(("/_", "/login/"))


class ApiGate:
    def __init__(self, app: ASGIApp, *, github: GitHub, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.github = github
        self.routes = list(routes)

    def _known(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] == Match.FULL for route in self.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not is_api(path):
            await self.app(scope, receive, send)
            return
        headers = {
            "x-github-request-id": request_id(scope),
            "x-github-media-type": "github.v3; format=json",
        }
        try:
            headers["x-github-api-version-selected"] = api_version(scope)
            quota = self._admit(scope, path)
        except ApiError as refused:
            await error_response(refused, headers)(scope, receive, send)
            return
        headers |= quota.headers()

        async def stamp(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.encode(), v.encode()) for k, v in headers.items()]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, stamp)

    def _admit(self, scope: Scope, path: str) -> Quota:
        """The caller's quota after counting this request, or the refusal as ``ApiError``."""
        token = token_of(scope)
        login = self.github.login_for(token) if token else None
        if login is None:
            client = scope.get("client") or ("unknown", 0)
            known = self._known(scope)
            quota = self.github.anonymous(str(client[0]), refused=bool(token) or known)
            if token:
                raise _with(bad_credentials(), quota.headers())
            refused = requires_authentication() if known else not_found()
            raise _with(refused, quota.headers())
        if path == "/rate_limit":
            quota = self.github.quota(login, path)
        else:
            quota, allowed = self.github.count(login, path)
            if not allowed:
                message = f"API rate limit exceeded for user ID {user_id(login)}."
                doc = RATE_DOCS + "#about-the-primary-rate-limit"
                raise ApiError(403, message, doc=doc, headers=quota.headers())
        if not self._known(scope):
            raise _with(not_found(), quota.headers())
        scope["github.login"] = login
        return quota


def _with(error: ApiError, headers: dict[str, str]) -> ApiError:
    error.headers |= headers
    return error
