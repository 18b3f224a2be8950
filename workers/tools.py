"""Tools Ted may call, and the toolbox a quest is offered.

A tool declares its Claude schema and whether it changes state. A state-changing tool gets an
idempotency key built from (quest, step, tool-use id), so a redelivered step repeats nothing,
and its outcome names the action and target that go into ``activity_log``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from integrations import ToolOutcome
from store import Database
from store import notes as notes_store


@dataclass(frozen=True)
class ToolCall:
    company_id: UUID
    quest_id: UUID
    step: int
    tool_use_id: str
    input: Mapping[str, Any]
    # The message that started the quest: the originating message of any audit row the
    # tool writes itself (as a credential marked as needing reconnection).
    origin_message_id: UUID | None = None

    @property
    def idempotency_key(self) -> str:
        return f"{self.quest_id}:{self.step}:{self.tool_use_id}"


__all__ = [
    "AddNote",
    "ListNotes",
    "Tool",
    "ToolCall",
    "ToolOutcome",
    "Toolbox",
    "Tools",
    "bounded",
]
TOOL_RESULT_MAX_CHARS = 8_000  # the default of S2_TOOL_RESULT_MAX_CHARS


def bounded(outcome: ToolOutcome, limit: int) -> ToolOutcome:
    """The one rule for what a tool's result may add to a quest's transcript: its content cut
    to ``limit`` characters, saying how much was cut. Every step's request carries every
    earlier result, so one long answer would be paid for at each later step."""
    if len(outcome.content) <= limit:
        return outcome
    cut = len(outcome.content) - limit
    return ToolOutcome(
        f"{outcome.content[:limit]}\n[... {cut} more characters not shown]",
        is_error=outcome.is_error,
        action=outcome.action,
        target=outcome.target,
        data=outcome.data,
    )


class Tool(Protocol):
    name: str
    description: str
    input_schema: dict[str, Any]
    mutates: bool

    async def run(self, call: ToolCall) -> ToolOutcome: ...


class Tools:
    """The tools offered to one quest."""

    def __init__(self, tools: list[Tool]) -> None:
        self._tools = {t.name: t for t in tools}

    def schemas(self) -> list[dict[str, Any]]:
        return [
            {"name": t.name, "description": t.description, "input_schema": t.input_schema}
            for t in self._tools.values()
        ]

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)


class Toolbox:
    """Every tool the workers can run: the built-in ones, offered to every quest, and each
    integration's, offered only to quests of companies that connected it."""

    def __init__(
        self, builtin: list[Tool], integrations: Mapping[str, list[Tool]] | None = None
    ) -> None:
        self.builtin = list(builtin)
        self.integrations = dict(integrations or {})

    def for_company(self, connected: set[str]) -> Tools:
        extra = [t for name in sorted(connected) for t in self.integrations.get(name, [])]
        return Tools([*self.builtin, *extra])


class AddNote:
    """Write a note in the company's notebook (a state change: audited)."""

    name = "add_note"
    description = "Write a short note in the company's notebook for its people to read later."
    input_schema: dict[str, Any] = {  # noqa: RUF012 - a tool's schema is a plain constant
        "type": "object",
        "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 10000}},
        "required": ["text"],
    }
    mutates = True

    def __init__(self, db: Database) -> None:
        self._db = db

    async def run(self, call: ToolCall) -> ToolOutcome:
        text = call.input.get("text")
        if not isinstance(text, str) or not text.strip():
            return ToolOutcome("add_note needs a non-empty 'text'", is_error=True)
        note_id, _ = await self._db.in_tenant(
            call.company_id,
            lambda tx: notes_store.add(tx, call.quest_id, text[:10000], call.idempotency_key),
        )
        return ToolOutcome(
            f"note {note_id} saved",
            action="note.added",
            target=f"note:{note_id}",
            data={"chars": len(text)},
        )


class ListNotes:
    """Read the company's most recent notes (no state change)."""

    name = "list_notes"
    description = "List the most recent notes in the company's notebook."
    input_schema: dict[str, Any] = {  # noqa: RUF012
        "type": "object",
        "properties": {"limit": {"type": "integer", "minimum": 1, "maximum": 50}},
    }
    mutates = False

    def __init__(self, db: Database) -> None:
        self._db = db

    async def run(self, call: ToolCall) -> ToolOutcome:
        limit = call.input.get("limit", 10)
        limit = limit if isinstance(limit, int) and 1 <= limit <= 50 else 10
        found = await self._db.in_tenant(call.company_id, lambda tx: notes_store.recent(tx, limit))
        if not found:
            return ToolOutcome("the notebook is empty")
        return ToolOutcome("\n".join(f"- {n.text}" for n in found))


def builtin_tools(db: Database) -> list[Tool]:
    return [AddNote(db), ListNotes(db)]
