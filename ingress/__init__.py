"""The HTTP ingress: verifies the caller's token, creates quests under the company's
limits and publishes their first step, cancels, connects integrations, and serves live
quest events and metrics.

Beside ``workers`` (never importing it: it speaks to them only through ``messages`` on
Redis and rows in ``store``), on ``runtime`` and the leaves (``make lint`` checks).
"""
