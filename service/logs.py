"""structlog, configured once: JSON lines when stdout is not a TTY, console otherwise.

Every lifecycle transition is one event with a stable dotted name (see docs/events.md).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = ("token", "authorization", "password", "secret", "credential")
_configured = False
_TOKEN_IN_TEXT = re.compile(r"((?:token|access_token)=|Bearer\s+)[^\s&\"']+", re.IGNORECASE)


def _redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Defence in depth: a field whose name looks secret never reaches the output."""
    for key in list(event_dict):
        lowered = key.lower()
        if any(part in lowered for part in _SECRET_KEYS) and not lowered.endswith(("_file", "_path")):
            event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(log_format: str = "json", level: str = "info", *, force: bool = False) -> None:
    """Configure structlog and the standard library's root logger once per process."""
    global _configured  # noqa: PLW0603 - process-wide logging setup happens once
    if _configured and not force:
        return
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )
    # Third-party libraries log through the standard library: quiet, on stderr, and scrubbed
    # (uvicorn would log a WebSocket's URL with its ?token=).
    logging.basicConfig(level=max(numeric_level, logging.WARNING), stream=sys.stderr, force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_ScrubTokens())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    _configured = True


class _ScrubTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = _TOKEN_IN_TEXT.sub(r"\1[redacted]", message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
