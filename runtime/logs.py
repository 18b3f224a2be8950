"""Logging: structlog everywhere, one processor chain, redaction before rendering.

JSON lines in staging and production, or whenever stderr is not a terminal (containers,
Dramatiq's worker processes, log files); readable console output in a terminal
(``S2_LOG_FORMAT`` forces either). The standard library's loggers — Dramatiq, uvicorn,
psycopg, httpx, anthropic, Python warnings — are sent through the same chain by one handler
on the root logger, so their lines are rendered alike and redacted alike.

``bind`` puts the ids of what is being processed (company, quest, message, correlation,
request) on every later log line of the thread or task, and on the Sentry scope as tags, so
an error report carries the same ids as the log lines around it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import sentry_sdk
import structlog

from runtime.redact import redact
from runtime.settings import Settings

# Keys ProcessorFormatter puts in an event dict for itself; they are not rendered.
_META = ("_record", "_from_structlog")
# Fields the chain itself adds, never from a caller: nothing to redact in them.
_OURS = ("level", "logger", "timestamp")
QUIET = ("httpx", "httpx2", "httpcore", "httpcore2", "anthropic", "uvicorn.access", "hpack")


def redact_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The structlog processor: every field through ``runtime.redact.redact``."""
    kept = {k: event[k] for k in (*_META, *_OURS) if k in event}
    cleaned: dict[str, Any] = redact({k: v for k, v in event.items() if k not in kept})
    cleaned.update(kept)
    return cleaned


def shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact_processor,  # last before rendering: tracebacks are text by now
    ]


def wants_json(settings: Settings | None) -> bool:
    chosen = settings.log_format if settings is not None else "auto"
    if chosen != "auto":
        return chosen == "json"
    if settings is not None and settings.deployed():
        return True
    return not sys.stderr.isatty()


def configure(
    settings: Settings | None = None, *, json: bool | None = None, level: str | None = None
) -> None:
    """Idempotent; call once per process at start-up (again to change format or level)."""
    if json is None:
        json = wants_json(settings)
    level = level or (settings.log_level if settings is not None else "INFO")
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared_processors(),
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for other in list(logging.root.manager.loggerDict.values()):
        if isinstance(other, logging.Logger) and other.handlers:
            other.handlers.clear()  # a library's own handler would print past the redaction
            other.propagate = True
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.captureWarnings(True)


def bind(**ids: Any) -> None:
    """Bind ids to the log lines that follow (this thread or task) and to the Sentry scope's
    tags. ``None`` values are skipped."""
    values = {k: v for k, v in ids.items() if v is not None}
    structlog.contextvars.bind_contextvars(**values)
    for key, value in values.items():
        sentry_sdk.set_tag(key, str(value))
