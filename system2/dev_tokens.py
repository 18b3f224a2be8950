"""Access tokens shaped like Supabase Auth's: for the demo, smoke tests and local work."""

from __future__ import annotations

import time

import jwt


def mint(secret: str, user_id: str, *, ttl_s: int = 900, audience: str = "authenticated") -> str:
    now = int(time.time())
    claims = {
        "sub": user_id,
        "aud": audience,
        "role": "authenticated",
        "iat": now,
        "exp": now + ttl_s,
    }
    return jwt.encode(claims, secret, algorithm="HS256")
