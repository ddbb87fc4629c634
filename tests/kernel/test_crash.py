"""Real crash dumps (kdump + makedumpfile): what a post-mortem reader sees first."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import drgn
import pytest
from drgn_ss.kernel.clock import jiffies
from drgn_ss.kernel.crash import crash_summary

DRGN_SS = os.path.join(os.path.dirname(sys.executable), "drgn-ss")


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


def test_summary_without_debug_info(target: Any, workload: dict[str, Any]) -> None:
    """--btf on a crash dump: the release, crash time and uptime read raw, and why the panic
    message and task are missing, as --header lines; the listing as with debug info."""
    if "dump_level" not in workload:
        pytest.skip("not a crash dump")
    p = subprocess.run([DRGN_SS, "-c", str(target.path), "--btf", "--header", "-tlnp"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode in (0, 3), p.stderr
    head = [line for line in p.stdout.splitlines() if line.startswith("# ")]
    assert head[0].startswith(f"# crash dump of Linux {workload['release']}, crashed "), head
    assert " s after boot" in head[0], head
    assert head[1].startswith("# no panic message or crashing task: no debug info"), head
    assert len(head) == 2 and "-s VMLINUX" not in head[1], head
