"""The tenant-stamped envelope around every message on a queue or stream.

Forward compatibility: a newer producer may add fields; they are kept (``extra="allow"``)
and never fatal. A newer *schema version* is a breaking change and is refused with a clear
reason, so it is dead-lettered rather than misread; older versions go through ``UPGRADES``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar, cast
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from messages.errors import BadMessage

SCHEMA_VERSION = 1

# version -> function turning a raw envelope of that version into one of the next version.
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


class ActorType(StrEnum):
    user = "user"
    ted = "ted"
    operator = "operator"
    system = "system"


class Actor(BaseModel):
    """Who caused a message: a signed-in user, Ted (the agent), an operator or the system."""

    model_config = ConfigDict(frozen=True, extra="allow")

    type: ActorType
    id: str = Field(min_length=1, max_length=200)

    @property
    def ref(self) -> str:
        """``user:alice``: how rows name who did something (``actor_of`` reads it back)."""
        return f"{self.type.value}:{self.id}"


class Route(BaseModel):
    """Where a payload goes: the Dramatiq queue and actor name that consume it."""

    model_config = ConfigDict(frozen=True)

    queue: str
    actor: str


class Payload(BaseModel):
    """Base of every payload. ``route`` is set by payloads that travel on a queue."""

    model_config = ConfigDict(frozen=True, extra="allow")

    route: ClassVar[Route | None] = None


P = TypeVar("P", bound=Payload)


def _now() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel, Generic[P]):
    model_config = ConfigDict(frozen=True, extra="allow")

    message_id: UUID = Field(default_factory=uuid4)
    schema_version: int = SCHEMA_VERSION
    company_id: UUID
    actor: Actor
    issued_at: datetime = Field(default_factory=_now)
    correlation_id: UUID
    payload: P

    def follow_up(self, payload: Payload, *, actor: Actor | None = None) -> Envelope[Any]:
        """A new message caused by this one: same company and correlation, fresh id."""
        model: type[Envelope[Any]] = cast(Any, Envelope)[type(payload)]
        return model(
            company_id=self.company_id,
            actor=actor or self.actor,
            correlation_id=self.correlation_id,
            payload=payload,
        )


def open_envelope(raw: object, payload_type: type[P]) -> Envelope[P]:
    """Validate a raw message (dict or JSON text) into an envelope, or raise ``BadMessage``.

    The reason is safe to log: it names fields and problems, never values.
    """
    if isinstance(raw, str | bytes):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise BadMessage("not JSON") from None
    if not isinstance(raw, dict):
        raise BadMessage(f"expected an envelope object, got {type(raw).__name__}")
    version = raw.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or version < 1:
        raise BadMessage("schema_version must be a positive integer")
    if version > SCHEMA_VERSION:
        raise BadMessage(
            f"schema_version {version} is newer than this worker understands ({SCHEMA_VERSION}); "
            "deploy the newer consumer, then replay from the dead-letter queue"
        )
    while version < SCHEMA_VERSION:
        if version not in UPGRADES:
            raise BadMessage(f"no upgrade path from schema_version {version}")
        raw = UPGRADES[version](raw)
        version += 1
    try:
        return Envelope[payload_type].model_validate(raw)  # type: ignore[valid-type]
    except ValidationError as exc:
        raise BadMessage(_reason(exc)) from None


def _reason(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "message"
        problems.append(f"{where}: {err['msg']}")
    return "invalid envelope: " + "; ".join(problems)
