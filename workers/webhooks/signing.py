"""Standard Webhooks signatures (https://www.standardwebhooks.com): ``v1,`` and the base64
of HMAC-SHA256, keyed with the secret's bytes, over ``{webhook-id}.{webhook-timestamp}.{body}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def body(event_type: str, occurred_at: datetime, data: dict[str, Any]) -> bytes:
    """The JSON body: the same bytes for every attempt of a delivery."""
    stamp = occurred_at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    document = {"type": event_type, "timestamp": stamp, "data": data}
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def headers(key: bytes, msg_id: str, timestamp: int, payload: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, msg_id, timestamp, payload),
        "content-type": "application/json",
    }
