"""A pytest plugin that prints the outcome counts on one machine-readable line.

``python -m vmtests test`` reads it from the output of each kernel x mode run.
"""

from __future__ import annotations

import json
from typing import Any

MARKER = "@@pytest-counts "


def pytest_terminal_summary(terminalreporter: Any) -> None:
    stats = terminalreporter.stats
    counts = {k: len(stats.get(k, [])) for k in ("passed", "failed", "skipped", "error")}
    terminalreporter.write_line(MARKER + json.dumps(counts))


def parse_counts(text: str) -> dict[str, int] | None:
    """The counts printed by this plugin in ``text``, or None if it printed none."""
    for line in reversed(text.splitlines()):
        if line.startswith(MARKER):
            counts: dict[str, int] = json.loads(line[len(MARKER):])
            return counts
    return None
