"""The demo task list: a provider of ours, for dev, tests and the demo only (its stand-in is
``standins.demo_provider``; staging and production refuse it). It takes an
``Idempotency-Key``, so its mutations need no marker."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from integrations.routes import Route
from integrations.spec import Answer, OAuthSpec, Provider, ToolOutcome, ToolSpec

TASKS = "/api/v1/tasks"
TASK = "/api/v1/tasks/{id}"


def _problem(resp: Answer) -> ToolOutcome:
    try:
        detail = resp.json().get("error_description") or resp.json().get("error")
    except ValueError:
        detail = resp.response.reason_phrase
    return ToolOutcome(f"the task list refused: {resp.status_code} {detail}", is_error=True)


def _task_line(task: dict[str, Any]) -> str:
    return f"{task['id']} [{task['status']}] {task['title']}"


def _render_task(expected: int, verb: str) -> Callable[[Answer, Mapping[str, Any]], ToolOutcome]:
    """The outcome of a call that answers with the task it created or changed."""

    def render(resp: Answer, _: Mapping[str, Any]) -> ToolOutcome:
        if resp.status_code != expected:
            return _problem(resp)
        task = resp.json()
        return ToolOutcome(
            f"{verb} {_task_line(task)}",
            action=f"task.{verb}",
            target=f"demo:task:{task['id']}",
            data={"task_id": task["id"]},
        )

    return render


def _render_list(resp: Answer, _: Mapping[str, Any]) -> ToolOutcome:
    if resp.status_code != 200:
        return _problem(resp)
    tasks = resp.json().get("tasks", [])
    return ToolOutcome("\n".join(_task_line(t) for t in tasks) or "no tasks")


def _title_not_blank(inp: Mapping[str, Any]) -> str | None:
    if "title" in inp and not inp["title"].strip():
        return "a task's title must not be blank"
    return None


def _a_change(inp: Mapping[str, Any]) -> str | None:
    if not any(k in inp for k in ("title", "notes", "status")):
        return "nothing to change: give a title, notes or a status"
    return _title_not_blank(inp)


def _render_deleted(resp: Answer, inp: Mapping[str, Any]) -> ToolOutcome:
    if resp.status_code != 204:
        return _problem(resp)
    task_id = inp["id"]
    return ToolOutcome(f"deleted {task_id}", action="task.deleted", target=f"demo:task:{task_id}")


# A value that goes into a provider URL path has a strict pattern and a length limit:
# integrations.routes refuses to wire a tool whose path variable lacks them.
_TASK_ID = {
    "type": "string",
    "description": "The task's id as the task list gives it, e.g. tsk_0123456789abcdef.",
    "pattern": "^tsk_[0-9a-f]{16}$",
    "maxLength": 20,
}
_TEXT = {"type": "string", "minLength": 1, "maxLength": 200}
_NOTES = {"type": "string", "maxLength": 2000}

PROVIDER = Provider(
    name="demo",
    title="Demo task list",
    api_url="http://127.0.0.1:8790",
    oauth_url="http://127.0.0.1:8790",
    client_id="system2-demo",
    client_secret="demo-secret",  # noqa: S106 - the stand-in's, public in this repository
    oauth=OAuthSpec(
        authorize_path="/oauth/authorize",
        token_path="/oauth/token",  # noqa: S106 - a URL path, not a password
        scopes=("tasks.read", "tasks.write"),
    ),
    idempotency_header="Idempotency-Key",
    dev_only=True,
    tools=(
        ToolSpec(
            "demo_list_tasks",
            "List the company's tasks in its Demo task list.",
            {
                "type": "object",
                "properties": {"status": {"type": "string", "enum": ["open", "done"]}},
            },
            Route("GET", TASKS, query=("status",)),
            _render_list,
        ),
        ToolSpec(
            "demo_create_task",
            "Create a task in the company's Demo task list.",
            {
                "type": "object",
                "properties": {"title": _TEXT, "notes": _NOTES},
                "required": ["title"],
            },
            Route("POST", TASKS, body=("title", "notes"), check=_title_not_blank),
            _render_task(201, "created"),
            mutates=True,
            action="task.created",
        ),
        ToolSpec(
            "demo_update_task",
            "Change a task's title, notes or status (open or done).",
            {
                "type": "object",
                "properties": {
                    "id": _TASK_ID,
                    "title": _TEXT,
                    "notes": _NOTES,
                    "status": {"type": "string", "enum": ["open", "done"]},
                },
                "required": ["id"],
            },
            Route("PATCH", TASK, body=("title", "notes", "status"), check=_a_change),
            _render_task(200, "updated"),
            mutates=True,
            action="task.updated",
        ),
        ToolSpec(
            "demo_delete_task",
            "Delete a task from the company's Demo task list.",
            {"type": "object", "properties": {"id": _TASK_ID}, "required": ["id"]},
            Route("DELETE", TASK),
            _render_deleted,
            mutates=True,
            action="task.deleted",
        ),
    ),
)
