"""Per-company overrides of the guard's limits and of the company's weight in fair dispatch
(the defaults come from settings)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from store.db import TenantTx


@dataclass(frozen=True)
class LimitOverrides:
    quest_cap_micros: int | None = None
    quest_ceiling_micros: int | None = None
    daily_budget_micros: int | None = None
    monthly_budget_micros: int | None = None
    warn_pct: int | None = None
    slow_pct: int | None = None
    halt_pct: int | None = None
    quests_per_minute: int | None = None
    max_running_quests: int | None = None
    # Not a limit of the guard's: the company's share of the worker fleet relative to others
    # with quest steps waiting (workers/fair_queue.py), 1..1000; None: S2_FAIR_DEFAULT_WEIGHT.
    fair_weight: int | None = None

    def changes(self) -> dict[str, int]:
        """The guard's limits that are set, named as ``guard.Limits`` names them (the weight,
        which is no budget limit, is left out)."""
        return {
            k.removesuffix("_micros"): v
            for k, v in asdict(self).items()
            if v is not None and k not in NOT_GUARD_LIMITS
        }

    def weight(self, default: int) -> int:
        """The company's weight in fair dispatch: its own, or ``default``."""
        return self.fair_weight if self.fair_weight is not None else default


NOT_GUARD_LIMITS = frozenset({"fair_weight"})


_COLUMNS = ", ".join(f.name for f in fields(LimitOverrides))


async def get(tx: TenantTx) -> LimitOverrides:
    found = await tx.first(
        LimitOverrides,
        f"SELECT {_COLUMNS} FROM company_limits WHERE company_id = %s",
        (tx.company_id,),
    )
    return found if found is not None else LimitOverrides()


async def put(tx: TenantTx, overrides: LimitOverrides) -> None:
    """Set the given (non-None) overrides, keeping the others."""
    values = {k: v for k, v in asdict(overrides).items() if v is not None}
    if not values:
        return
    cols = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in values)
    await tx.execute(
        f"INSERT INTO company_limits (company_id, {cols}) VALUES (%s, {marks}) "
        f"ON CONFLICT (company_id) DO UPDATE SET {updates}, updated_at = now()",
        (tx.company_id, *values.values()),
    )
