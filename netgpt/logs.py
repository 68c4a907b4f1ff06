"""structlog set-up: JSON lines for daemons, readable console output for the CLI."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO, cast

import structlog

from netgpt.tracing import add_trace_ids


class _CurrentStderr:
    """``sys.stderr`` as it is at each write, not as it was when logging was configured: a caller that
    swaps it for a while (a test's capture) must not leave logging writing to a closed stream."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(json: bool = True, level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog once per process. Daemons log JSON to stderr."""
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=stream or cast(TextIO, _CurrentStderr())),
        cache_logger_on_first_use=False,
    )
