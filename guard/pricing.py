"""What a Claude call costs, in integer micro-USD, from its ``usage`` and a dated price table;
and what a model can hold (``ModelFacts``), which the same file keeps as data.

Rates are kept as micro-USD per million tokens (integers), so every sum is exact and only the
final division rounds — upwards, so the guard never under-counts. A model missing from the
table raises ``UnpricedModel``: a call we cannot price is a call we do not make.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any, Literal

from guard.errors import UnpricedModel

MICROS = 1_000_000
# The fewest output tokens a Claude call is made with: a step whose call does not fit what is
# left of its quest's cap or its company's budget asks for fewer output tokens, never fewer
# than these, and is halted when even that does not fit (workers/step_budget.py).
MIN_OUTPUT_TOKENS = 256
_RATE_FIELDS = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output")


@dataclass(frozen=True)
class Rates:
    """Micro-USD per million tokens."""

    input: int
    cache_write_5m: int
    cache_write_1h: int
    cache_read: int
    output: int

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Rates:
        return cls(**{f: _usd_to_micros(raw[f]) for f in _RATE_FIELDS})


@dataclass(frozen=True)
class Usage:
    """Token counts of one call, split the way they are billed."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_write_5m + self.cache_write_1h + self.cache_read

    @property
    def cache_writes(self) -> int:
        return self.cache_write_5m + self.cache_write_1h

    @property
    def cache_read_pct(self) -> int:
        """The share of the prompt tokens read from the cache, in whole percent."""
        prompt = self.prompt_tokens
        return self.cache_read * 100 // prompt if prompt else 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_write_5m + other.cache_write_5m,
            self.cache_write_1h + other.cache_write_1h,
            self.cache_read + other.cache_read,
        )

    @classmethod
    def from_api(cls, usage: dict[str, Any]) -> Usage:
        """From the Messages API's ``usage`` object.

        Without the 5m/1h breakdown, cache writes are priced at the dearer 1-hour rate.
        """
        writes = int(usage.get("cache_creation_input_tokens") or 0)
        split = usage.get("cache_creation") or {}
        five = int(split.get("ephemeral_5m_input_tokens") or 0)
        hour = int(split.get("ephemeral_1h_input_tokens") or 0)
        if five + hour != writes:
            five, hour = 0, writes
        return cls(
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0),
            cache_write_5m=five,
            cache_write_1h=hour,
            cache_read=int(usage.get("cache_read_input_tokens") or 0),
        )


@dataclass(frozen=True)
class CostParts:
    """What a call or a quest cost, split the way it is billed, each part in micro-USD rounded
    up (so the parts may sum to a few micro-USD more than the billed total)."""

    input: int = 0
    cache_write: int = 0
    cache_read: int = 0
    output: int = 0

    def __add__(self, other: CostParts) -> CostParts:
        return CostParts(
            self.input + other.input,
            self.cache_write + other.cache_write,
            self.cache_read + other.cache_read,
            self.output + other.output,
        )


@dataclass(frozen=True)
class ModelFacts:
    """What a model holds: its context window (prompt and output, tokens) and the shortest
    prefix its prompt cache stores."""

    context_window: int
    cache_min_tokens: int


@dataclass(frozen=True)
class Price:
    model: str
    effective: date
    rates: Rates
    long_prompt_threshold: int | None = None
    long_prompt_rates: Rates | None = None

    def rates_for(self, prompt_tokens: int) -> Rates:
        long = self.long_prompt_rates
        if (
            long
            and self.long_prompt_threshold is not None
            and prompt_tokens > self.long_prompt_threshold
        ):
            return long
        return self.rates


class PriceTable:
    def __init__(
        self,
        prices: list[Price],
        facts: dict[str, ModelFacts] | None = None,
        default_facts: ModelFacts = ModelFacts(context_window=200_000, cache_min_tokens=4096),
    ) -> None:
        self._by_model: dict[str, list[Price]] = {}
        for p in sorted(prices, key=lambda p: p.effective):
            self._by_model.setdefault(p.model, []).append(p)
        self._facts = dict(facts or {})
        self._default_facts = default_facts

    @classmethod
    def load(cls, text: str | None = None) -> PriceTable:
        if text is None:
            text = resources.files("guard").joinpath("prices.toml").read_text(encoding="utf-8")
        data = tomllib.loads(text)
        prices = []
        for entry in data["price"]:
            long = entry.get("long_prompt")
            for model in entry["models"]:
                prices.append(
                    Price(
                        model=model,
                        effective=date.fromisoformat(entry["effective"]),
                        rates=Rates.parse(entry),
                        long_prompt_threshold=int(long["threshold_tokens"]) if long else None,
                        long_prompt_rates=Rates.parse(long) if long else None,
                    )
                )
        facts = {
            model: _facts(entry) for entry in data.get("model", []) for model in entry["models"]
        }
        default = data.get("model_defaults")
        return cls(prices, facts, _facts(default)) if default else cls(prices, facts)

    def facts(self, model: str) -> ModelFacts:
        """What ``model`` holds; a model the table does not describe gets the defaults (the
        smallest window and the longest cache minimum of the known ones)."""
        return self._facts.get(model, self._default_facts)

    def price(self, model: str, on: date | None = None) -> Price:
        day = on or datetime.now(UTC).date()
        current = [p for p in self._by_model.get(model, []) if p.effective <= day]
        if not current:
            raise UnpricedModel(
                f"model {model!r} has no price on {day.isoformat()}: add it to guard/prices.toml "
                "before using it"
            )
        return current[-1]

    def cost(self, model: str, usage: Usage, on: date | None = None) -> int:
        """Micro-USD billed for ``usage``, rounded up."""
        rates = self.price(model, on).rates_for(usage.prompt_tokens)
        total = (
            usage.input_tokens * rates.input
            + usage.cache_write_5m * rates.cache_write_5m
            + usage.cache_write_1h * rates.cache_write_1h
            + usage.cache_read * rates.cache_read
            + usage.output_tokens * rates.output
        )
        return -(-total // MICROS)

    def cost_parts(self, model: str, usage: Usage, on: date | None = None) -> CostParts:
        """``cost``, split into uncached input, cache writes, cache reads and output."""
        rates = self.price(model, on).rates_for(usage.prompt_tokens)
        writes = usage.cache_write_5m * rates.cache_write_5m + usage.cache_write_1h * (
            rates.cache_write_1h
        )
        return CostParts(
            input=-(-usage.input_tokens * rates.input // MICROS),
            cache_write=-(-writes // MICROS),
            cache_read=-(-usage.cache_read * rates.cache_read // MICROS),
            output=-(-usage.output_tokens * rates.output // MICROS),
        )

    def worst_case(
        self,
        model: str,
        input_tokens: int,
        max_tokens: int,
        on: date | None = None,
        *,
        cache_writes: bool | Literal["5m", "1h"] = False,
    ) -> int:
        """The most a call can cost: ``max_tokens`` of output, and every prompt token at the
        input rate — or, if the request may write the prompt cache, at the dearest rate it
        may write at (``"5m"``: its breakpoints are all 5-minute ones; ``True``: any) — of
        the price tier the prompt falls in."""
        rates = self.price(model, on).rates_for(input_tokens)
        dearest_in = rates.input
        if cache_writes:
            dearest_in = max(dearest_in, rates.cache_write_5m)
        if cache_writes is True or cache_writes == "1h":
            dearest_in = max(dearest_in, rates.cache_write_1h)
        return -(-(input_tokens * dearest_in + max_tokens * rates.output) // MICROS)

    def least_call(self, model: str, input_tokens: int, on: date | None = None) -> int:
        """The least a call of ``model`` with ``input_tokens`` of prompt may be reserved at:
        its worst case with ``MIN_OUTPUT_TOKENS`` of output. A step that cannot reserve this
        much is halted, so a quest whose cap, or a company whose budget, has less left than
        its first call's least is refused at submit."""
        return self.worst_case(model, input_tokens, MIN_OUTPUT_TOKENS, on)


@cache
def packaged_prices() -> PriceTable:
    """The price table shipped in ``guard/prices.toml`` (what ``PriceTable.load()`` reads),
    loaded once per process."""
    return PriceTable.load()


def _facts(raw: dict[str, Any]) -> ModelFacts:
    return ModelFacts(int(raw["context_window"]), int(raw["cache_min_tokens"]))


def _usd_to_micros(value: str | int | float) -> int:
    micros = Decimal(str(value)) * MICROS
    if micros != micros.to_integral_value():
        raise ValueError(f"price {value} is finer than a micro-dollar per million tokens")
    return int(micros)
