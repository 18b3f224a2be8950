"""The one place that builds provider URLs (``integrations.routes``) and the schema
check in front of it: no tool input can move a request, and the token with it, off the path
its route names. Pure code, no services: the same rules run end to end, on the real provider,
in ``test_integrations.py``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations import PROVIDERS
from integrations.providers.demo import PROVIDER as DEMO
from integrations.routes import (
    ProviderBase,
    ProviderRequest,
    RequestBuilder,
    Route,
    RouteError,
    UnsafePath,
    path_segment,
)
from integrations.schema import SchemaError, check_schema, validate

BASE = "http://127.0.0.1:8080"
TASK_ID = "tsk_0123456789abcdef"

# Values Claude could put where an id belongs, each aimed off the task's own path.
TRAVERSALS: list[Any] = [
    "../../oauth/token",
    "../../../oauth/token",
    "..",
    ".",
    "",
    "%2e%2e/oauth",
    "%2e%2e",
    "%2E%2E%2F%2E%2E%2Foauth%2Ftoken",
    "x/../../oauth/token",
    "a?b",
    "a#b",
    "a%2Fb",
    "a/b",
    "a\\b",
    f"{TASK_ID}/../../../oauth/token",
    f"x/../{TASK_ID}",
    f"{TASK_ID}/",
    f"{TASK_ID}?status=done",
    f"{TASK_ID}#x",
    f"{TASK_ID}\n",
    f" {TASK_ID}",
    f"{TASK_ID}%00",
    "tsk_0123456789ABCDEF",
    "tsk_" + "0" * 17,
    "http://evil.example/x",
    "//evil.example/x",
    7,
    None,
    True,
    ["tsk_0123456789abcdef"],
    {"id": TASK_ID},
]


def builder(tool: str, base: str = BASE) -> RequestBuilder:
    (spec,) = [t for t in DEMO.tools if t.name == tool]
    return RequestBuilder(ProviderBase(base), spec.input_schema, spec.route)


# -- one segment, whatever the value ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["", ".", ".."])
def test_dot_segments_are_refused_outright(value: str) -> None:
    with pytest.raises(UnsafePath):
        path_segment(value)
    with pytest.raises(UnsafePath):
        ProviderBase(BASE).url("/api/v1/tasks/{id}", {"id": value})


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("a/b", "a%2Fb"),
        ("../x", "..%2Fx"),
        ("%2e%2e", "%252e%252e"),
        ("a?b", "a%3Fb"),
        ("a#b", "a%23b"),
        ("a b", "a%20b"),
        ("a\\b", "a%5Cb"),
        ("...", "..."),
        ("é", "%C3%A9"),
    ],
)
def test_a_value_is_percent_encoded_as_one_segment(value: str, encoded: str) -> None:
    assert path_segment(value) == encoded
    url = ProviderBase(BASE + "/prefix/").url("/api/v1/tasks/{id}", {"id": value})
    assert url.raw_path == f"/prefix/api/v1/tasks/{encoded}".encode()
    assert (url.host, url.port, url.query) == ("127.0.0.1", 8080, b"")


@given(st.text(max_size=40).filter(lambda v: v not in ("", ".", "..")))
def test_no_value_adds_leaves_or_escapes_a_segment(value: str) -> None:
    url = ProviderBase(BASE).url("/api/v1/tasks/{id}/notes", {"id": value})
    segments = url.raw_path.decode("ascii").split("/")
    assert segments[:4] == ["", "api", "v1", "tasks"] and segments[5:] == ["notes"]
    assert unquote(segments[4]) == value and segments[4] == quote(value, safe="")
    assert (url.host, url.port, url.query, url.fragment) == ("127.0.0.1", 8080, b"", "")


@pytest.mark.parametrize(
    "base",
    [
        "ftp://127.0.0.1/",
        "http://127.0.0.1/?x=1",
        "http://127.0.0.1/#x",
        "http://127.0.0.1/a%2Fb",
    ],
)
def test_a_base_url_that_could_redirect_paths_is_refused(base: str) -> None:
    with pytest.raises(RouteError):
        ProviderBase(base)


@pytest.mark.parametrize(
    "template",
    ["api/v1", "/", "/api/../oauth", "/api/./x", "/api//x", "/x{id}", "/{id}.json", "/a%2Fb"],
)
def test_a_template_is_plain_segments_and_whole_variables(template: str) -> None:
    with pytest.raises(RouteError):
        ProviderBase(BASE).url(template, {"id": "x"})


# -- the demo tools, through their real schemas and routes ---------------------------------------


@pytest.mark.parametrize("tool", ["demo_update_task", "demo_delete_task"])
@pytest.mark.parametrize("planted", TRAVERSALS, ids=repr)
def test_a_planted_id_is_refused_before_any_request(tool: str, planted: Any) -> None:
    refused = builder(tool).build({"id": planted, "status": "done"})
    assert isinstance(refused, str) and "input.id" in refused, refused


@pytest.mark.parametrize(
    ("tool", "inp", "method", "path", "body"),
    [
        (
            "demo_update_task",
            {"id": TASK_ID, "status": "done"},
            "PATCH",
            f"/api/v1/tasks/{TASK_ID}",
            {"status": "done"},
        ),
        ("demo_delete_task", {"id": TASK_ID}, "DELETE", f"/api/v1/tasks/{TASK_ID}", None),
        (
            "demo_create_task",
            {"title": "t", "notes": "n"},
            "POST",
            "/api/v1/tasks",
            {"title": "t", "notes": "n"},
        ),
        ("demo_list_tasks", {}, "GET", "/api/v1/tasks", None),
    ],
)
def test_a_valid_input_builds_exactly_its_request(
    tool: str, inp: dict[str, Any], method: str, path: str, body: dict[str, Any] | None
) -> None:
    built = builder(tool, BASE + "/").build(inp)
    assert isinstance(built, ProviderRequest)
    assert (built.method, str(built.url), built.json, built.params) == (
        method,
        BASE + path,
        body,
        None,
    )


def test_only_declared_fields_reach_the_body_and_query() -> None:
    built = builder("demo_update_task").build(
        {"id": TASK_ID, "title": "t", "Authorization": "x", "path": "/oauth/token"}
    )
    assert isinstance(built, ProviderRequest) and built.json == {"title": "t"}
    listed = builder("demo_list_tasks").build({"status": "open", "id": "../../oauth/token"})
    assert isinstance(listed, ProviderRequest)
    assert (str(listed.url), listed.params) == (BASE + "/api/v1/tasks", {"status": "open"})


@pytest.mark.parametrize("status", ["open&status=done", "open#x", "../x", "OPEN", 1, None])
def test_a_query_value_outside_the_schema_is_refused(status: Any) -> None:
    refused = builder("demo_list_tasks").build({"status": status})
    assert isinstance(refused, str) and "input.status" in refused


@pytest.mark.parametrize(
    ("tool", "inp", "says"),
    [
        ("demo_create_task", {"title": "x" * 201}, "at most 200"),
        ("demo_create_task", {"title": "   "}, "blank"),
        ("demo_create_task", {"notes": "no title"}, "input.title is required"),
        ("demo_update_task", {"id": TASK_ID}, "nothing to change"),
        ("demo_update_task", {"id": TASK_ID, "status": "gone"}, "must be one of"),
        ("demo_update_task", {"id": TASK_ID, "notes": 5}, "must be a string"),
    ],
)
def test_bodies_are_checked_against_the_schema_too(
    tool: str, inp: dict[str, Any], says: str
) -> None:
    refused = builder(tool).build(inp)
    assert isinstance(refused, str) and says in refused


def test_every_integration_tool_is_wired_through_the_builder() -> None:
    for spec in PROVIDERS.values():
        for tool in spec.tools:
            route = tool.route
            RequestBuilder(ProviderBase(BASE), tool.input_schema, route)  # refuses a bad fit
            for variable in route.variables:
                prop = tool.input_schema["properties"][variable]
                assert prop["type"] == "integer" or {"pattern", "maxLength"} <= set(prop)


# -- what the builder refuses to wire -------------------------------------------------------------

_ID = {"type": "string", "pattern": "^[a-z0-9]{1,8}$", "maxLength": 8}


def _schema(id_schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {"id": id_schema, **extra}, "required": ["id"]}


@pytest.mark.parametrize(
    ("schema", "route", "says"),
    [
        (_schema({"type": "string", "maxLength": 8}), Route("GET", "/t/{id}"), "pattern"),
        (_schema({"type": "string", "pattern": "^[a-z]+$"}), Route("GET", "/t/{id}"), "maxLength"),
        (_schema({**_ID, "pattern": "[a-z0-9]{1,8}"}), Route("GET", "/t/{id}"), "anchored"),
        (_schema({**_ID, "pattern": "^[a-z.]{1,8}$"}), Route("GET", "/t/{id}"), "'..'"),
        (
            {"type": "object", "properties": {"id": _ID}},
            Route("GET", "/t/{id}"),
            "required",
        ),
        (_schema(_ID, title={"type": "string"}), Route("GET", "/t/{id}"), "not routed"),
        (_schema(_ID), Route("GET", "/t/{id}", query=("id",)), "more than one place"),
        (_schema(_ID), Route("GET", "/t/{id}/{other}"), "not in the schema"),
        (_schema(_ID, b={"type": "string"}), Route("DELETE", "/t/{id}", body=("b",)), "no body"),
        (_schema(_ID), Route("TRACE", "/t/{id}"), "method"),
    ],
)
def test_a_route_that_does_not_fit_its_schema_is_refused_when_wired(
    schema: dict[str, Any], route: Route, says: str
) -> None:
    with pytest.raises(RouteError, match=says):
        RequestBuilder(ProviderBase(BASE), schema, route)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string"},
        {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}}},
        {"type": "object", "properties": {"id": {"oneOf": [{"type": "string"}]}}},
        {"type": "object", "properties": {"id": {"type": "array"}}},
        {"type": "object", "properties": {"id": {"type": "string", "pattern": "("}}},
        {"type": "object", "properties": {"id": {"type": "string", "enum": [1]}}},
        {"type": "object", "properties": {}, "required": ["id"]},
        {"type": "object", "additionalProperties": {"type": "string"}},
    ],
)
def test_a_schema_outside_the_enforced_subset_is_refused(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        check_schema(schema)


def test_the_validator_speaks_json_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 1, "maximum": 5},
            "s": {"type": "string", "minLength": 2, "maxLength": 3, "pattern": "^[a-z]+$"},
            "b": {"type": "boolean"},
        },
        "required": ["n"],
        "additionalProperties": False,
    }
    check_schema(schema)
    assert validate(schema, {"n": 3, "s": "ab", "b": False}) is None
    assert validate(schema, "x") == "input must be an object"
    assert validate(schema, {}) == "input.n is required"
    assert validate(schema, {"n": True}) == "input.n must be an integer"
    assert validate(schema, {"n": 1.0}) == "input.n must be an integer"
    assert validate(schema, {"n": 6}) == "input.n must be at most 5"
    assert validate(schema, {"n": 0}) == "input.n must be at least 1"
    assert validate(schema, {"n": 1, "s": "a"}) == "input.s must be at least 2 characters"
    assert validate(schema, {"n": 1, "s": "abcd"}) == "input.s must be at most 3 characters"
    assert validate(schema, {"n": 1, "s": "A1"}) == "input.s must match the pattern ^[a-z]+$"
    assert validate(schema, {"n": 1, "b": "yes"}) == "input.b must be a boolean"
    assert validate(schema, {"n": 1, "x": 1}) == "input has unknown field(s): x"


@pytest.mark.parametrize("inp", [["x"], "x", None, 7])
def test_an_input_that_is_not_an_object_is_refused(inp: Any) -> None:
    assert builder("demo_delete_task").build(inp) == "input must be an object"
