"""GitHub's REST error body: ``{"message", "errors"?, "documentation_url", "status"}``.

``status`` is a string, as GitHub sends it; ``errors`` is a list of objects for "Validation
Failed" and a bare string for an unsupported API version. A handler raises ``ApiError``
anywhere and the app renders it, so every refusal has the shape a real client parses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

DOCS = "https://docs.github.com/rest"
RATE_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
JSON_TYPE = "application/json; charset=utf-8"


class ApiError(Exception):
    """An error reply of the REST API, raised in a handler and rendered by the app."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        doc: str = DOCS,
        errors: list[dict[str, Any]] | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.doc = doc
        self.errors = errors
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        found: dict[str, Any] = {"message": self.message}
        if self.errors is not None:
            found["errors"] = self.errors
        found["documentation_url"] = self.doc
        found["status"] = str(self.status)
        return found


def error_response(error: ApiError, extra: Mapping[str, str] | None = None) -> JSONResponse:
    headers = {**error.headers, **(extra or {})}
    return JSONResponse(error.body(), error.status, headers, media_type=JSON_TYPE)


def not_found(doc: str = DOCS) -> ApiError:
    """GitHub answers 404, never 403, for what the caller may not see (no existence leak)."""
    return ApiError(404, "Not Found", doc=doc)


def bad_credentials() -> ApiError:
    return ApiError(401, "Bad credentials")


def requires_authentication(doc: str = DOCS) -> ApiError:
    return ApiError(401, "Requires authentication", doc=doc)


def invalid_request(detail: str, doc: str) -> ApiError:
    """A JSON-schema refusal: ``Invalid request.\\n\\n"title" wasn't supplied.``."""
    return ApiError(422, f"Invalid request.\n\n{detail}", doc=doc)


def validation_failed(doc: str, *errors: dict[str, Any]) -> ApiError:
    return ApiError(422, "Validation Failed", doc=doc, errors=list(errors))


def problems_parsing_json(doc: str) -> ApiError:
    return ApiError(400, "Problems parsing JSON", doc=doc)
