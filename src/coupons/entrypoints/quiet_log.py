"""Logging for the command line's one-shot commands, before any command sets up its own."""

from __future__ import annotations

import logging
import sys

import structlog


def quiet_logging() -> None:
    """Until a command sets up its own logging (`serve`, `worker`), warnings and worse go to
    stderr, and nothing else: structlog's default printed a debug line ("connection lost;
    retrying") to stdout, into what a script reads from the command (an org's id, a secret)."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
