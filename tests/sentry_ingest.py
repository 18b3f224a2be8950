"""A loopback stand-in for Sentry's ingest endpoint, for tests of what reaches Sentry.

It speaks the envelope protocol the real SDK uses: ``POST /api/<project>/envelope/`` with a
body that may be gzip-, deflate- or brotli-compressed (``Content-Encoding``), holding one
header line and items, each an item-header line and a payload (``length`` bytes, or up to
the next newline). It stores every envelope body, decompressed, exactly as received, so a
test can search the raw bytes; ``events()`` parses the error events out of them.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PATH = re.compile(r"^/api/(\d+)/envelope/?$")


def decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli  # type: ignore[import-not-found]  # only if the SDK chose brotli

        return bytes(brotli.decompress(body))
    raise ValueError(f"unknown Content-Encoding {encoding!r}")


def parse_envelope(raw: bytes) -> tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]:
    """The envelope header and its (item header, payload) pairs."""
    head, _, rest = raw.partition(b"\n")
    items = []
    while rest.strip():
        line, _, rest = rest.partition(b"\n")
        if not line.strip():
            continue
        header = json.loads(line)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"] :]
            rest = rest.removeprefix(b"\n")
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((header, payload))
    return json.loads(head), items


class SentryIngest:
    def __init__(self) -> None:
        self.envelopes: list[bytes] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if not _PATH.match(self.path.split("?", 1)[0]):
                    self.send_error(404)
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                raw = decompress(body, self.headers.get("Content-Encoding", ""))
                with ingest._lock:
                    ingest.envelopes.append(raw)
                    ingest.requests.append((self.path, dict(self.headers.items())))
                answer = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> SentryIngest:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def dsn(self, project: int = 1) -> str:
        return f"http://publickey0123@127.0.0.1:{self.port}/{project}"

    def raw(self) -> bytes:
        with self._lock:
            return b"\n".join(self.envelopes)

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            envelopes = list(self.envelopes)
        found = []
        for raw in envelopes:
            _, items = parse_envelope(raw)
            found += [json.loads(p) for h, p in items if h.get("type") == "event"]
        return found

    def wait_for_event(
        self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = 30.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if predicate(event):
                    return event
            time.sleep(0.1)
        raise AssertionError(f"no matching event within {timeout}s; got {self.events()!r:.3000}")


def exception_types(event: dict[str, Any]) -> list[str]:
    return [v.get("type", "") for v in event.get("exception", {}).get("values", [])]


def frames(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        f
        for v in event.get("exception", {}).get("values", [])
        for f in (v.get("stacktrace") or {}).get("frames", [])
    ]
