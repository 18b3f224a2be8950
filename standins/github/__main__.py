"""``python -m standins.github --host 127.0.0.1 --port P [--client-id X --client-secret Y
--access-ttl S --refresh-ttl S --rate-limit N --search-rate-limit N]``.

The client id and secret default to the public dev app's, which System2's dev settings name.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from standins.github.server import ACCESS_TTL_S, CLIENT_ID, CLIENT_SECRET, REFRESH_TTL_S, serve


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m standins.github", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", default=CLIENT_ID)
    parser.add_argument("--client-secret", default=CLIENT_SECRET)
    parser.add_argument("--access-ttl", type=float, default=ACCESS_TTL_S, help="seconds")
    parser.add_argument("--refresh-ttl", type=float, default=REFRESH_TTL_S, help="seconds")
    parser.add_argument("--rate-limit", type=int, default=5000, help="core requests per hour")
    parser.add_argument("--search-rate-limit", type=int, default=30, help="per minute")
    args = parser.parse_args(argv)
    serve(
        args.host,
        args.port,
        client_id=args.client_id,
        client_secret=args.client_secret,
        access_ttl_s=args.access_ttl,
        refresh_ttl_s=args.refresh_ttl,
        rate_limit=args.rate_limit,
        search_rate_limit=args.search_rate_limit,
    )


if __name__ == "__main__":
    main()
