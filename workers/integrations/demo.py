"""The demo integration's tools against the demo provider's task API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from workers.integrations.tools import Endpoint, Request
from workers.tools import ToolOutcome

TASKS = "/api/v1/tasks"


def _problem(resp: httpx.Response) -> ToolOutcome:
    try:
        detail = resp.json().get("error_description") or resp.json().get("error")
    except ValueError:
        detail = resp.reason_phrase
    return ToolOutcome(f"the task list refused: {resp.status_code} {detail}", is_error=True)


def _task_line(task: dict[str, Any]) -> str:
    return f"{task['id']} [{task['status']}] {task['title']}"


def _render_task(expected: int, verb: str) -> Callable[[httpx.Response], ToolOutcome]:
    """The outcome of a call that answers with the task it created or changed."""

    def render(resp: httpx.Response) -> ToolOutcome:
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


def _list(inp: dict[str, Any]) -> Request | str:
    status = inp.get("status")
    if status not in (None, "open", "done"):
        return "status must be open or done"
    return "GET", TASKS, None, {"status": status} if status else None


def _render_list(resp: httpx.Response) -> ToolOutcome:
    if resp.status_code != 200:
        return _problem(resp)
    tasks = resp.json().get("tasks", [])
    return ToolOutcome("\n".join(_task_line(t) for t in tasks) or "no tasks")


def _create(inp: dict[str, Any]) -> Request | str:
    title = inp.get("title")
    if not isinstance(title, str) or not title.strip():
        return "a task needs a non-empty title"
    body = {"title": title[:200]}
    if isinstance(inp.get("notes"), str):
        body["notes"] = inp["notes"][:2000]
    return "POST", TASKS, body, None


def _update(inp: dict[str, Any]) -> Request | str:
    task_id = inp.get("id")
    if not isinstance(task_id, str) or not task_id:
        return "which task? give its id"
    body: dict[str, Any] = {k: inp[k] for k in ("title", "notes", "status") if k in inp}
    if not body:
        return "nothing to change: give a title, notes or a status"
    return "PATCH", f"{TASKS}/{task_id}", body, None


def _delete(inp: dict[str, Any]) -> Request | str:
    task_id = inp.get("id")
    if not isinstance(task_id, str) or not task_id:
        return "which task? give its id"
    return "DELETE", f"{TASKS}/{task_id}", None, None


def _render_deleted(resp: httpx.Response) -> ToolOutcome:
    if resp.status_code != 204:
        return _problem(resp)
    task_id = resp.request.url.path.rsplit("/", 1)[-1]
    return ToolOutcome(f"deleted {task_id}", action="task.deleted", target=f"demo:task:{task_id}")


ENDPOINTS: dict[str, Endpoint] = {
    "demo_list_tasks": Endpoint(_list, _render_list),
    "demo_create_task": Endpoint(_create, _render_task(201, "created")),
    "demo_update_task": Endpoint(_update, _render_task(200, "updated")),
    "demo_delete_task": Endpoint(_delete, _render_deleted),
}
