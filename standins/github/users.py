"""GitHub users as the API shows them: a login and a stable numeric id.

There is no user table: anyone named at authorize time exists. The id is derived from the
login (not allocated), so the same login has the same id in every run and every process.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

WEB = "https://github.com"


def user_id(login: str) -> int:
    hashed = hashlib.sha256(login.lower().encode()).digest()
    return 1 + int.from_bytes(hashed[:4], "big") % 99_999_999


def node_id(prefix: str, number: int) -> str:
    """GraphQL-style global ids (``U_kgDO…``, ``I_kwDO…``): opaque, stable, unique per kind."""
    packed = number.to_bytes(8, "big").lstrip(b"\0") or b"\0"
    return prefix + base64.urlsafe_b64encode(packed).decode().rstrip("=")


def user_view(login: str, api: str) -> dict[str, Any]:
    """The "simple user" object embedded in issues and comments (``api`` ends without /)."""
    number = user_id(login)
    return {
        "login": login,
        "id": number,
        "node_id": node_id("U_kgDO", number),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{number}?v=4",
        "gravatar_id": "",
        "url": f"{api}/users/{login}",
        "html_url": f"{WEB}/{login}",
        "type": "User",
        "site_admin": False,
        "user_view_type": "public",
    }
