"""structlog, configured once: JSON lines when stdout is not a TTY, console otherwise.

Every lifecycle transition is one event with a stable dotted name (see docs/events.md).
Whatever logs through the standard library (uvicorn, asyncio, Alembic, SQLAlchemy, Litestar,
httpx, aiodocker …) is rendered by the same processors: structlog's events are handed to
``logging``, and one handler on the root logger formats every record with structlog's
``ProcessorFormatter`` and writes it to stdout. So in JSON mode each line on stdout is one JSON
object with ``event``, ``level``, ``timestamp`` and ``logger``; a traceback is the string field
``exception`` of its event, never lines of its own; and nothing is written to stderr.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any

import structlog
from structlog.stdlib import ProcessorFormatter
from structlog.typing import Processor

_SECRET_KEYS = ("token", "authorization", "password", "secret", "credential")
_configured = False
_TOKEN_IN_TEXT = re.compile(r"((?:token|access_token)=|Bearer\s+)[^\s&\"']+", re.IGNORECASE)
# Libraries are quiet: warnings and errors only. At level debug uvicorn and Alembic say more
# (server start, connections, WebSocket handshakes with their URLs scrubbed like everything
# else; each migration applied).
_LIBRARY_LEVEL = logging.WARNING
_INFO_AT_DEBUG = ("uvicorn", "uvicorn.error", "uvicorn.asgi", "alembic")

log = structlog.get_logger(__name__)


def _redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Defence in depth: a field whose name looks secret never reaches the output."""
    for key in list(event_dict):
        lowered = key.lower()
        if any(part in lowered for part in _SECRET_KEYS) and not lowered.endswith(("_file", "_path")):
            event_dict[key] = "[redacted]"
    return event_dict


def _scrub_text(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A token written into text (a URL's ``?token=``, a ``Bearer`` header, a traceback that
    quotes either) is replaced, whichever logger wrote it."""
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = _TOKEN_IN_TEXT.sub(r"\1[redacted]", value)
    return event_dict


def configure_logging(
    log_format: str = "json", level: str = "info", *, force: bool = False, capture_uncaught: bool = False
) -> None:
    """Configure structlog and the standard library's root logger once per process.

    ``capture_uncaught`` (the ``agentdock`` command sets it) also turns Python's own writes to
    stderr into events: warnings, an exception that ends the process or a thread, and an
    exception Python ignores (``Exception ignored in …``). Tests in one process leave it off, so
    that pytest keeps its own hooks.
    """
    global _configured  # noqa: PLW0603 - process-wide logging setup happens once
    if _configured and not force:
        return
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    # Run for structlog's own events and, as the foreign pre-chain, for every stdlib record.
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                ProcessorFormatter.remove_processors_meta,
                _redact_secrets,
                # In both modes: a plain traceback as a field, scrubbed below (a pretty
                # console traceback would show local variables, secrets among them).
                structlog.processors.format_exc_info,
                _scrub_text,
                renderer,
            ],
        )
    )
    handler.addFilter(_ScrubTokens())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(max(numeric_level, _LIBRARY_LEVEL))
    # structlog's events reach `logging` under their module's name; the filtering bound
    # logger has already applied the level, so this one lets them through.
    logging.getLogger("service").setLevel(numeric_level)
    talkative = logging.INFO if numeric_level <= logging.DEBUG else _LIBRARY_LEVEL
    for name in _INFO_AT_DEBUG:
        logging.getLogger(name).setLevel(talkative)
    logging.getLogger("httpx").setLevel(_LIBRARY_LEVEL)
    if capture_uncaught:
        _capture_uncaught()
    _configured = True


class _ScrubTokens(logging.Filter):
    """Scrub a stdlib record's message before it is formatted (uvicorn would log a WebSocket's
    URL with its ``?token=``). structlog's events carry a dict: ``_scrub_text`` handles them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, dict):
            return True
        message = record.getMessage()
        scrubbed = _TOKEN_IN_TEXT.sub(r"\1[redacted]", message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


def _capture_uncaught() -> None:
    logging.captureWarnings(True)  # the `py.warnings` logger
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_thread_exception
    sys.unraisablehook = _log_unraisable


def _log_uncaught(exc_type: type[BaseException], exc_value: BaseException, traceback: TracebackType | None) -> None:
    if issubclass(exc_type, KeyboardInterrupt):  # Ctrl-C at a terminal: Python's own message
        sys.__excepthook__(exc_type, exc_value, traceback)
        return
    log.critical(
        "service.crashed",
        error=f"{exc_type.__name__}: {exc_value}",
        exc_info=(exc_type, exc_value, traceback),
    )


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:  # what threading's own hook ignores too
        return
    log.error(
        "service.thread_crashed",
        thread=args.thread.name if args.thread is not None else None,
        error=f"{args.exc_type.__name__}: {args.exc_value}",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback) if args.exc_value is not None else None,
    )


def _log_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    try:
        where = repr(unraisable.object)
    except Exception:  # an object half torn down may fail even to repr
        where = object.__repr__(unraisable.object)
    exc_value = unraisable.exc_value
    log.warning(
        "service.exception_ignored",
        message=unraisable.err_msg or "Exception ignored in",
        object=where,
        error=f"{unraisable.exc_type.__name__}: {exc_value}",
        exc_info=(unraisable.exc_type, exc_value, unraisable.exc_traceback) if exc_value is not None else None,
    )


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
