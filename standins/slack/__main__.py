"""``python -m standins.slack --port P``: the Slack stand-in on loopback until interrupted.

The app's client id and secret come from ``--client-id`` / ``--client-secret``, else the
public dev app's defaults, which System2's dev settings name.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from standins.slack.server import ACCESS_TTL_S, CLIENT_ID, CLIENT_SECRET, serve


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m standins.slack", description="A loopback stand-in for Slack."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", default=CLIENT_ID)
    parser.add_argument("--client-secret", default=CLIENT_SECRET)
    parser.add_argument(
        "--access-ttl",
        type=float,
        default=ACCESS_TTL_S,
        help="seconds a rotating bot token lives (default: 43200, Slack's 12 hours)",
    )
    parser.add_argument(
        "--no-rotation",
        action="store_true",
        help="issue xoxb- tokens that never expire, and no refresh tokens",
    )
    args = parser.parse_args(argv)
    if args.access_ttl <= 0:
        parser.error("--access-ttl must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    serve(
        args.host,
        args.port,
        client_id=args.client_id,
        client_secret=args.client_secret,
        access_ttl_s=args.access_ttl,
        rotation=not args.no_rotation,
    )


if __name__ == "__main__":
    main()
