"""The guard: what Claude calls cost, per-quest caps and per-company budgets with the three
tiers (warn, slow, halt), and per-company rate and concurrency limits — shared by every
worker through Redis, rebuilt from Postgres when Redis loses them.

A leaf of the house: it imports only third-party code, never another package of ours
(``make lint`` checks).
"""

from guard.admission import Admission, Admissions
from guard.errors import GuardError, GuardUnavailable, UnpricedModel
from guard.policy import Limits, Tier
from guard.pricing import CostParts, ModelFacts, PriceTable, Usage
from guard.spend import Guard, Refused, Reserved, Scope, ScopeLevel

__all__ = [
    "Admission",
    "Admissions",
    "CostParts",
    "Guard",
    "GuardError",
    "GuardUnavailable",
    "Limits",
    "ModelFacts",
    "PriceTable",
    "Refused",
    "Reserved",
    "Scope",
    "ScopeLevel",
    "Tier",
    "UnpricedModel",
    "Usage",
]
