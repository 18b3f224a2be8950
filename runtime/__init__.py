"""What every process of ours stands on: the settings, logging, redaction, Sentry set-up,
wiring of shared pieces and the queue statistics.

Below ``ingress`` and ``workers``, above ``integrations`` and the leaves: it imports
``integrations``, ``messages``, ``store``, ``guard``, ``vault`` and third-party code only — never ``ingress``, ``workers``,
``system2`` or ``standins`` (``make lint`` checks).
"""
