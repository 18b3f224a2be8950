"""The guard's Lua scripts, registered on a client (EVALSHA, reloaded if Redis forgot them)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import redis


def load_script(client: redis.Redis, name: str) -> Any:
    source = resources.files("guard").joinpath(f"lua/{name}.lua").read_text(encoding="utf-8")
    return client.register_script(source)
