"""The ingress's request and response bodies (the HTTP contract, not the queue contract)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

MODEL_MAX = 100
MODEL_PATTERN = rf"^[a-z0-9][a-z0-9.\-]{{1,{MODEL_MAX - 1}}}$"
MONEY_MAX = 32  # '1000000.000000' and some spaces
NO_NUL = r"^[^\x00]*$"  # for path, query and header parameters that reach Postgres


def no_nul(value: str) -> str:
    """Postgres text cannot hold NUL: refuse it here, as a 422 naming the field."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(no_nul)]


QuestStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "halted"]
StepStatus = Literal["calling", "replied", "done"]
ActorKind = Literal["user", "ted", "operator", "system"]
TierName = Literal["ok", "warn", "slow", "halt"]


class QuestSubmit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    goal: Text = Field(min_length=1, max_length=50_000)
    model: str | None = Field(None, max_length=MODEL_MAX, pattern=MODEL_PATTERN)
    max_usd: str | None = Field(
        None, max_length=MONEY_MAX, description="a decimal amount of US dollars, e.g. '2.50'"
    )

    @field_validator("goal")
    @classmethod
    def goal_has_text(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("goal must not be blank")
        return v

    @field_validator("max_usd")
    @classmethod
    def max_usd_is_money(cls, v: str | None) -> str | None:
        if v is not None:
            usd_to_micros(v)
        return v


def usd_to_micros(value: str) -> int:
    """'2.50' -> 2_500_000. Positive, at most 6 decimals, at most a million dollars."""
    try:
        amount = Decimal(value.strip())
    except (InvalidOperation, AttributeError):
        raise ValueError("must be a decimal amount such as '2.50'") from None
    if not amount.is_finite() or amount <= 0:
        raise ValueError("must be a positive amount")
    if amount > 1_000_000:  # before any arithmetic: 1e999999 * 10**6 raises decimal.Overflow
        raise ValueError("must be at most 1000000")
    micros = amount * 1_000_000
    if micros < 1 or micros != micros.to_integral_value():  # < 1: 1e-1000100 rounds to 0
        raise ValueError("must have at most 6 decimal places")
    return int(micros)


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Text = Field("", max_length=2000)


class QuestAccepted(BaseModel):
    quest_id: UUID
    status: QuestStatus | Literal["cancelling"] = Field(
        description="`queued` for a new quest (a retried submit: the quest's status now); "
        "`cancelling` after a cancel"
    )


class CostSplit(BaseModel):
    """What Claude replies cost, split the way they are billed: each part in micro-USD
    (rounded up, so the parts may sum to a little more than the billed cost) and in tokens.
    A prompt is uncached input, cache writes and cache reads; ``cache_read_pct`` is the share
    of prompt tokens read from the prompt cache."""

    input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    output_tokens: int = 0
    input_usd_micros: int = 0
    cache_write_usd_micros: int = 0
    cache_read_usd_micros: int = 0
    output_usd_micros: int = 0
    cache_read_pct: int = 0


class StepView(BaseModel):
    step: int
    status: StepStatus
    stop_reason: str | None
    tools: list[str]
    cost_usd_micros: int
    cost_split: CostSplit | None = Field(None, description="None: no reply yet")
    started_at: datetime
    finished_at: datetime | None


class QuestView(BaseModel):
    quest_id: UUID
    status: QuestStatus
    goal: str
    model: str
    steps: list[StepView]
    cost_usd_micros: int
    cost_split: CostSplit = Field(description="its Claude replies' cost, with the cache's share")
    max_usd_micros: int | None
    result: str | None = None
    reason: str | None = None
    created_at: datetime
    finished_at: datetime | None


class ActivityView(BaseModel):
    id: int
    occurred_at: datetime
    actor_type: ActorKind
    actor_id: str
    action: str
    target: str
    rationale: str | None
    originating_message_id: UUID | None
    quest_id: UUID | None
    payload: dict[str, Any]


class ActivityPage(BaseModel):
    items: list[ActivityView]
    next_cursor: str | None


class QuestSummaryView(BaseModel):
    quest_id: UUID = Field(validation_alias="id")
    status: QuestStatus
    goal: str
    model: str
    created_by: str = Field(description="who submitted it: `user:<id>` or `operator:<name>`")
    steps_done: int
    cost_usd_micros: int
    max_usd_micros: int | None
    created_at: datetime
    finished_at: datetime | None


class QuestPage(BaseModel):
    items: list[QuestSummaryView]
    next_cursor: str | None = Field(description="pass it as `cursor` for the next page")
