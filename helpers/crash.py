"""What a post-mortem reader wants first from a crash dump: release, time, panic, task."""

from __future__ import annotations

from typing import TYPE_CHECKING

from drgn import FaultError, Program
from drgn_ss.layout import (
    initial_jiffies,
    is_local_live,
    jiffies,
    kernel_facts,
    kernel_hz,
    kernel_memory,
    timekeeper,
    vmcoreinfo,
)
from drgn_ss.names import escape_bytes, escape_name

if TYPE_CHECKING:
    from datetime import datetime


def crash_time(prog: Program) -> datetime:
    """The wall-clock time of the timekeeper's last update before the dump (UTC)."""
    from datetime import datetime, timezone  # imported only for a crash summary: 1.5 ms of start-up

    seconds = int(timekeeper(prog).xtime_sec.value_())
    return datetime.fromtimestamp(seconds, timezone.utc)


def uptime_seconds(prog: Program) -> float:
    """Seconds since boot, from the dump's own jiffies."""
    hz = kernel_hz(prog)
    return (jiffies(prog) - initial_jiffies(hz)) / hz


def panicked(prog: Program) -> bool:
    """
    Whether ``prog`` is a dump of a kernel that panicked, told cheaply (no debug info on a
    warm cache): the kernel adds CRASHTIME to VMCOREINFO when it kexecs into a capture
    kernel, and sets ``panic_cpu`` when it panics.
    """
    if "CRASHTIME" in vmcoreinfo(prog):
        return True
    if is_local_live(prog):
        return False
    facts = kernel_facts(prog)
    try:
        cpu = kernel_memory(prog).read_u32(facts.symbol("panic_cpu"))
    except (LookupError, FaultError):
        return True  # cannot tell: let crash_summary() look properly
    return cpu != 0xFFFFFFFF  # PANIC_CPU_INVALID (-1)


def crash_summary(prog: Program) -> list[str] | None:
    """
    Describe the crash in a few lines, or return None if ``prog`` is not a crash dump
    (a live kernel, or a dump of a kernel that did not panic).
    """
    # Imported here: drgn.helpers.linux takes ~50 ms to import, which the fast path skips.
    from drgn.helpers.linux.panic import panic_message
    from drgn.helpers.linux.sched import task_cpu
    unreadable = ""
    try:
        thread = prog.crashed_thread()
    except (ValueError, LookupError):  # live: ValueError; a dump that never panicked: LookupError
        return None
    except FaultError as e:  # it panicked, but the task's page is not in the dump
        thread, unreadable = None, str(e)
    lines = []
    release = escape_bytes(prog["UTS_RELEASE"].string_())  # the dump's: escaped, as all it says
    try:
        when = crash_time(prog).strftime("%Y-%m-%d %H:%M:%S UTC")
        lines.append(f"crash dump of Linux {release}, crashed {when}, "
                     f"{uptime_seconds(prog):.1f} s after boot")
    except (FaultError, LookupError):
        lines.append(f"crash dump of Linux {release}")
    try:
        message = panic_message(prog)
    except (FaultError, LookupError):
        message = None
    lines.append("panic: " + (escape_bytes(message) if message else "(no panic message found)"))
    if thread is None:
        lines.append(f"crashing task: unreadable ({unreadable})")
        return lines
    try:
        task = thread.object
        comm = escape_name(task.comm.string_().decode(errors="surrogateescape"))
        lines.append(f"crashing task: pid {thread.tid} ({comm}) on CPU {task_cpu(task)}")
    except (FaultError, LookupError, ValueError):
        lines.append(f"crashing task: pid {thread.tid}")
    return lines
