"""The Dramatiq actors that run quests: a quest's steps (Claude calls and tool calls under
the guard's budgets), cancels, the audit log writer, vault rewraps, dead letters, the
sweeper and the process's own metrics.

Beside ``ingress`` (never importing it), on ``runtime`` and the leaves; ``workers.app``
builds the broker and actors from explicit settings (``make lint`` checks the direction).
"""
