"""Structured JSON logs: one JSON object per line on stderr, carrying the service and the frame id.

The frame id lives in a context variable, so every line logged inside ``with frame_context(id):``
carries it, whichever module logs, without passing it around. Context variables are per thread,
so the consume loop and each gRPC worker thread keep their own.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

_frame_id: ContextVar[str | None] = ContextVar("diffqc_frame_id", default=None)


def current_frame_id() -> str | None:
    """The frame id of the enclosing ``frame_context``, or None."""
    return _frame_id.get()


@contextmanager
def frame_context(frame_id: str | None) -> Iterator[None]:
    """Tag every log line emitted inside with ``frame_id`` (None leaves lines untagged)."""
    token = _frame_id.set(frame_id or None)
    try:
        yield
    finally:
        _frame_id.reset(token)


class _ContextFilter(logging.Filter):
    """Adds ``service`` and, inside a frame context, ``frame_id`` to each record the handler emits."""

    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        frame_id = _frame_id.get()
        if frame_id is not None and not hasattr(record, "frame_id"):  # an explicit extra= wins
            record.frame_id = frame_id
        return True


def json_formatter() -> logging.Formatter:
    # Fields not named here (service, frame_id, any extra=) are appended by the formatter.
    return JsonFormatter(
        ["levelname", "name", "message"],
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,  # ISO 8601, UTC
    )


def configure_logging(level: str | int, service: str, stream=None) -> logging.Handler:
    """Send every log record of the process as JSON to ``stream`` (stderr); return the handler.

    Replaces the root logger's handlers, so calling it again (tests, re-configuration) does not
    duplicate lines.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter())
    # On the handler rather than a logger: records propagated from any logger pass through it.
    handler.addFilter(_ContextFilter(service))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    return handler
