"""One redaction function for log lines and error reports (``redact``).

The structlog processor chain (``runtime.logs``) and Sentry's ``before_send`` and
``before_breadcrumb`` hooks (``runtime.sentry``) both call ``redact``, so a secret is caught
the same way wherever it would leave the process. It works on a copy, recursively through
mappings, lists, tuples and sets, and catches a secret two ways.

**By key.** A value whose key is one of these is replaced by ``[redacted]`` (``None``,
``""`` and booleans are kept: ``has_refresh_token: true`` says nothing). Keys are compared
after lower-casing and dropping ``-``, ``_``, ``.`` and spaces, so ``X-Api-Key``,
``x_api_key`` and ``XApiKey`` are one key. A key is secret when it *is* one of
``SECRET_KEYS`` or *ends with* one of ``SECRET_SUFFIXES``:

- passwords: ``password``, ``passwd``, ``pwd``, ``passphrase`` (``db_password``, ...);
- tokens of every kind: ``token``, ``access_token``, ``refresh_token``, ``id_token``,
  ``auth_token``, ``session_token``, ``csrf_token``, ``bearer_token`` (anything ending in
  ``token``; ``input_tokens`` and ``max_tokens`` end in ``tokens`` and are kept);
- secrets and keys: ``secret``, ``client_secret``, ``jwt_secret``, ``api_key``,
  ``x-api-key``, ``private_key``, ``secret_key``, ``access_key``, ``signing_key``,
  ``encryption_key``, ``master_key``, ``key``;
- HTTP: ``Authorization``, ``Proxy-Authorization``, ``Cookie``, ``Set-Cookie``,
  ``cookies``, ``auth``, ``session_id``;
- the vault: ``S2_VAULT_KEYS`` / ``vault_keys`` / ``vault_key``, ``ciphertext``,
  ``credential(s)``;
- DSNs: ``dsn``, ``SENTRY_DSN``, ``database_dsn``.

A two-item list or tuple whose first item is such a key (``("Authorization", "Bearer
…")``, ASGI's ``[b"cookie", b"…"]``) has its second item replaced.

**By value shape**, in every string (exception messages, log messages, URLs, headers,
breadcrumbs, ``repr`` of unknown objects):

- ``Bearer <token>`` / ``Basic <credentials>`` (the scheme is kept);
- JWTs (``eyJ….….…``);
- known token prefixes: ``sk-ant-``, ``sk_live_`` / ``sk_test_`` / ``rk_live_``,
  ``demo_at_``, ``demo_rt_``, ``ghp_`` / ``gho_`` / ``ghu_`` / ``ghs_`` / ``ghr_``,
  ``github_pat_``, ``xoxa-`` / ``xoxb-`` / ``xoxp-`` / ``xoxr-`` / ``xoxs-``, Slack's
  rotating ``xoxe.xoxb-`` and ``xoxe-`` refresh tokens, ``ya29.``,
  ``glpat-``, AWS access key ids (``AKIA…``), webhook signing secrets (``whsec_``);
- the user-info of any URL (``postgresql://app:pw@db`` → ``postgresql://[redacted]@db``,
  which also covers Sentry DSNs);
- ``name=value`` and ``"name": "value"`` pairs whose name is a secret key as above
  (query strings, form bodies, JSON or ``repr`` text inside a message), and the rest of a
  ``Cookie:`` / ``Set-Cookie:`` line;
- vault key entries ``<kid>=<base64 of 32 bytes>`` (the key id is kept);
- high-entropy tokens: a run of 40 or more base64/base64url characters mixing upper case,
  lower case and digits — 32-byte keys (43-44 characters), base64 ciphertexts, long API keys
  without a known prefix;
- the vault's ciphertexts: ``bytes`` / ``bytearray`` / ``memoryview`` values starting with
  the format byte ``0x01`` become ``vault.describe(...)`` (``s2v1:<kid>:<n> bytes``), and
  their ``repr`` text (``b'\\x01\\x11k2026…'``) inside a string is replaced the same way.
  Other binary values that are not UTF-8 become ``<n bytes>``; UTF-8 ones are scanned as
  text.

What it cannot know: a secret with no telling key, no known shape and low entropy (a short
password written into free text, a hex-encoded key). Such values must not be put in log
fields or exception messages in the first place; ``vault.Secret`` exists for that.
"""

from __future__ import annotations

import ast
import datetime as _dt
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from vault.cipher import VERSION_BYTE, describe

REDACTED = "[redacted]"
MAX_DEPTH = 32

SECRET_KEYS = frozenset(
    {
        "pwd",
        "key",
        "auth",
        "sessionid",
        "sessid",
        "credential",
        "credentials",
    }
)
SECRET_SUFFIXES = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "secretkey",
    "accesskey",
    "signingkey",
    "encryptionkey",
    "masterkey",
    "vaultkey",
    "vaultkeys",
    "authorization",
    "cookie",
    "cookies",
    "ciphertext",
    "credential",
    "credentials",
    "dsn",
)

_KEEP_TYPES = (int, float, type(None), UUID, _dt.date, _dt.time, _dt.timedelta, Decimal, Enum)
_NORM = str.maketrans("", "", "-_. ")

# Characters of base64 and base64url; a run of them bounded by anything else.
_B64 = r"A-Za-z0-9+/_\-"
_TELLING_NAME = (  # names whose value is a secret
    r"(?:[A-Za-z0-9_.\-]*?(?:password|passwd|passphrase|secret|token|api[_-]?key|"
    r"private[_-]?key|secret[_-]?key|access[_-]?key|signing[_-]?key|vault[_-]?keys?|dsn|"
    r"credentials?|authorization)|pwd|auth)"
)


def _looks_random(text: str) -> bool:
    """A credential, not a word: it has a digit, a symbol, or upper case after its start."""
    return (
        any(c.isdigit() for c in text)
        or any(c in "._~+/=-" for c in text)
        or any(c.isupper() for c in text[1:])
    )


def _mixed(text: str) -> bool:
    return (
        any(c.isupper() for c in text)
        and any(c.islower() for c in text)
        and any(c.isdigit() for c in text)
    )


def _ciphertext_repr(m: re.Match[str]) -> str:
    try:
        value = ast.literal_eval(m.group(0))
    except (ValueError, SyntaxError):
        return "[redacted vault ciphertext]"
    return describe(value) if isinstance(value, bytes) else "[redacted vault ciphertext]"


def _scheme(m: re.Match[str]) -> str:
    return f"{m.group(1)}{m.group(2)}{REDACTED}" if _looks_random(m.group(3)) else m.group(0)


def _entropy(m: re.Match[str]) -> str:
    return REDACTED if _mixed(m.group(0)) else m.group(0)


_PATTERNS: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    # The repr of a vault ciphertext: b'\x01' + kid length (a control byte, \t \n \r, or a
    # space for 32) + kid + the rest, up to the closing quote (or the end, if cut short).
    (
        re.compile(
            r"b'\\x01(?:\\x[01][0-9a-f]|\\[tnr]| )[A-Za-z0-9_-]{1,32}(?:\\.|[^'\\])*'?"
            r'|b"\\x01(?:\\x[01][0-9a-f]|\\[tnr]| )[A-Za-z0-9_-]{1,32}(?:\\.|[^"\\])*"?'
        ),
        _ciphertext_repr,
    ),
    # The same text once more escaped (a repr inside JSON or inside another repr).
    (
        re.compile(r"b['\"]\\\\x01(?:\\\\x[01][0-9a-f]|\\\\[tnr]| )[A-Za-z0-9_-]{1,32}[^'\"]*"),
        "[redacted vault ciphertext]",
    ),
    # User-info of a URL: scheme://user:password@host, scheme://key@host (DSNs).
    (
        re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@:'\"<>]*(?::[^/\s@'\"<>]*)?@"),
        r"\1[redacted]@",
    ),
    # The rest of a Cookie / Set-Cookie header line.
    (
        re.compile(
            r"(?i)\b((?:set-)?cookie)(['\"]?\s*[:=]\s*)"
            r"(\"[^\"]*\"|'[^']*'|[^\s'\"][^\r\n'\"]*)"
        ),
        r"\1\2[redacted]",
    ),
    # name=value / "name": "value" / name: value, the name telling a secret.
    (
        re.compile(
            rf"(?i)(?<![A-Za-z0-9])({_TELLING_NAME})(['\"]?\s*[:=]\s*)(?!\[redacted)"
            r"((?:bearer|basic|token|digest)\s+[^\s'\",;&)}\]]+|\"[^\"]*\"|'[^']*'|[^\s'\",;&)}\]]+)"
        ),
        r"\1\2[redacted]",
    ),
    (re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=\-]{8,})"), _scheme),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*"), REDACTED),
    (
        re.compile(
            r"\b(?:sk-ant-[A-Za-z0-9_\-]{8,}|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{8,}"
            r"|gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{16,}"
            r"|xox[abeprs][.-][A-Za-z0-9.\-]{8,}|ya29\.[A-Za-z0-9._\-]{8,}"
            r"|demo_(?:at|rt)_[A-Za-z0-9_\-]{8,}|glpat-[A-Za-z0-9_\-]{16,}|AKIA[0-9A-Z]{16}"
            r"|whsec_[A-Za-z0-9+/]{16,}={0,2})"
        ),
        REDACTED,
    ),
    # A vault key entry: <kid>=<base64 of 32 bytes>; the key id is not secret.
    (
        re.compile(
            rf"(?<![{_B64}])([A-Za-z0-9_\-]{{1,32}})=([A-Za-z0-9+/_\-]{{43}}=?)(?![{_B64}=])"
        ),
        r"\1=[redacted]",
    ),
    (re.compile(rf"(?<![{_B64}=])[{_B64}]{{40,}}={{0,2}}(?![{_B64}=])"), _entropy),
]


def _norm(key: str | bytes) -> str:
    if isinstance(key, bytes):
        key = key.decode("latin-1")
    return key.lower().translate(_NORM)


def is_secret_key(key: object) -> bool:
    """Whether a mapping key (or header name) names a secret; see the module docstring."""
    if not isinstance(key, str | bytes):
        return False
    name = _norm(key)
    return name in SECRET_KEYS or name.endswith(SECRET_SUFFIXES)


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def redact_text(text: str) -> str:
    """``text`` with every secret-shaped part replaced."""
    if _UUID.fullmatch(text):  # the ids on every log line: no pattern can match one
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_bytes(data: bytes | bytearray | memoryview) -> object:
    """A vault ciphertext described; other binary summarised; UTF-8 text scanned."""
    raw = bytes(data)
    if raw[:1] == bytes((VERSION_BYTE,)):
        return describe(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(raw)} bytes>"
    cleaned = redact_text(text)
    return data if cleaned == text else cleaned


def redact_object(value: object) -> str:
    """An object of unknown type, as the redacted text of its ``repr``."""
    try:
        text = repr(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"
    return redact_text(text)


def _keep(value: object) -> bool:
    return value is None or isinstance(value, bool) or (isinstance(value, str) and not value)


def redact(value: Any, *, opaque: Callable[[object], object] | None = None, _depth: int = 0) -> Any:
    """A copy of ``value`` with secrets replaced; see the module docstring for what counts.

    ``opaque`` decides what an object of a type this function does not know becomes
    (default: the redacted text of its ``repr``, so nothing renders it unredacted later).
    """
    if isinstance(value, str):
        cleaned = redact_text(value)
        return value if cleaned == value else cleaned
    if isinstance(value, _KEEP_TYPES):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return redact_bytes(value)
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        return REDACTED if _depth >= MAX_DEPTH else _container(value, opaque, _depth + 1)
    return opaque(value) if opaque is not None else redact_object(value)


def _container(value: Any, opaque: Callable[[object], object] | None, depth: int) -> Any:
    if isinstance(value, Mapping):
        return {
            (redact_text(k) if isinstance(k, str) else k): (v if _keep(v) else REDACTED)
            if is_secret_key(k)
            else redact(v, opaque=opaque, _depth=depth)
            for k, v in value.items()
        }
    items = [redact(v, opaque=opaque, _depth=depth) for v in value]
    pair = isinstance(value, list | tuple) and len(items) == 2 and is_secret_key(value[0])
    if pair and not _keep(value[1]):
        items[1] = REDACTED  # ("Authorization", "Bearer …") header pairs
    if type(value) is tuple:
        return tuple(items)
    return items  # lists; sets and named tuples come back as lists
