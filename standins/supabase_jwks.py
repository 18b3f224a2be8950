"""A loopback stand-in for a Supabase project's signing keys endpoint,
``GET /auth/v1/.well-known/jwks.json``: it publishes the JWKS it is given.

For tests it counts the requests it gets and can misbehave as Supabase might (answer 503,
garbage, an empty set, slowly, or hang up); ``system2 token jwks`` serves a dev key with it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

JWKS_PATH = "/auth/v1/.well-known/jwks.json"
SLOW_S = 4.0  # how long a "slow" answer takes: past any sensible fetch timeout

Mode = Literal["ok", "error", "garbage", "slow", "hangup", "empty"]


@dataclass
class JwksStandin:
    """What the stand-in publishes (``keys``: JWKs) and how it behaves (``mode``);
    ``requests`` counts every GET."""

    host: str = "127.0.0.1"
    port: int = 0
    keys: list[dict[str, Any]] = field(default_factory=list)
    mode: Mode = "ok"
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{JWKS_PATH}"

    def count(self) -> int:
        with self.lock:
            return self.requests


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        state = self.server.state
        with state.lock:
            state.requests += 1
        if self.path != JWKS_PATH:
            self._answer(404, b'{"message":"not found"}')
        elif state.mode == "error":
            self._answer(503, b'{"message":"upstream unavailable"}')
        elif state.mode == "garbage":
            self._answer(200, b"<html>checking your browser</html>")
        elif state.mode == "empty":
            self._answer(200, b'{"keys":[]}')
        elif state.mode == "hangup":
            self.close_connection = True
            self.connection.close()
        else:
            if state.mode == "slow":
                time.sleep(SLOW_S)
            self._answer(200, json.dumps({"keys": state.keys}).encode())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: JwksStandin


def _server(state: JwksStandin) -> _Server:
    server = _Server((state.host, state.port), _Handler)
    state.port = server.server_address[1]
    server.state = state
    return server


@contextmanager
def serving(state: JwksStandin) -> Iterator[JwksStandin]:
    """The stand-in on ``state``'s address (port 0: a free one), in a thread of this
    process, until the block ends."""
    server = _server(state)
    thread = threading.Thread(target=server.serve_forever, name="jwks-standin", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def serve(state: JwksStandin, ready: Callable[[JwksStandin], None] | None = None) -> None:
    """The stand-in in the foreground, until interrupted; ``ready`` is told once it listens."""
    server = _server(state)
    if ready is not None:
        ready(state)
    try:
        server.serve_forever()
    finally:
        server.server_close()
