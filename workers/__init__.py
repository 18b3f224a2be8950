"""The worker process: a consumer of the quest, control, maintenance and audit queues on one
event loop, and the actors it runs: a quest's steps (Claude calls and tool calls under the
guard's budgets), cancels, the audit log writer, vault rewraps; dead letters, the sweeper
and the process's own metrics beside them.

Beside ``ingress`` (never importing it), on ``runtime`` and the leaves; ``workers.app``
builds the process from explicit settings (``make lint`` checks the direction).
"""
