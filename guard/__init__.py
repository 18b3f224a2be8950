"""The guard: what Claude calls cost, and (later) budgets, tiers and limits in Redis."""
