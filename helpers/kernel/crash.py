"""What a post-mortem reader wants first from a crash dump: release, time, panic, task.

Every read here may meet damaged memory (a dump of a kernel that crashed is one whose
memory is suspect): what cannot be read is left out or said to be unreadable, and what is
read is escaped (:func:`drgn_ss.kernel.strings.escape_bytes`) before it reaches a terminal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drgn import Program, ProgramFlags
from drgn_ss.kernel.clock import initial_jiffies, jiffies, kernel_hz, wall_clock_seconds
from drgn_ss.kernel.damage import is_damage, tolerant
from drgn_ss.kernel.facts import kernel_facts
from drgn_ss.kernel.program import is_local_live, vmcoreinfo
from drgn_ss.kernel.strings import escape_bytes, escape_name, safe_line
from drgn_ss.kernel.target import kernel_memory

__all__ = [
    "MAX_LOG_RECORD_BITS", "TIME_FORMAT", "crash_summary", "crash_summary_without_debug_info", "crash_time",
    "dump_summary", "dump_time", "panicked", "uptime_seconds",
]

if TYPE_CHECKING:
    from datetime import datetime


#: How a dump's time is written: the crash summary, ``drgn-ss --header``, ``drgn-nethogs``.
TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"


def crash_time(prog: Program) -> datetime:
    """
    The wall-clock time of the timekeeper's last update before the dump (UTC), read raw
    through the facts (what ``timekeeper(prog).xtime_sec`` reads, without loading DWARF on a
    warm cache, or with none).
    """
    from datetime import datetime, timezone  # imported only for a crash summary: 1.5 ms of start-up

    return datetime.fromtimestamp(wall_clock_seconds(prog), timezone.utc)


def dump_time(prog: Program) -> datetime | None:
    """:func:`crash_time`, or None where it cannot be read (damaged, or not in the dump)."""
    return tolerant(lambda: crash_time(prog))


def uptime_seconds(prog: Program) -> float:
    """Seconds since boot, from the dump's own jiffies (read raw: no debug info needed)."""
    hz = kernel_hz(prog)
    return (jiffies(prog) - initial_jiffies(hz)) / hz


def panicked(prog: Program) -> bool | None:
    """
    Whether ``prog`` is a dump of a kernel that panicked, told cheaply (no debug info on a
    warm cache): the kernel adds CRASHTIME to VMCOREINFO when it kexecs into a capture
    kernel, and sets ``panic_cpu`` when it panics.

    :return: True or False; None if it cannot be told (``panic_cpu`` cannot be read): then
        nothing is said about a crash, which may not have happened
    """
    if "CRASHTIME" in vmcoreinfo(prog):
        return True
    if is_local_live(prog):
        return False
    try:
        cpu = kernel_memory(prog).read_u32(kernel_facts(prog).symbol("panic_cpu"))
    except Exception as e:
        if is_damage(e):
            return None
        raise
    return cpu != 0xFFFFFFFF  # PANIC_CPU_INVALID (-1)


def crash_summary(prog: Program) -> list[str] | None:
    """
    Describe the crash in a few lines, or return None if ``prog`` is not a crash dump
    (a live kernel, a dump of a kernel that did not panic, or one that cannot be told:
    see :func:`panicked`). What cannot be read is left out or said to be unreadable; what
    is read is escaped for a terminal.
    """
    if prog.flags & ProgramFlags.IS_LIVE or not panicked(prog):
        return None
    return [_release_line(prog), _panic_line(prog), _task_line(prog)]


def crash_summary_without_debug_info(prog: Program) -> list[str]:
    """
    What can be said of a crash without the kernel's debug info: its release, when it
    crashed and the uptime, read raw. The panic message and the crashing task need drgn
    Objects (the log ring, the task), hence the debug info.
    """
    return [_release_line(prog)]


def dump_summary(prog: Program) -> list[str]:
    """
    What ``--header`` says of a dump of a kernel that did not panic (or of one that cannot
    be told): ``dump of Linux RELEASE, taken WHEN, N s after boot``, what can be read of it.
    """
    return [_release_line(prog, "dump", "taken")]


def _release_line(prog: Program, what: str = "crash dump", verb: str = "crashed") -> str:
    """``crash dump of Linux RELEASE, crashed WHEN, N s after boot``: what can be read of it."""
    raw = tolerant(lambda: bytes(prog["UTS_RELEASE"].string_()))
    if raw is None:
        raw = vmcoreinfo(prog).get("OSRELEASE", "").encode("utf-8", "surrogateescape") or None
    line = f"{what} of Linux " + (escape_bytes(raw) if raw is not None else "(release unreadable)")
    when = dump_time(prog)
    if when is not None:
        line += f", {verb} {when.strftime(TIME_FORMAT)}"
    uptime = tolerant(lambda: uptime_seconds(prog))
    if uptime is not None and uptime >= 0:
        line += f", {uptime:.1f} s after boot"
    return line


def _panic_line(prog: Program) -> str:
    """``panic: MESSAGE``, escaped (a panic message quotes whatever the kernel was handling)."""
    # Imported here: drgn.helpers.linux takes ~50 ms to import, which the fast path skips.
    from drgn.helpers.linux.panic import panic_message

    if not _log_ring_plausible(prog):
        return "panic: (the kernel log is unreadable)"
    try:
        message = panic_message(prog)
    except Exception as e:
        if not is_damage(e):
            raise
        return "panic: (the kernel log is unreadable)"
    return "panic: " + (escape_bytes(message) if message else "(no panic message found)")


#: CONFIG_LOG_BUF_SHIFT is at most 25 (init/Kconfig), and the ring has one record per 32
#: bytes of text (PRB_AVGBITS, 5): a ring of more records is damage (or a log_buf_len= larger
#: than any build's, which is read as unreadable rather than walked for minutes).
MAX_LOG_RECORD_BITS = 20


def _log_ring_plausible(prog: Program) -> bool:
    """
    Whether the kernel log's ring (``prb``, Linux 5.10+) is one drgn's printk helper can
    walk in bounded time: a ring size within the kernel's own limits, and its oldest and
    newest records no further apart than the ring holds. drgn walks from one to the other
    whatever they are (up to 2^62 steps on a damaged dump).
    """
    try:
        ring = prog["prb"].desc_ring
        bits = ring.count_bits.value_()
        if not 0 < bits <= MAX_LOG_RECORD_BITS:
            return False
        id_mask = (1 << 62) - 1  # DESC_ID_MASK: the state bits above it
        distance = (ring.head_id.counter.value_() - ring.tail_id.counter.value_()) & id_mask
        return distance <= 1 << bits
    except KeyError:
        return True  # no prb: the old log buffer, which drgn bounds by its own indices
    except Exception as e:
        if not is_damage(e):
            raise
        return False


def _task_line(prog: Program) -> str:
    """``crashing task: pid PID (COMM) on CPU N``: what can be read of it."""
    from drgn.helpers.linux.sched import task_cpu

    try:
        thread = prog.crashed_thread()
    except Exception as e:  # it panicked, but the task's page is not in the dump, or is damaged
        if not is_damage(e):
            raise
        return f"crashing task: unreadable ({safe_line(str(e))})"
    line = f"crashing task: pid {thread.tid}"
    task = tolerant(lambda: thread.object)
    if task is None:
        return line
    comm = tolerant(lambda: bytes(task.comm.string_()).decode(errors="surrogateescape"))
    if comm is not None:
        line += f" ({escape_name(comm)})"
    cpu = tolerant(lambda: int(task_cpu(task)))
    if cpu is not None:
        line += f" on CPU {cpu}"
    return line
