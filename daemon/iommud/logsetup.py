"""structlog setup: human-readable on a terminal, one JSON object per line
otherwise (files, journald, container logs)."""
from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

#: The configured level, so that hot paths can skip building events that
#: the filtering logger would drop anyway.
_level = logging.INFO


def level_enabled(level: int) -> bool:
    return level >= _level


def configure(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    if fmt not in ("console", "json"):
        raise ValueError(f"log_format must be auto, console or json, not {fmt!r}")
    levels = logging.getLevelNamesMapping()
    if level.upper() not in levels:
        raise ValueError(f"log_level must be one of debug, info, warning, error, not {level!r}")
    global _level
    _level = levels[level.upper()]
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty()) if fmt == "console"
        else structlog.processors.JSONRenderer(sort_keys=True))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "iommud") -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
