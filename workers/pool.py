"""``python -m workers.pool``: Dramatiq's command line, with our logging in its parent too.

``system2 worker`` runs this instead of ``python -m dramatiq``. Dramatiq's parent process
(which forks the worker processes, and reports one that dies) would otherwise set up the
standard library's plain-text logging; here structlog is configured first and Dramatiq is
told ``--skip-logging``, so its lines are JSON (or console) and redacted like every other
line. Each worker process configures logging again in ``workers.app.bootstrap``.
"""

from __future__ import annotations

import sys

from runtime import logs
from runtime.settings import Settings


def main(argv: list[str] | None = None) -> int:
    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    logs.configure(Settings())
    parser = make_argument_parser()  # type: ignore[no-untyped-call]
    args = parser.parse_args([*(argv or sys.argv[1:]), "--skip-logging"])
    return int(dramatiq_main(args) or 0)  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    sys.exit(main())
