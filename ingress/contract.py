"""The HTTP contract as the OpenAPI document states it: named operations (each route's
function name), a bearer scheme, every error a ``Problem`` in ``application/problem+json``,
and the live streams' events described. The document is checked in
(``docs/openapi.json``, rewritten by ``system2 openapi``) and a test fails when the served one
differs, so a contract change is a reviewed diff.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from ingress.problems import MEDIA_TYPE

SSE_MEDIA_TYPE = "text/event-stream"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

EventKind = Literal[
    "quest.state",
    "step.started",
    "step.waiting",
    "claude.replied",
    "guard.tier",
    "guard.slowed",
    "tool.called",
    "tool.finished",
    "step.finished",
]


class LiveEventData(BaseModel):
    """The JSON of an event's ``data:`` line. The event's ``id:`` is its stream entry id
    (send it back as ``Last-Event-ID`` to resume) and its ``event:`` line is ``kind``."""

    quest_id: str
    kind: EventKind = Field(
        description="`quest.state`: the quest started or ended (`status`, `reason`, `result`; "
        "a quest's own stream ends after its terminal state); `step.started` "
        "(`reserved_usd_micros`); `step.waiting`: a step waits for Claude (`reason`, "
        "`retry_in_ms`); `claude.replied`: Claude's reply (`text`: its rationale, `tools`, "
        "`stop_reason`, `cost_usd_micros`, `quest_cost_usd_micros`, `input_tokens`, "
        "`cache_write_tokens`, `cache_read_tokens`, `output_tokens`); `guard.tier`: a "
        "budget crossed a tier (`scope`, `tier`, `spent_usd_micros`, `cap_usd_micros`); "
        "`guard.slowed`: the guard slowed the quest (`delay_ms`); `tool.called` / "
        "`tool.finished`: a tool call (`tool`, `tool_use_id`, `ok`, `target`); "
        "`step.finished`: a step ended"
    )
    step: int | None
    data: dict[str, Any]
    at: str = Field(description="when the worker issued it (ISO 8601, UTC)")


def operation_id(route: APIRoute) -> str:
    """A route's operationId is its function's name: ``submit_quest``, ``list_quests``."""
    return route.name


def sse_response(description: str) -> dict[int | str, dict[str, Any]]:
    """``responses`` entry of a route that answers a live stream."""
    schema = {"$ref": "#/components/schemas/LiveEventData"}
    return {200: {"description": description, "content": {SSE_MEDIA_TYPE: {"schema": schema}}}}


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, as served and as checked in."""
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["LiveEventData"] = LiveEventData.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    for path in doc.get("paths", {}).values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                problem = {"schema": PROBLEM_REF}
                if status[0] in "45" and problem in content.values():  # the route's media type
                    response["content"] = {MEDIA_TYPE: problem}
                if SSE_MEDIA_TYPE in content:
                    content.pop("application/json", None)
    return doc


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def dumps(doc: dict[str, Any]) -> str:
    """The checked-in form: sorted keys, two-space indent, a final newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
