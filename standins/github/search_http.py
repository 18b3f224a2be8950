"""``GET /search/issues``, plus the two account reads a client makes after connecting:
``GET /user`` (who the token belongs to) and ``GET /rate_limit`` (its budgets, not counted).

Search sees only the repositories the caller can see. Results are ordered by ``sort``
(comments, created, updated) and ``order``; without ``sort`` GitHub ranks by "best match",
for which this stand-in takes the most recently updated first.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from standins.github import search
from standins.github.errors import validation_failed
from standins.github.issues_http import api_base, login_of, reply
from standins.github.listing import order
from standins.github.paging import Page, page_headers
from standins.github.ratelimit import Quota
from standins.github.repos import Issue, Repo
from standins.github.state import GitHub
from standins.github.users import user_view
from standins.github.views import issue_view


def _quota_view(quota: Quota) -> dict[str, int]:
    return {
        "limit": quota.limit,
        "used": quota.used,
        "remaining": quota.remaining,
        "reset": quota.reset,
    }


def _ordering(request: Request) -> tuple[str, str]:
    params = request.query_params
    sort, direction = params.get("sort") or "updated", params.get("order") or "desc"
    if sort not in ("comments", "created", "updated") or direction not in ("asc", "desc"):
        field = "sort" if sort not in ("comments", "created", "updated") else "order"
        raise validation_failed(
            search.DOC, {"resource": "Search", "field": field, "code": "invalid"}
        )
    return sort, direction


class SearchEndpoints:
    def __init__(self, github: GitHub) -> None:
        self.github = github

    def routes(self) -> list[Route]:
        return [
            Route("/search/issues", self.search_issues, methods=["GET"]),
            Route("/user", self.user, methods=["GET"]),
            Route("/rate_limit", self.rate_limit, methods=["GET"]),
        ]

    async def search_issues(self, request: Request) -> Response:
        query = search.parse(request.query_params.get("q"))
        sort, direction = _ordering(request)
        page, api = Page.of(request), api_base(request)
        with self.github.lock:
            found: list[tuple[Repo, Issue]] = [
                (repo, issue)
                for repo in self.github.repos.visible(login_of(request))
                for issue in repo.issues.values()
                if query.matches(repo, issue)
            ]
            ranked = order([issue for _, issue in found], sort, direction)
            where = {id(issue): repo for repo, issue in found}
            items = [
                {**issue_view(where[id(issue)], issue, api), "score": 1.0}
                for issue in page.cut(ranked)
            ]
        body: dict[str, Any] = {
            "total_count": len(found),
            "incomplete_results": False,
            "items": items,
        }
        return reply(body, headers=page_headers(request, page, len(found)))

    async def user(self, request: Request) -> Response:
        return reply({**user_view(login_of(request), api_base(request)), "name": None})

    async def rate_limit(self, request: Request) -> Response:
        login = login_of(request)
        with self.github.lock:
            now = self.github.clock()
            core = self.github.limits.peek(login, "core", now)
            found = self.github.limits.peek(login, "search", now)
        resources = {"core": _quota_view(core), "search": _quota_view(found)}
        return reply({"resources": resources, "rate": _quota_view(core)})
