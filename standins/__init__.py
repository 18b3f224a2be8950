"""Stand-ins for the internet services we call: loopback HTTP servers that speak the real
wire protocol, driven by the real clients — the offline Claude (``offline_claude``, the
Messages API with scripted replies) and the demo integration provider (``demo_provider``,
OAuth 2.0 and a task API).

Used by the tests, the demo (``system2 demo``, ``system2 offline-claude``, ``system2
demo-provider``) and the benchmarks. They import no first-party package; only ``system2``
(and tests and benchmarks) may import them — never ``ingress``, ``workers``, ``runtime`` or
the leaves (``make lint`` checks).
"""
