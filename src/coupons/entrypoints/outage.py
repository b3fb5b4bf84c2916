"""One line when the database goes away and one when it answers again, for polling loops.

A worker polls every fraction of a second; with a traceback logged at error level on each
failed poll, an outage of a minute wrote hundreds of identical traces, burying what else
happened. An expected condition (`DatabaseUnavailable`: the store has already retried) is now
a warning once and a note when it is over; anything else is still logged in full.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from coupons.domain.errors import DatabaseUnavailable


class OutageLog:
    """Tracks one loop's view of the database: down since when, if at all. Safe to share
    between threads (a webhook worker's deliveries report to their loop's)."""

    def __init__(self, log: Any, what: str) -> None:
        self._log = log
        self._what = what
        self._down_since: float | None = None
        self._lock = threading.Lock()

    def failed(self, error: BaseException, event: str) -> None:
        """Call from an `except` block: `event` is what failed ("job claim failed")."""
        if not isinstance(error, DatabaseUnavailable):
            self._log.exception(event)
            return
        with self._lock:
            first = self._down_since is None
            if first:
                self._down_since = time.monotonic()
        if first:
            cause = error.__cause__ or error
            first_line = (str(cause).strip().splitlines() or [""])[0]
            self._log.warning(
                f"database unavailable; {self._what} paused until it answers",
                error=f"{type(cause).__name__}: {first_line}",
            )

    def succeeded(self) -> None:
        """Call after a poll that reached the database."""
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            self._log.info(
                f"database answers again; {self._what} resumed",
                down_seconds=round(time.monotonic() - since, 1),
            )
