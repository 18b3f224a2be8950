"""The issue endpoints of the REST API: issues, their comments and their labels.

The gate (``gate.py``) has already checked the token and counted the request; the caller's
login is ``scope["github.login"]``. A repository the caller may not see is 404, exactly as
one that does not exist. Every read and write runs under the state lock in one step, so
concurrent clients see each issue number once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from standins.github import listing, payloads
from standins.github.errors import JSON_TYPE, not_found
from standins.github.paging import Page, page_headers
from standins.github.repos import Issue, Repo
from standins.github.state import GitHub
from standins.github.views import comment_view, issue_view, label_view

ISSUES = "https://docs.github.com/rest/issues/issues"
COMMENTS = "https://docs.github.com/rest/issues/comments"
LABELS = "https://docs.github.com/rest/issues/labels"
REPO = "/repos/{owner}/{repo}/issues"
ISSUE = REPO + "/{number:int}"


def api_base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def login_of(request: Request) -> str:
    login: str = request.scope["github.login"]
    return login


def reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status, headers, media_type=JSON_TYPE)


class IssueEndpoints:
    """The handlers, bound to one stand-in's state."""

    def __init__(self, github: GitHub) -> None:
        self.github = github
        self.book = github.repos

    def routes(self) -> list[Route]:
        return [
            Route(REPO, self.list_issues, methods=["GET"]),
            Route(REPO, self.create_issue, methods=["POST"]),
            Route(ISSUE, self.get_issue, methods=["GET"]),
            Route(ISSUE, self.update_issue, methods=["PATCH"]),
            Route(ISSUE + "/comments", self.list_comments, methods=["GET"]),
            Route(ISSUE + "/comments", self.create_comment, methods=["POST"]),
            Route(ISSUE + "/labels", self.list_labels, methods=["GET"]),
            Route(ISSUE + "/labels", self.add_labels, methods=["POST"]),
        ]

    def _repo(self, request: Request, doc: str) -> Repo:
        params = request.path_params
        repo = self.book.find(params["owner"], params["repo"], login_of(request))
        if repo is None:
            raise not_found(doc)
        return repo

    def _issue(self, request: Request, doc: str) -> tuple[Repo, Issue]:
        repo = self._repo(request, doc)
        issue = repo.issues.get(request.path_params["number"])
        if issue is None:
            raise not_found(doc)
        return repo, issue

    def _on_issue(
        self, request: Request, doc: str, act: Callable[[Repo, Issue], Response]
    ) -> Response:
        with self.github.lock:
            repo, issue = self._issue(request, doc)
            return act(repo, issue)

    async def list_issues(self, request: Request) -> Response:
        doc, page, api = f"{ISSUES}#list-repository-issues", Page.of(request), api_base(request)
        with self.github.lock:
            repo = self._repo(request, doc)
            found = listing.issues(list(repo.issues.values()), request.query_params)
            body = [issue_view(repo, issue, api) for issue in page.cut(found)]
        return reply(body, headers=page_headers(request, page, len(found)))

    async def create_issue(self, request: Request) -> Response:
        doc, api = f"{ISSUES}#create-an-issue", api_base(request)
        raw = await request.body()
        with self.github.lock:
            repo = self._repo(request, doc)  # 404 before any look at the body, as GitHub
            title, text, fields = payloads.new_issue(payloads.parse_object(raw, doc), doc)
            issue = self.book.create_issue(repo, login_of(request), title, text, fields)
            body = issue_view(repo, issue, api)
        return reply(body, 201, {"Location": body["url"]})

    async def get_issue(self, request: Request) -> Response:
        api = api_base(request)
        return self._on_issue(
            request, f"{ISSUES}#get-an-issue", lambda r, i: reply(issue_view(r, i, api))
        )

    async def update_issue(self, request: Request) -> Response:
        doc, api = f"{ISSUES}#update-an-issue", api_base(request)
        raw = await request.body()

        def act(repo: Repo, issue: Issue) -> Response:
            changes = payloads.changes(payloads.parse_object(raw, doc), doc)
            self.book.update(repo, issue, login_of(request), changes)
            return reply(issue_view(repo, issue, api))

        return self._on_issue(request, doc, act)

    async def list_comments(self, request: Request) -> Response:
        doc, page, api = f"{COMMENTS}#list-issue-comments", Page.of(request), api_base(request)

        def act(repo: Repo, issue: Issue) -> Response:
            found = listing.comments(issue.comments, request.query_params)
            body = [comment_view(repo, issue, c, api) for c in page.cut(found)]
            return reply(body, headers=page_headers(request, page, len(found)))

        return self._on_issue(request, doc, act)

    async def create_comment(self, request: Request) -> Response:
        doc, api = f"{COMMENTS}#create-an-issue-comment", api_base(request)
        raw = await request.body()

        def act(repo: Repo, issue: Issue) -> Response:
            text = payloads.comment_body(payloads.parse_object(raw, doc), doc)
            body = comment_view(repo, issue, self.book.comment(issue, login_of(request), text), api)
            return reply(body, 201, {"Location": body["url"]})

        return self._on_issue(request, doc, act)

    async def list_labels(self, request: Request) -> Response:
        doc, api = f"{LABELS}#list-labels-for-an-issue", api_base(request)
        return self._on_issue(
            request, doc, lambda r, i: reply([label_view(r, x, api) for x in i.labels])
        )

    async def add_labels(self, request: Request) -> Response:
        doc, api = f"{LABELS}#add-labels-to-an-issue", api_base(request)
        raw = await request.body()

        def act(repo: Repo, issue: Issue) -> Response:
            self.book.add_labels(repo, issue, payloads.label_names(raw, doc))
            return reply([label_view(repo, label, api) for label in issue.labels])

        return self._on_issue(request, doc, act)
