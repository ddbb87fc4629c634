"""Real crash dumps (kdump + makedumpfile): what a post-mortem reader sees first."""

from __future__ import annotations

from typing import Any

import drgn
import pytest
from drgn_ss.crash import crash_summary
from drgn_ss.layout import jiffies


def test_summary_names_the_task_that_panicked(prog: drgn.Program, workload: dict[str, Any]) -> None:
    if "dump_level" not in workload:
        pytest.skip("not a crash dump")
    assert workload["panic_pid"] is not None, "the guest did not report which pid panicked"
    summary = crash_summary(prog)
    assert summary is not None
    assert summary[0].startswith(f"crash dump of Linux {workload['release']}, crashed ")
    assert summary[1] == "panic: Kernel panic - not syncing: sysrq triggered crash"
    if workload["dump_level"] & 8 and summary[2].startswith("crashing task: unreadable ("):
        # makedumpfile dropped the task's page (see test_ss.test_same_lines_as_ss): say so.
        assert "Excluded page" in summary[2]
        return
    assert summary[2].startswith(f"crashing task: pid {workload['panic_pid']} (sh) on CPU ")


def test_no_summary_without_a_crash(prog: drgn.Program, workload: dict[str, Any]) -> None:
    if "dump_level" in workload:
        pytest.skip("a crash dump")
    assert crash_summary(prog) is None
    assert jiffies(prog) > 0
