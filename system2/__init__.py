"""The top of the house: the ``system2`` console command and the operator tooling behind it
(``commands``, ``ops``: health, smoke, deploy, backups; the demo; ``quest watch``).

It may import every layer below and the stand-ins; nothing imports it but tests and
benchmarks (``make lint`` checks).
"""
