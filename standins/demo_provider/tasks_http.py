"""The task-list API under ``/api/v1/tasks``, behind RFC 6750 bearer tokens.

Reading needs scope ``tasks.read``, changing needs ``tasks.write``. Mutations honour an
``Idempotency-Key`` header (see ``tasks.py``): the key check and the mutation run under the
provider's lock as one step, so identical concurrent requests perform once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from standins.demo_provider.errors import REALM, ProviderError, invalid_request
from standins.demo_provider.oauth import Grant
from standins.demo_provider.state import Provider
from standins.demo_provider.tasks import (
    STATUSES,
    Account,
    Outcome,
    fingerprint,
    parse_changes,
    parse_json,
    parse_new,
)

READ, WRITE = "tasks.read", "tasks.write"
_MAX_KEY = 255


def _bearer(request: Request) -> str:
    """RFC 6750 §3.1: no credentials gets a bare challenge, without an error code."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ProviderError(
            401,
            "unauthorized",
            "Authorization: Bearer <access token> is required",
            {"WWW-Authenticate": f'Bearer realm="{REALM}"'},
        )
    return token.strip()


def _idempotency_key(request: Request) -> str | None:
    """Bare (as Stripe) or an RFC 8941 string (as the IETF draft): ``abc`` or ``"abc"``."""
    raw = request.headers.get("idempotency-key")
    if raw is None:
        return None
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not key or len(key) > _MAX_KEY or not key.isprintable():
        raise invalid_request(f"Idempotency-Key must be 1-{_MAX_KEY} printable characters")
    return key


def _response(outcome: Outcome, replayed: bool = False) -> Response:
    headers = dict(outcome.headers)
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    if outcome.body is None:
        return Response(status_code=outcome.status, headers=headers)
    return JSONResponse(outcome.body, outcome.status, headers)


class TaskEndpoints:
    """The handlers, bound to one provider's state."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.book = provider.tasks

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/tasks", self.list_tasks, methods=["GET"]),
            Route("/api/v1/tasks", self.create_task, methods=["POST"]),
            Route("/api/v1/tasks/{task_id}", self.get_task, methods=["GET"]),
            Route("/api/v1/tasks/{task_id}", self.update_task, methods=["PATCH"]),
            Route("/api/v1/tasks/{task_id}", self.delete_task, methods=["DELETE"]),
        ]

    def grant(self, request: Request, needed: str) -> Grant:
        with self.provider.lock:
            try:
                grant = self.provider.oauth.check_access(_bearer(request))
            except ProviderError:
                self.provider.unauthorized += 1
                raise
            self.book.account(grant.account).requests += 1
        if needed not in grant.scope:
            challenge = f'Bearer realm="{REALM}", error="insufficient_scope", scope="{needed}"'
            raise ProviderError(
                403, "insufficient_scope", f"needs scope {needed}", {"WWW-Authenticate": challenge}
            )
        return grant

    def read(self, grant: Grant, query: Callable[[Account], Outcome]) -> Response:
        with self.provider.lock:
            return _response(query(self.book.account(grant.account)))

    def mutate(
        self,
        request: Request,
        grant: Grant,
        body: dict[str, Any] | None,
        perform: Callable[[Account], Outcome],
    ) -> Response:
        key = _idempotency_key(request)
        with self.provider.lock:
            account = self.book.account(grant.account)
            if key is None:
                return _response(perform(account))
            same = fingerprint(request.method, request.url.path, body)
            outcome, replayed = self.book.once(account, key, same, lambda: perform(account))
        return _response(outcome, replayed)

    async def list_tasks(self, request: Request) -> Response:
        grant = self.grant(request, READ)
        status = request.query_params.get("status")
        if status is not None and status not in STATUSES:
            raise invalid_request(f"status must be one of: {', '.join(STATUSES)}")
        return self.read(grant, lambda account: self.book.listing(account, status))

    async def get_task(self, request: Request) -> Response:
        grant = self.grant(request, READ)
        task_id: str = request.path_params["task_id"]
        return self.read(grant, lambda account: self.book.get(account, task_id))

    async def create_task(self, request: Request) -> Response:
        grant = self.grant(request, WRITE)
        body = parse_json(await request.body())
        title, notes = parse_new(body)
        return self.mutate(
            request, grant, body, lambda account: self.book.create(account, title, notes)
        )

    async def update_task(self, request: Request) -> Response:
        grant = self.grant(request, WRITE)
        task_id: str = request.path_params["task_id"]
        body = parse_json(await request.body())
        changes = parse_changes(body)
        return self.mutate(
            request, grant, body, lambda account: self.book.update(account, task_id, changes)
        )

    async def delete_task(self, request: Request) -> Response:
        grant = self.grant(request, WRITE)
        task_id: str = request.path_params["task_id"]
        return self.mutate(request, grant, None, lambda account: self.book.delete(account, task_id))
