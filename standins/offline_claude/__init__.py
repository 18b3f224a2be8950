"""The offline Claude: a loopback stand-in for Anthropic's Messages API, driven by scripts.

The demo and the test-suite point the real ``anthropic`` SDK at it
(``anthropic.Anthropic(base_url="http://127.0.0.1:PORT", api_key="...")``) and pick a
script per quest with a ``[script:NAME]`` marker in the first user message.
"""

from standins.offline_claude.prompt_cache import approx_tokens
from standins.offline_claude.scripts import (
    BUILTIN_SCRIPTS,
    DONE,
    Failure,
    Script,
    Text,
    ToolUse,
    Turn,
)
from standins.offline_claude.server import MARKER, create_app, serve

__all__ = [
    "BUILTIN_SCRIPTS",
    "DONE",
    "MARKER",
    "Failure",
    "Script",
    "Text",
    "ToolUse",
    "Turn",
    "approx_tokens",
    "create_app",
    "serve",
]
