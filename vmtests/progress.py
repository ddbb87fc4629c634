"""Progress lines on stderr: redrawn in place on a terminal, every 10% otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class Progress:
    """Report how far a long step (a download, an extraction) has come."""

    def __init__(self, label: str, total: int | None, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total or None
        self.done = 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty:
            if now - self._last_draw >= 0.2:
                self._last_draw = now
                self.stream.write("\r\x1b[K" + self._line())
                self.stream.flush()
        elif self.total:
            decile = min(10, self.done * 10 // self.total)
            if decile != self._last_decile and decile % 2 == 0:
                self._last_decile = decile
                self.stream.write(self._line() + "\n")
                self.stream.flush()

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = f"{human(self.done / elapsed)}/s"
        if self.total:
            pct = 100 * self.done / self.total
            return f"{self.label}: {pct:3.0f}% of {human(self.total)} ({rate})"
        return f"{self.label}: {human(self.done)} ({rate})"

    def finish(self) -> None:
        elapsed = time.monotonic() - self.start
        line = f"{self.label}: done, {human(self.done)} in {elapsed:.1f} s"
        self.stream.write(("\r\x1b[K" if self.tty else "") + line + "\n")
        self.stream.flush()
