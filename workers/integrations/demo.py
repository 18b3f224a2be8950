"""The demo integration's tools against the demo provider's task API."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from workers.integrations.routes import Route
from workers.integrations.tools import Endpoint
from workers.tools import ToolOutcome

TASKS = "/api/v1/tasks"
TASK = "/api/v1/tasks/{id}"


def _problem(resp: httpx.Response) -> ToolOutcome:
    try:
        detail = resp.json().get("error_description") or resp.json().get("error")
    except ValueError:
        detail = resp.reason_phrase
    return ToolOutcome(f"the task list refused: {resp.status_code} {detail}", is_error=True)


def _task_line(task: dict[str, Any]) -> str:
    return f"{task['id']} [{task['status']}] {task['title']}"


def _render_task(
    expected: int, verb: str
) -> Callable[[httpx.Response, Mapping[str, Any]], ToolOutcome]:
    """The outcome of a call that answers with the task it created or changed."""

    def render(resp: httpx.Response, _: Mapping[str, Any]) -> ToolOutcome:
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


def _render_list(resp: httpx.Response, _: Mapping[str, Any]) -> ToolOutcome:
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


def _render_deleted(resp: httpx.Response, inp: Mapping[str, Any]) -> ToolOutcome:
    if resp.status_code != 204:
        return _problem(resp)
    task_id = inp["id"]
    return ToolOutcome(f"deleted {task_id}", action="task.deleted", target=f"demo:task:{task_id}")


# Every URL is built by workers.integrations.routes from these templates and the tools'
# schemas in runtime.catalog: never by hand here.
ENDPOINTS: dict[str, Endpoint] = {
    "demo_list_tasks": Endpoint(Route("GET", TASKS, query=("status",)), _render_list),
    "demo_create_task": Endpoint(
        Route("POST", TASKS, body=("title", "notes"), check=_title_not_blank),
        _render_task(201, "created"),
    ),
    "demo_update_task": Endpoint(
        Route("PATCH", TASK, body=("title", "notes", "status"), check=_a_change),
        _render_task(200, "updated"),
    ),
    "demo_delete_task": Endpoint(Route("DELETE", TASK), _render_deleted),
}
