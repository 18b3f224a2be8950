"""The integrations Ted can use, as data: OAuth endpoints and each tool's Claude schema.

Pure declarations shared by the ingress (which integrations may be connected) and the
workers (which run the tools). A tool that ``mutates`` changes state at the provider: it
gets an idempotency key and an audit row with Claude's rationale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runtime.errors import ConfigurationError


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    input_schema: dict[str, Any]
    mutates: bool
    action: str = ""  # the audit action of a mutating tool, e.g. "task.created"


@dataclass(frozen=True)
class IntegrationSpec:
    name: str
    title: str
    authorize_path: str
    token_path: str
    scopes: tuple[str, ...]
    tools: tuple[ToolSpec, ...] = field(default_factory=tuple)


# A value that goes into a provider URL path has a strict pattern and a length limit: the
# workers refuse to wire a tool whose path variable lacks them (workers.integrations.routes).
_TASK_ID = {
    "type": "string",
    "description": "The task's id as the task list gives it, e.g. tsk_0123456789abcdef.",
    "pattern": "^tsk_[0-9a-f]{16}$",
    "maxLength": 20,
}

DEMO = IntegrationSpec(
    name="demo",
    title="Demo task list",
    authorize_path="/oauth/authorize",
    token_path="/oauth/token",  # noqa: S106 - a URL path, not a password
    scopes=("tasks.read", "tasks.write"),
    tools=(
        ToolSpec(
            "demo_list_tasks",
            "List the company's tasks in its Demo task list.",
            {
                "type": "object",
                "properties": {"status": {"type": "string", "enum": ["open", "done"]}},
            },
            mutates=False,
        ),
        ToolSpec(
            "demo_create_task",
            "Create a task in the company's Demo task list.",
            {
                "type": "object",
                "properties": {
                    "title": {"type": "string", "minLength": 1, "maxLength": 200},
                    "notes": {"type": "string", "maxLength": 2000},
                },
                "required": ["title"],
            },
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
                    "title": {"type": "string", "minLength": 1, "maxLength": 200},
                    "notes": {"type": "string", "maxLength": 2000},
                    "status": {"type": "string", "enum": ["open", "done"]},
                },
                "required": ["id"],
            },
            mutates=True,
            action="task.updated",
        ),
        ToolSpec(
            "demo_delete_task",
            "Delete a task from the company's Demo task list.",
            {"type": "object", "properties": {"id": _TASK_ID}, "required": ["id"]},
            mutates=True,
            action="task.deleted",
        ),
    ),
)

INTEGRATIONS: dict[str, IntegrationSpec] = {DEMO.name: DEMO}


class UnknownIntegration(ConfigurationError):
    """No integration by that name (one line from the CLI, a 404 from the ingress)."""


def integration(name: str) -> IntegrationSpec:
    """The integration called ``name``, or ``UnknownIntegration`` naming those there are."""
    spec = INTEGRATIONS.get(name)
    if spec is None:
        known = ", ".join(sorted(INTEGRATIONS))
        raise UnknownIntegration(f"no integration named {name!r}; known: {known}")
    return spec
