"""The task lists, one per account, and the ``Idempotency-Key`` memory that guards them.

Pure logic, no HTTP and no locking: ``Provider`` serialises calls under its lock, so a check
of an idempotency key and the mutation it guards happen as one step even when many
identical requests arrive at once.

An outcome is remembered per (account, key) together with a fingerprint of the request
(method, path and canonical JSON body). A repeat with the same fingerprint gets the
remembered outcome back; a repeat with another fingerprint is refused with 422, as in the
IETF draft "The Idempotency-Key HTTP Header Field". Only outcomes the handler reached are
remembered (2xx and 404); a request refused before that (401, 400, an injected 5xx) leaves
the key free for a corrected retry.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from standins.demo_provider.errors import ProviderError, invalid_request

STATUSES = ("open", "done")
_MAX_TITLE = 200
_MAX_NOTES = 10_000


def _stamp(moment: float) -> str:
    """RFC 3339 in UTC with milliseconds, e.g. ``2026-01-02T03:04:05.678Z``."""
    text = datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


@dataclass(slots=True)
class Task:
    id: str
    title: str
    notes: str
    status: str
    created_at: float
    updated_at: float

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "notes": self.notes,
            "status": self.status,
            "created_at": _stamp(self.created_at),
            "updated_at": _stamp(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """A reply as data, so it can be remembered and replayed byte for byte."""

    status: int
    body: dict[str, Any] | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class _Remembered:
    fingerprint: str
    outcome: Outcome


@dataclass(slots=True)
class Account:
    """One connected tenant of the provider: its tasks, keys and counters."""

    name: str
    tasks: dict[str, Task] = field(default_factory=dict)
    requests: int = 0
    mutations: int = 0
    idempotent_replays: int = 0
    keys: dict[str, _Remembered] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "mutations": self.mutations,
            "idempotent_replays": self.idempotent_replays,
            "tasks": len(self.tasks),
        }


def _not_found(task_id: str) -> Outcome:
    body = {"error": "not_found", "error_description": f"no task {task_id!r}"}
    return Outcome(404, body)


@dataclass(slots=True)
class TaskBook:
    clock: Callable[[], float]
    accounts: dict[str, Account] = field(default_factory=dict)

    def account(self, name: str) -> Account:
        found = self.accounts.get(name)
        if found is None:
            found = self.accounts[name] = Account(name)
        return found

    def listing(self, account: Account, status: str | None) -> Outcome:
        tasks = [t.view() for t in account.tasks.values() if status in (None, t.status)]
        return Outcome(200, {"tasks": tasks})

    def get(self, account: Account, task_id: str) -> Outcome:
        task = account.tasks.get(task_id)
        return _not_found(task_id) if task is None else Outcome(200, task.view())

    def create(self, account: Account, title: str, notes: str) -> Outcome:
        now = self.clock()
        task = Task("tsk_" + secrets.token_hex(8), title, notes, "open", now, now)
        account.tasks[task.id] = task
        account.mutations += 1
        return Outcome(201, task.view(), (("Location", f"/api/v1/tasks/{task.id}"),))

    def update(self, account: Account, task_id: str, changes: dict[str, str]) -> Outcome:
        task = account.tasks.get(task_id)
        if task is None:
            return _not_found(task_id)
        task.title = changes.get("title", task.title)
        task.notes = changes.get("notes", task.notes)
        task.status = changes.get("status", task.status)
        task.updated_at = self.clock()
        account.mutations += 1
        return Outcome(200, task.view())

    def delete(self, account: Account, task_id: str) -> Outcome:
        if account.tasks.pop(task_id, None) is None:
            return _not_found(task_id)
        account.mutations += 1
        return Outcome(204)

    @staticmethod
    def once(
        account: Account, key: str, fingerprint: str, perform: Callable[[], Outcome]
    ) -> tuple[Outcome, bool]:
        """Performs at most once per (account, key); returns the outcome and whether replayed."""
        seen = account.keys.get(key)
        if seen is not None:
            if seen.fingerprint != fingerprint:
                raise ProviderError(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with a different request",
                )
            account.idempotent_replays += 1
            return seen.outcome, True
        outcome = perform()
        account.keys[key] = _Remembered(fingerprint, outcome)
        return outcome, False


# --- request bodies -------------------------------------------------------------------------


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise invalid_request("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid_request("the body must be a JSON object")
    return body


def fingerprint(method: str, path: str, body: dict[str, Any] | None) -> str:
    """Key order and whitespace do not make a different request; anything else does."""
    canonical = "" if body is None else json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def _text(body: dict[str, Any], name: str, limit: int, *, blank_ok: bool) -> str:
    value = body[name]
    if not isinstance(value, str) or len(value) > limit or not (blank_ok or value.strip()):
        shape = "a string" if blank_ok else "a non-empty string"
        raise invalid_request(f"{name} must be {shape} of at most {limit} characters")
    return value


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    if unknown := sorted(set(body) - allowed):
        raise invalid_request(f"unknown field(s): {', '.join(unknown)}")


def parse_new(body: dict[str, Any]) -> tuple[str, str]:
    """``{"title": str, "notes"?: str}`` -> (title, notes)."""
    _only(body, {"title", "notes"})
    if "title" not in body:
        raise invalid_request("title is required")
    title = _text(body, "title", _MAX_TITLE, blank_ok=False)
    notes = _text(body, "notes", _MAX_NOTES, blank_ok=True) if "notes" in body else ""
    return title, notes


def parse_changes(body: dict[str, Any]) -> dict[str, str]:
    """Any of ``title``, ``notes``, ``status`` (one of ``STATUSES``)."""
    _only(body, {"title", "notes", "status"})
    changes: dict[str, str] = {}
    if "title" in body:
        changes["title"] = _text(body, "title", _MAX_TITLE, blank_ok=False)
    if "notes" in body:
        changes["notes"] = _text(body, "notes", _MAX_NOTES, blank_ok=True)
    if "status" in body:
        if body["status"] not in STATUSES:
            raise invalid_request(f"status must be one of: {', '.join(STATUSES)}")
        changes["status"] = body["status"]
    return changes
