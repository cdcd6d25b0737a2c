"""Progress of a long table: a live line on a terminal, a log line now and then in cron."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO

log = logging.getLogger("panorama_elt")


class Progress:
    """Counts rows of one table and reports rows and rows/s."""

    def __init__(self, table: str, stream: TextIO | None = None, log_every: float = 60.0) -> None:
        self.table = table
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty()
        self.log_every = log_every
        self.rows = 0
        self._lock = threading.Lock()  # reading processes report through threads of their own
        self.started = self._last = time.monotonic()

    def __call__(self, rows: int) -> None:
        with self._lock:
            self._add(rows)

    def _add(self, rows: int) -> None:
        self.rows += rows
        now = time.monotonic()
        if self.live and now - self._last >= 0.5:
            self._last = now
            self.stream.write(f"\r{self.table}: {self.rows:,} rows ({self.rate(now):,.0f} rows/s) ")
            self.stream.flush()
        elif not self.live and now - self._last >= self.log_every:
            self._last = now
            log.info("%s: %d rows so far (%.0f rows/s)", self.table, self.rows, self.rate(now))

    def rate(self, now: float) -> float:
        """Rows per second since the table started."""
        return self.rows / max(now - self.started, 1e-6)

    def done(self) -> None:
        """Clear the live line."""
        if self.live and self.rows:
            self.stream.write("\r\033[K")
            self.stream.flush()
