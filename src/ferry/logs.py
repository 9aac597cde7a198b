"""Logging set-up: JSON lines for log collectors, or readable lines on a terminal.

Every line carries the request id of the request it was written for, if any (a
ContextVar set by ``ferry.http.access``). Ferry never logs request bodies, answers or
keys: what goes into a line is chosen where it is written, never dumped from a request."""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

from ferry.settings import Settings

REQUEST_ID: ContextVar[str | None] = ContextVar("ferry_request_id", default=None)

# Fields a line may carry beyond the message, in this order on a terminal.
CONTEXT_FIELDS = ("request_id", "method", "path", "status", "duration_ms", "model", "version", "client")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            request_id = REQUEST_ID.get()
            if request_id is not None:
                record.request_id = request_id
        return True


class ConsoleFormatter(logging.Formatter):
    """``2026-11-21 22:27:21 INFO ferry.access: request status=200 ... request_id=...``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = [
            f"{name}={one_line(value)}" for name in CONTEXT_FIELDS if (value := getattr(record, name, None)) is not None
        ]
        return f"{text} {' '.join(extra)}" if extra else text


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(value: object) -> str:
    """Control characters escaped (\\x0a): a client-chosen value (a decoded path may hold
    %0A or %00) can neither start a forged log line nor upset a database column."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def json_formatter() -> logging.Formatter:
    """``{"timestamp": ..., "level": ..., "logger": ..., "event": ..., "request_id": ...}``"""
    return OrjsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger", "message": "event"},
        # uvicorn adds a copy of its message with terminal colour codes: noise in JSON.
        reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        timestamp=True,
    )


def configure(settings: Settings, stream: Any = None) -> None:
    """Route every logger (uvicorn's too) to one handler on the root logger."""
    stream = stream or sys.stderr
    use_json = settings.log_format == "json" or (settings.log_format == "auto" and not _is_terminal(stream))
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter() if use_json else ConsoleFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # Alembic announces every migration step at INFO: detail for debugging, not operations.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
