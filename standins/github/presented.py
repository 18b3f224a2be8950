"""What a request presents to the API: its token and its ``X-GitHub-Api-Version``.

GitHub takes the token as ``Authorization: Bearer …`` or ``Authorization: token …``. The
version is compared leniently (case and spaces ignored, as GitHub does); absent, it is the
default, 2022-11-28. Neither the token nor any digest of it leaves this module's callers.
"""

from __future__ import annotations

from starlette.types import Scope

from standins.github.errors import ApiError

DEFAULT_VERSION = "2022-11-28"
VERSIONS = ("2026-03-10", "2022-11-28")  # newest first, as GitHub lists them
_SCHEMES = ("bearer", "token")


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def token_of(scope: Scope) -> str | None:
    """The token of ``Authorization: Bearer|token …``; ``None`` when there is none."""
    scheme, _, token = (header(scope, b"authorization") or "").strip().partition(" ")
    if scheme.lower() not in _SCHEMES:
        return None
    return token.strip() or None


def api_version(scope: Scope) -> str:
    """The selected version, or a 400 naming the supported ones, worded as GitHub words it."""
    raw = header(scope, b"x-github-api-version")
    requested = "".join((raw or "").split()).lower()
    if not requested:
        return DEFAULT_VERSION
    if requested in VERSIONS:
        return requested
    newest, *others = VERSIONS
    supported = f'"{newest}" (most recent) and ' + ", ".join(f'"{v}"' for v in others)
    text = (
        f'The version you specified in the "X-GitHub-API-Version" request header, "{raw}", '
        f"is not a supported version. The following versions are currently supported: "
        f"{supported}."
    )
    raise ApiError(400, "Bad Request", errors=text)
