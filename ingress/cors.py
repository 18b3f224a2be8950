"""CORS: which web pages may call the ingress from a browser (``S2_CORS_ORIGINS``).

Ours rather than Starlette's ``CORSMiddleware``, which answers a disallowed origin's preflight
with its allowed methods and headers and adds ``Access-Control-Expose-Headers`` to every
response: here a disallowed origin gets no ``Access-Control-*`` header at all. No
credentials mode: the API takes bearer tokens, never cookies.

It sits outside the bearer check: a browser's preflight (``OPTIONS`` with
``Access-Control-Request-Method``) carries no token, and is answered here, never passed on;
and the CORS headers go on every answer to an allowed origin, the 401s and 413s of the
middleware inside it included, so the page can read why it was refused.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingress import problems

ALLOWED_METHODS = ("GET", "POST", "PUT", "DELETE")  # every method a route of the API answers
# every request header a route reads (X-Correlation-ID: a submit's; X-Request-ID: the logs')
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "Last-Event-ID",
    "X-Correlation-ID",
    "X-Request-ID",
)
EXPOSED_HEADERS = ("Location", "Retry-After", "X-Request-ID")
MAX_AGE_S = 600


class Cors:
    """Answers preflights and marks the answers to pages of ``origins`` (``("*",)``: any
    page, refused in staging and production by the settings' checks)."""

    def __init__(self, app: ASGIApp, origins: Collection[str]) -> None:
        self.app = app
        self.any_origin = "*" in origins
        self.origins = frozenset(origins)

    def allowed(self, origin: str) -> bool:
        return self.any_origin or origin in self.origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(origin)(scope, receive, send)
            return
        allowed = self.allowed(origin)

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer = MutableHeaders(scope=message)
                answer.add_vary_header("Origin")
                if allowed:
                    answer["Access-Control-Allow-Origin"] = "*" if self.any_origin else origin
                    answer["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
            await send(message)

        await self.app(scope, receive, marked)

    def _preflight(self, origin: str) -> Response:
        vary = {"Vary": "Origin"}
        if not self.allowed(origin):
            return problems.answer(
                403,
                "not_allowed",
                "this origin may not call the API from a browser (S2_CORS_ORIGINS)",
                headers=vary,
                reason="origin_not_allowed",
            )
        return Response(
            status_code=204,
            headers={
                **vary,
                "Access-Control-Allow-Origin": "*" if self.any_origin else origin,
                "Access-Control-Allow-Methods": ", ".join(ALLOWED_METHODS),
                "Access-Control-Allow-Headers": ", ".join(ALLOWED_HEADERS),
                "Access-Control-Max-Age": str(MAX_AGE_S),
            },
        )
