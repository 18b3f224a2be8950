"""A company's limits and what the three tiers mean: pure values and functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Tier(IntEnum):
    ok = 0
    warn = 1
    slow = 2
    halt = 3


@dataclass(frozen=True)
class Limits:
    """One company's limits, in integer micro-USD. A budget of 0 means no such window."""

    quest_cap: int
    quest_ceiling: int
    daily_budget: int
    monthly_budget: int
    warn_pct: int = 50
    slow_pct: int = 80
    halt_pct: int = 100
    quests_per_minute: int = 60
    max_running_quests: int = 20

    def __post_init__(self) -> None:
        if not 0 < self.warn_pct <= self.slow_pct <= self.halt_pct <= 100:
            raise ValueError("tiers must satisfy 0 < warn <= slow <= halt <= 100 (percent)")
        if self.quest_cap <= 0 or self.quest_ceiling < self.quest_cap:
            raise ValueError("the quest cap must be positive and at most the quest ceiling")

    def quest_cap_for(self, requested: int | None) -> int:
        """A quest's own cap: its ``max_usd`` may lower the default or raise it up to the
        ceiling, never past it."""
        if requested is None:
            return self.quest_cap
        return min(requested, self.quest_ceiling)

    def tier_of(self, spent: int, cap: int) -> Tier:
        if cap <= 0:
            return Tier.ok
        for tier, pct in (
            (Tier.halt, self.halt_pct),
            (Tier.slow, self.slow_pct),
            (Tier.warn, self.warn_pct),
        ):
            if spent * 100 >= cap * pct:
                return tier
        return Tier.ok

    def slow_delay_ms(self, spent: int, cap: int, *, shortest_ms: int, longest_ms: int) -> int:
        """How long to hold the next step back: nothing below the slow tier, then growing
        with the square of how far spend has gone from the slow to the halt threshold."""
        if cap <= 0 or spent * 100 < cap * self.slow_pct:
            return 0
        span = max(1, cap * (self.halt_pct - self.slow_pct))
        frac = min(1.0, (spent * 100 - cap * self.slow_pct) / span)
        return int(shortest_ms + (longest_ms - shortest_ms) * frac * frac)
