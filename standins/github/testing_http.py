"""The test-only routes, all under ``/_``: never faulted, never authenticated, never counted.

``POST /_repos`` seeds a repository, ``/_faults`` switches trouble on and off,
``POST /_revoke`` plays a user revoking the app, ``/_state`` shows every issue and comment,
``/_stats`` counts (never a token), ``/_requests`` is the journal. A real GitHub has nothing
like them, and nothing in System2's workers may depend on them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from standins.github.faults import FaultRefused
from standins.github.state import GitHub
from standins.github.views import state_view

NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
NO_STORE = {"Cache-Control": "no-store"}


def _refused(message: str) -> Response:
    return JSONResponse({"message": message}, 400)


async def _object(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _names(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return ()
    if isinstance(value, list) and all(isinstance(v, str) and NAME.fullmatch(v) for v in value):
        return tuple(value)
    return None


class TestEndpoints:
    def __init__(self, github: GitHub) -> None:
        self.github = github

    def routes(self) -> list[Route]:
        return [
            Route("/_repos", self.add_repo, methods=["POST"]),
            Route("/_faults", self.add_fault, methods=["POST"]),
            Route("/_faults", self.list_faults, methods=["GET"]),
            Route("/_faults", self.clear_faults, methods=["DELETE"]),
            Route("/_revoke", self.revoke, methods=["POST"]),
            Route("/_state", self.state, methods=["GET"]),
            Route("/_stats", self.stats, methods=["GET"]),
            Route("/_requests", self.list_requests, methods=["GET"]),
            Route("/_requests", self.clear_requests, methods=["DELETE"]),
        ]

    async def add_repo(self, request: Request) -> Response:
        """``{"owner", "name", "logins"?}``; seeding an existing one replaces ``logins``."""
        body = await _object(request)
        if body is None:
            return _refused("the body must be a JSON object")
        owner, name, logins = body.get("owner"), body.get("name"), _names(body.get("logins"))
        if not (isinstance(owner, str) and NAME.fullmatch(owner)):
            return _refused("owner must be a GitHub account name")
        if not (isinstance(name, str) and NAME.fullmatch(name)):
            return _refused("name must be a repository name")
        if logins is None:
            return _refused("logins must be a list of GitHub logins")
        with self.github.lock:
            repo = self.github.repos.add(owner, name, logins)
            return JSONResponse(
                {"id": repo.id, "full_name": repo.full_name, "logins": list(logins)}, 201
            )

    async def add_fault(self, request: Request) -> Response:
        body = await _object(request)
        if body is None:
            return _refused("the body must be a JSON object")
        with self.github.lock:
            try:
                rule = self.github.faults.add(body)
            except FaultRefused as refused:
                return _refused(str(refused))
            return JSONResponse(rule.view(), 201)

    async def list_faults(self, _: Request) -> Response:
        with self.github.lock:
            return JSONResponse({"faults": [rule.view() for rule in self.github.faults.rules]})

    async def clear_faults(self, _: Request) -> Response:
        with self.github.lock:
            self.github.faults.clear()
        return Response(status_code=204)

    async def revoke(self, request: Request) -> Response:
        body = await _object(request)
        login = None if body is None else body.get("login")
        if not isinstance(login, str) or not login:
            return _refused('the body must be {"login": "..."}')
        with self.github.lock:
            revoked = self.github.oauth.revoke_login(login)
        return JSONResponse({"login": login, "revoked": revoked})

    async def state(self, _: Request) -> Response:
        with self.github.lock:
            repos = [state_view(repo) for repo in self.github.repos.repos.values()]
        return JSONResponse({"repos": repos}, headers=NO_STORE)

    async def stats(self, _: Request) -> Response:
        return JSONResponse(self.github.stats(), headers=NO_STORE)

    async def list_requests(self, request: Request) -> Response:
        login = request.query_params.get("login")
        with self.github.lock:
            found = self.github.journal.view(login)
        return JSONResponse({"requests": found}, headers=NO_STORE)

    async def clear_requests(self, _: Request) -> Response:
        with self.github.lock:
            self.github.journal.clear()
        return Response(status_code=204)
