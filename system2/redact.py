"""One redaction function for logs and error reports.

By key (recursively, case- and separator-insensitive) and by value shape, so a secret is
caught whether it sits under a telling key or inside free text such as an exception message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"

# Keys whose values are secrets, compared after lower-casing and dropping '-', '_' and ' '.
SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "secret",
        "clientsecret",
        "secretkey",
        "jwtsecret",
        "token",
        "accesstoken",
        "refreshtoken",
        "idtoken",
        "authtoken",
        "bearertoken",
        "sessiontoken",
        "csrftoken",
        "xsrftoken",
        "apikey",
        "xapikey",
        "anthropicapikey",
        "authorization",
        "proxyauthorization",
        "cookie",
        "setcookie",
        "privatekey",
        "vaultkey",
        "vaultkeys",
        "encryptionkey",
        "masterkey",
        "key",
        "credential",
        "credentials",
        "ciphertext",
        "dsn",
    }
)

_VALUE_PATTERNS = [
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),  # JWT
    re.compile(r"\bs2v\d+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{16,}"),  # vault ciphertext
    re.compile(
        r"\b(sk-ant-[A-Za-z0-9_-]{8,}|sk_(live|test)_[A-Za-z0-9]{8,}|gh[pousr]_[A-Za-z0-9]{16,}"
        r"|xox[abprs]-[A-Za-z0-9-]{8,}|ya29\.[A-Za-z0-9._-]{8,}|demo_(at|rt)_[A-Za-z0-9_-]{8,})"
    ),
    re.compile(r"(?i)\b(postgres(ql)?|redis|rediss)://[^:/@\s]+:[^@\s]+@"),  # URL with password
]


def _norm(key: str) -> str:
    return key.lower().replace("-", "").replace("_", "").replace(" ", "")


def is_secret_key(key: object) -> bool:
    return isinstance(key, str) and _norm(key) in SECRET_KEYS


def redact_text(text: str) -> str:
    for pattern in _VALUE_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def redact(value: Any, *, _depth: int = 0) -> Any:
    """A copy of ``value`` with secrets replaced. Containers are walked, strings scanned."""
    if _depth > 20:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: REDACTED
            if is_secret_key(k) and v not in (None, "")
            else redact(v, _depth=_depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        items = [redact(v, _depth=_depth + 1) for v in value]
        # [("Authorization", "Bearer x")] header pairs
        if len(items) == 2 and is_secret_key(items[0]):
            items[1] = REDACTED
        return type(value)(items) if isinstance(value, tuple) else items
    return value
