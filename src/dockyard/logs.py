"""Structured logs for every Dockyard process: JSON lines (one event per line) unless stderr is a
terminal, then readable key=value lines.

Everything goes through one stdlib handler whose formatter is structlog's ProcessorFormatter, so our
own events, the ASGI server's loggers (granian, uvicorn), libraries' `logging` calls, warnings and
uncaught exceptions all come out in the same format. An exception is rendered as its type, message
and frames (file, line, function) -- never with local variables, which would put credentials and
settings into the log.
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
import threading
from types import TracebackType
from typing import Any

import structlog
from structlog.tracebacks import ExceptionDictTransformer

# The ASGI servers' own loggers: their handlers are dropped so they propagate to ours.
SERVER_LOGGERS = ("_granian", "granian.access", "uvicorn", "uvicorn.error", "uvicorn.asgi")

_TIMESTAMPER = structlog.processors.TimeStamper(fmt="iso", utc=True)
_SHARED: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    _TIMESTAMPER,
]


def _level(level: str | None) -> str:
    return (level or os.environ.get("DOCKYARD_LOG_LEVEL") or "info").upper()


def formatter() -> structlog.stdlib.ProcessorFormatter:
    """The one formatter (referenced by name from `logging_config`, so server workers build it too)."""
    renderer: structlog.typing.Processor
    if sys.stderr.isatty():
        exceptions: list[structlog.typing.Processor] = []  # the console renderer formats exc_info itself
        renderer = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    else:
        exceptions = [structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))]
        renderer = structlog.processors.JSONRenderer()
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            _TIMESTAMPER,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *exceptions, renderer],
    )


def logging_config(level: str | None = None) -> dict[str, Any]:
    """A `logging.config.dictConfig` dictionary routing every logger to stderr through `formatter`.
    Also handed to granian (`log_dictconfig`) and uvicorn (`log_config`), which apply it in each worker."""
    lvl = _level(level)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": {"()": "dockyard.logs.formatter"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "structured", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": lvl},
        "loggers": {
            **{name: {"handlers": [], "propagate": True, "level": lvl} for name in SERVER_LOGGERS},
            "alembic.runtime.plugins": {"level": "WARNING"},  # a line per plugin on every start
            # No access log (as with granian): request lines with their query strings are not logged.
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }


def configure(level: str | None = None) -> None:
    """Configure logging for this process (idempotent; a later call may change the level)."""
    lvl = _level(level)
    logging.config.dictConfig(logging_config(lvl))
    logging.captureWarnings(True)
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, lvl)),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,  # a later configure() (e.g. with the settings' level) applies
    )
    sys.excepthook = _uncaught
    threading.excepthook = _uncaught_in_thread


def _uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    get_logger("dockyard").critical("uncaught exception", exc_info=(kind, exc, tb))


def _uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or isinstance(args.exc_value, SystemExit):
        return
    thread = args.thread.name if args.thread else None
    get_logger("dockyard").error(
        "uncaught exception in thread", thread=thread, exc_info=(args.exc_type, args.exc_value, args.exc_traceback)
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
