"""The kernel's clocks: jiffies, HZ (which DWARF does not record), the monotonic and
wall clocks of the timekeeper, read raw at addresses from the facts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from drgn import FaultError, Object, Program
from drgn_ss.kernel.facts import KernelFacts, kernel_facts, kernel_layout
from drgn_ss.kernel.facts_file import HZ_CANDIDATES
from drgn_ss.kernel.fields import offset
from drgn_ss.kernel.images import elf_file_bytes
from drgn_ss.kernel.program import debug_file, prog_cached
from drgn_ss.kernel.target import kernel_memory
from drgn_ss.kernel.type_sources import Learnt, OneType, TypeSource

__all__ = [
    "HZ_LAG_S", "HzEvidence", "hz_evidence", "hz_of_clocksource", "initial_jiffies", "jiffies", "kernel_hz",
    "monotonic_ns", "realtime_offset_ns", "tick_nsec", "timekeeper", "wall_clock_seconds",
]


def timekeeper(prog: Program) -> Object:
    """
    Get the kernel's timekeeper: ``tk_core.timekeeper`` or ``timekeeper_data[0].timekeeper``.

    :return: ``struct timekeeper``
    """
    if kernel_layout(prog).tk_core:
        return prog["tk_core"].timekeeper
    return prog["timekeeper_data"][0].timekeeper


def initial_jiffies(hz: int) -> int:
    """INITIAL_JIFFIES: jiffies at boot, (u32)(-300 * HZ), so they wrap 5 minutes in."""
    return (-300 * hz) & 0xFFFFFFFF


def jiffies(prog: Program) -> int:
    """
    The kernel's ``jiffies_64`` now (on a dump: at the time of the dump), read at the
    address in the facts (no debug info needed).
    """
    return kernel_memory(prog).read_u64(kernel_facts(prog).symbol("jiffies_64"))


#: How many seconds jiffies may lag the monotonic clock for the HZ that explains them: they
#: count from the first tick, which comes after the clock starts (0.83 s in a 6.1 TCG guest).
HZ_LAG_S = 5


def kernel_hz(prog: Program) -> int:
    """
    The kernel's HZ (CONFIG_HZ), which DWARF does not record: see :func:`_hz_fact`. It is a
    property of the build, cached with the other facts when it was checked.
    """
    return prog_cached(prog, "hz", lambda p: int(kernel_facts(p).value("hz", _hz_fact)))


def tick_nsec(hz: int) -> int:
    """TICK_NSEC: nanoseconds per tick, rounded as the kernel rounds them."""
    return (1_000_000_000 + hz // 2) // hz


def hz_of_clocksource(mult: int, shift: int) -> int | None:
    """
    The HZ a kernel was built with, from its jiffies clocksource (kernel/time/jiffies.c,
    ``clocksource_jiffies``: ``.mult = TICK_NSEC << JIFFIES_SHIFT``, ``.shift = JIFFIES_SHIFT``,
    8 for every HZ of 67 and up), which is initialised at build time and never changed; None
    if they are no candidate's.
    """
    for hz in HZ_CANDIDATES:
        if shift == 8 and mult == tick_nsec(hz) << 8:
            return hz
    return None


class HzEvidence(NamedTuple):
    """Which HZ explains a kernel's jiffies from its monotonic clock, and how well."""

    #: The candidate that explains them best.
    hz: int
    #: Whether that is sure: see :func:`hz_evidence`.
    strong: bool


def hz_evidence(jiffies_now: int, mono_ns: int) -> HzEvidence:
    """
    Which HZ explains ``jiffies_64`` from the timekeeper's monotonic time: jiffies start at
    INITIAL_JIFFIES = (u32)(-300 * HZ) and advance HZ times a second. Strong evidence: the
    clocks are plausible (the monotonic clock between 1 s and 100 years, jiffies not 0),
    the best candidate is off by at most :data:`HZ_LAG_S` seconds and every other by at
    least two lags more. Around 300 s of uptime, when jiffies wrap, every candidate
    explains them alike: weak.
    """
    def off_s(hz: int) -> float:
        return abs(jiffies_now - initial_jiffies(hz) - hz * mono_ns // 1_000_000_000) / hz

    (best_s, best), (second_s, _) = sorted((off_s(hz), hz) for hz in HZ_CANDIDATES)[:2]
    plausible = jiffies_now > 0 and 1_000_000_000 <= mono_ns < 100 * 365 * 86400 * 1_000_000_000
    return HzEvidence(best, plausible and best_s <= HZ_LAG_S and second_s >= best_s + 2 * HZ_LAG_S)


def _hz_fact(types: TypeSource) -> int | Learnt:
    """
    The kernel's HZ, from what the build says, checked against what its clocks say:

    - with DWARF, the initial value of ``clocksource_jiffies`` in the vmlinux file itself
      (:func:`hz_of_clocksource`), whose build ID drgn checked: a fact of the build, cached;
    - otherwise that variable in the kernel's memory, and :func:`hz_evidence` from its
      jiffies and monotonic clock: cached only when both say the same and the evidence is
      strong (or the variable is unreadable and the evidence strong); else used for this
      run only: the variable's value if it has one, the clocks' best guess (with a warning)
      if not.
    """
    facts = kernel_facts(types.prog)
    built = _vmlinux_hz(facts) if types.name == "DWARF" else None
    if built is not None:
        return built
    constant = _memory_hz(facts)
    try:
        evidence: HzEvidence | None = hz_evidence(jiffies(types.prog), _mono_ns(types))
    except FaultError:
        if constant is None:
            raise
        evidence = None
    if evidence is not None and evidence.strong and constant in (None, evidence.hz):
        return Learnt(evidence.hz, "memory")
    if constant is not None:
        if evidence is not None and evidence.strong:
            facts.warn(f"the kernel's jiffies clocksource says HZ={constant}, its jiffies and monotonic "
                       f"clock {evidence.hz}: timers assume HZ={constant}")
        return Learnt(constant, "")
    assert evidence is not None
    facts.warn(f"cannot tell the kernel's HZ (no readable jiffies clocksource, and its jiffies do not "
               f"fit its monotonic clock): timers assume HZ={evidence.hz}")
    return Learnt(evidence.hz, "")


def _clocksource_hz(facts: KernelFacts, read: Callable[[int, int], bytes | None], address: int) -> int | None:
    """:func:`hz_of_clocksource` of the ``struct clocksource`` that ``read`` finds at ``address``."""
    mult = facts.field("struct clocksource", "mult")
    shift = facts.field("struct clocksource", "shift")
    data = read(address, max(mult.end, shift.end))
    return None if data is None else hz_of_clocksource(mult.get(data), shift.get(data))


def _vmlinux_hz(facts: KernelFacts) -> int | None:
    """HZ from ``clocksource_jiffies`` as the loaded vmlinux file holds it (None if it does not)."""
    path = debug_file(facts.prog)
    if path is None or not facts.has_symbol("clocksource_jiffies"):
        return None
    return _clocksource_hz(facts, lambda address, size: elf_file_bytes(path, address, size),
                           facts.symbol("clocksource_jiffies") - facts.kaslr)


def _memory_hz(facts: KernelFacts) -> int | None:
    """HZ from ``clocksource_jiffies`` in the kernel's memory (None if it cannot be read)."""
    mem = kernel_memory(facts.prog)
    try:
        return _clocksource_hz(facts, mem.read, facts.symbol("clocksource_jiffies"))
    except (LookupError, FaultError):
        return None


def _mono_ns(types: TypeSource) -> int:
    """The timekeeper's monotonic clock at its last update, in nanoseconds."""
    facts = kernel_facts(types.prog)
    return kernel_memory(types.prog).read_u64(
        _timekeeper_address(types.prog) + facts.offset("struct timekeeper", "tkr_mono.base"))


def monotonic_ns(prog: Program) -> int:
    """
    The kernel's monotonic clock (ktime_get_ns(), which tcp_clock_ns() reads) at the
    timekeeper's last update, a tick ago at most: the time a live kernel's TCP stamps
    compare with, or a dump's at its taking. Read raw at addresses from the facts.
    """
    facts = kernel_facts(prog)
    mem = kernel_memory(prog)
    tk = _timekeeper_address(prog)
    # tk_update_ktime_data(): ``base`` holds whole seconds and wall_to_monotonic's
    # nanoseconds; xtime's nanoseconds are in ``xtime_nsec``, shifted (timekeeping_get_ns()).
    base = mem.read_u64(tk + facts.offset("struct timekeeper", "tkr_mono.base"))
    xtime_nsec = mem.read_u64(tk + facts.offset("struct timekeeper", "tkr_mono.xtime_nsec"))
    shift = mem.read_u32(tk + facts.offset("struct timekeeper", "tkr_mono.shift"))
    return base + (xtime_nsec >> min(shift, 63))


def realtime_offset_ns(prog: Program) -> int:
    """
    The timekeeper's ``offs_real``: what the real-time clock (ktime_get_real(), the clock
    of received packets' stamps) is ahead of the monotonic one, in nanoseconds.
    """
    facts = kernel_facts(prog)
    at = _timekeeper_address(prog) + facts.offset("struct timekeeper", "offs_real")
    raw = kernel_memory(prog).read_u64(at)
    return raw - (1 << 64) if raw >> 63 else raw  # a ktime_t: signed


def wall_clock_seconds(prog: Program) -> int:
    """
    The timekeeper's wall clock (seconds since the epoch) at its last update, read raw at
    addresses from the facts (no type information loaded on a warm cache).
    """
    facts = kernel_facts(prog)
    return kernel_memory(prog).read_u64(
        _timekeeper_address(prog) + facts.offset("struct timekeeper", "xtime_sec"))


def _timekeeper_address(prog: Program) -> int:
    """The address of the kernel's ``struct timekeeper`` (see :func:`timekeeper`), from the facts."""
    facts = kernel_facts(prog)
    if kernel_layout(prog).tk_core:
        return facts.symbol("tk_core") + int(facts.value("offset:tk_core:timekeeper", _tk_core_timekeeper))
    return facts.symbol("timekeeper_data") + facts.offset("struct tk_data", "timekeeper")


def _tk_core_timekeeper(types: TypeSource) -> int:
    """
    Where ``timekeeper`` lies in the variable ``tk_core``: ``static struct { seqcount_raw_spinlock_t
    seq; struct timekeeper timekeeper; } tk_core``, a type with no name, which BTF does not
    describe (it has no global variables): from BTF, the next 8-byte boundary after ``seq``.
    """
    tk_type = types.variable_type("tk_core")
    if tk_type is not None:
        return offset(OneType(tk_type), "", "timekeeper")
    return -(-types.type("seqcount_raw_spinlock_t").size // 8) * 8
