"""A webhook endpoint on loopback, as a company would run one: it records every request and
verifies each signature with the Standard Webhooks reference library (``standardwebhooks``,
the spec's own Python implementation), and answers as its script says."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int | str  # a status, or "timeout" (the receiver kept it waiting)
    verified: Any = None  # the body as the reference verify returned it, or None
    refused: str | None = None  # why the reference verify refused it

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    host: str
    secret: str | None = None
    script: list[int | str] = field(default_factory=list)  # answers in turn, then `then`
    then: int = 200
    hold_s: float = 5.0  # how long a "timeout" answer keeps the request waiting
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, headers: dict[str, str], body: bytes) -> int | str:
        with self.lock:
            planned = self.script.pop(0) if self.script else self.then
            got = Received(headers, body, planned)
            if self.secret is not None:
                try:
                    got.verified = Webhook(self.secret).verify(body, headers)
                except WebhookVerificationError as exc:
                    got.refused = str(exc)
            self.received.append(got)
        return planned

    def delivered(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.answered == 200]

    def all(self) -> list[Received]:
        with self.lock:
            return list(self.received)


@contextmanager
def webhook_receiver(host: str = "localhost") -> Iterator[Receiver]:
    """A receiver on 127.0.0.1, reached as ``http://{host}:PORT/hook``."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            planned = receiver.answer(headers, body)
            if planned == "timeout":
                time.sleep(receiver.hold_s)
                planned = 200  # too late: the sender has given this attempt up
            self.send_response(int(planned))
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    receiver = Receiver(url=f"http://{host}:{port}/hook", host=f"{host}:{port}")
    thread = threading.Thread(target=server.serve_forever, name="webhook receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
