"""What differs between kernel versions, answered once per kernel build.

Every kernel-version difference the project knows about is decided here, by
feature detection (does this type have this member?), never by the release
string. Other modules ask :func:`kernel_layout`.

:class:`KernelFacts` holds everything the fast paths need to know about a kernel
build (member offsets, struct sizes, symbol addresses, the features above, HZ),
worked out on first use and kept in a cache file per build ID, so that a later run
on the same build reads memory without loading any type information at all. They
are worked out from a :class:`TypeSource`: DWARF through drgn (:class:`DwarfTypes`),
or, where the kernel's debug info is not installed, the kernel's own BTF and
kallsyms (:class:`BtfTypes`); both give the same offsets (a kernel test checks it).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import time
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, TypeVar

from drgn import BadDataError, FaultError, Object, Program, ProgramFlags, Type, TypeKind
from drgn_ss.btf import Btf, BtfError
from drgn_ss.kallsyms import KallsymsError, MemoryKallsyms, proc_kallsyms
from drgn_ss.raw import ElfImage, Field, Memory, QemuImage, elf_build_id, elf_file_bytes, field, offset

T = TypeVar("T")


def has_member(type_: Type, name: str) -> bool:
    """Whether a struct or union type has a member (through anonymous members too)."""
    try:
        type_.member(name)
    except LookupError:
        return False
    return True


class KernelLayout(NamedTuple):
    #: The port-only ``inet_hashinfo.listening_hash[32]`` exists (before 5.19):
    #: inet_diag lists listeners from it, so ss's order follows it.
    listening_hash: bool
    #: ``lhash2`` chains are linked through ``icsk_listen_portaddr_node`` (before
    #: 5.19) rather than ``__sk_common.skc_nulls_node``.
    lhash2_portaddr_node: bool
    #: ``net->ipv4.udp_table`` exists: UDP tables are per network namespace (6.2+).
    udp_table_per_netns: bool
    #: ``struct sock`` caches its inode in ``sk_ino`` (6.18+).
    sk_ino: bool
    #: ``struct sock_cgroup_data`` has a ``cgroup`` pointer (5.15+) rather than ``val``.
    sock_cgroup_pointer: bool
    #: ``ip_local_ports.range`` is one u32 holding low | high << 16 (6.3+), not ``int[2]``.
    local_ports_packed: bool
    #: ``icsk_timeout`` holds the pending timer's expiry (before 6.14); later kernels
    #: read ``sk->tcp_retransmit_timer.expires``.
    icsk_timeout: bool
    #: The keepalive timer is ``icsk_keepalive_timer`` (recent) rather than ``sk->sk_timer``.
    icsk_keepalive_timer: bool
    #: The timekeeper lives in ``tk_core`` (before 6.15?) or ``timekeeper_data[0]``.
    tk_core: bool
    #: ``struct kernfs_node`` names its parent ``__parent`` (6.15+, RCU) rather than ``parent``.
    kernfs_parent_rcu: bool
    #: ``struct prot_inuse`` counts every socket in ``all`` (6.0+), rather than
    #: ``net->core.sock_inuse`` (ss -s's Total).
    prot_inuse_all: bool
    #: TCP's orphans are counted by ``struct percpu_counter tcp_orphan_count`` (before
    #: 5.15), rather than a per-CPU int of that name.
    orphan_percpu_counter: bool
    #: TIME-WAIT sockets are counted by ``tcp_death_row.tw_refcount`` (6.0+, one more than
    #: there are) rather than ``tw_count``.
    tw_refcount: bool
    #: ``sk_drops`` is added to the NUMA drop counters ``sk->sk_drop_counters`` points to
    #: (UDP's, 6.17+), as ``sk_drops_read()`` does.
    sk_drop_counters: bool


def _detect(prog: TypeSource) -> KernelLayout:
    hashinfo = prog.type("struct inet_hashinfo")
    icsk = prog.type("struct inet_connection_sock")
    netns_ipv4 = prog.type("struct netns_ipv4")
    cgroup_data = prog.type("struct sock_cgroup_data")
    ports_range = prog.type("struct netns_ipv4").member("ip_local_ports").type.member("range").type
    return KernelLayout(
        listening_hash=has_member(hashinfo, "listening_hash"),
        lhash2_portaddr_node=has_member(icsk, "icsk_listen_portaddr_node"),
        udp_table_per_netns=has_member(netns_ipv4, "udp_table"),
        sk_ino=has_member(prog.type("struct sock"), "sk_ino"),
        sock_cgroup_pointer=has_member(cgroup_data, "cgroup"),
        local_ports_packed=ports_range.unqualified().kind != TypeKind.ARRAY,
        icsk_timeout=has_member(icsk, "icsk_timeout"),
        icsk_keepalive_timer=has_member(icsk, "icsk_keepalive_timer"),
        tk_core=prog.symbol("tk_core") is not None,
        kernfs_parent_rcu=has_member(prog.type("struct kernfs_node"), "__parent"),
        prot_inuse_all=has_member(prog.type("struct prot_inuse"), "all"),
        orphan_percpu_counter=(has_member(prog.type("struct proto"), "orphan_count")
                               and _pointee_kind(prog.type("struct proto").member("orphan_count").type)
                               == TypeKind.STRUCT),
        tw_refcount=has_member(prog.type("struct inet_timewait_death_row"), "tw_refcount"),
        sk_drop_counters=has_member(prog.type("struct sock"), "sk_drop_counters"),
    )


def _pointee_kind(pointer: Any) -> TypeKind:
    """The kind of what a pointer type points to, typedefs and qualifiers set aside."""
    return pointer.unaliased().type.unaliased().kind


def is_local_live(prog: Program) -> bool:
    """Whether ``prog`` is the kernel this process runs on (so /proc and /sys describe it)."""
    flags = prog.flags
    return bool(flags & ProgramFlags.IS_LIVE and flags & ProgramFlags.IS_LOCAL)


def prog_cached(prog: Program, key: str, make: Callable[[Program], T]) -> T:
    """``make(prog)``, computed once per Program and kept in ``prog.cache``."""
    try:
        value: T = prog.cache["drgn_ss." + key]
    except KeyError:
        value = prog.cache["drgn_ss." + key] = make(prog)
    return value


def kernel_layout(prog: Program) -> KernelLayout:
    """The layout of ``prog``'s kernel, detected on first use (or read from the cache)."""
    def make(p: Program) -> KernelLayout:
        return KernelLayout(**kernel_facts(p).value("layout", lambda q: _detect(q)._asdict()))

    return prog_cached(prog, "layout", make)


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
    """The kernel's jiffies now (on a dump: at the time of the dump), through drgn Objects."""
    return int(prog["jiffies_64"].value_())


def raw_jiffies(prog: Program) -> int:
    """:func:`jiffies` read raw, at the address in the facts (no debug info needed)."""
    return kernel_memory(prog).read_u64(kernel_facts(prog).symbol("jiffies_64"))


HZ_CANDIDATES = (100, 250, 300, 1000)

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
        evidence: HzEvidence | None = hz_evidence(raw_jiffies(types.prog), _mono_ns(types))
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


def raw_xtime_sec(prog: Program) -> int:
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
        return offset(_OneType(tk_type), "", "timekeeper")
    return -(-types.type("seqcount_raw_spinlock_t").size // 8) * 8


# -- where types come from: DWARF, or BTF and kallsyms --------------------------------------

class TypeSource(Protocol):
    """Types and symbol addresses of a kernel, from DWARF or from BTF and kallsyms."""

    #: "DWARF" or "BTF".
    name: str
    #: Where its facts come from, for the cache (see :meth:`KernelFacts.value`): "dwarf"
    #: (the debug info drgn loaded) or "memory" (the kernel's own BTF and kallsyms).
    origin: str
    prog: Program

    def type(self, name: str) -> Any:
        """A type by name (``struct sock``), as :meth:`drgn.Program.type`; LookupError if none."""

    def symbol(self, name: str) -> int | None:
        """A kernel variable's address in this boot, or None if there is no such symbol."""

    def variable_type(self, name: str) -> Any | None:
        """A kernel variable's type, where the source knows it."""


class _OneType:
    """A TypeSource-like view of one type, named "" (for :func:`drgn_ss.raw.offset`)."""

    def __init__(self, type_: Any) -> None:
        self._type = type_

    def type(self, name: str) -> Any:
        return self._type


class DwarfTypes:
    """Types and symbols from the kernel's DWARF, loaded into ``prog``."""

    name = "DWARF"
    origin = "dwarf"

    def __init__(self, prog: Program) -> None:
        self.prog = prog
        try:
            prog.type("struct sock")  # here, not later, if there is no debug info
        except LookupError as e:
            raise NoDebugInfo(f"no debug info for the kernel ({e})") from None

    def type(self, name: str) -> Type:
        return self.prog.type(name)

    def symbol(self, name: str) -> int | None:
        try:
            return int(self.prog.object(name).address_)
        except LookupError:
            return None

    def variable_type(self, name: str) -> Type | None:
        try:
            return self.prog.object(name).type_
        except LookupError:
            return None


class BtfTypes:
    """
    Types from the kernel's BTF, symbols from its kallsyms: what a kernel carries itself
    (CONFIG_DEBUG_INFO_BTF, CONFIG_KALLSYMS_ALL), so no debug package is needed.
    """

    name = "BTF"
    origin = "memory"

    def __init__(self, prog: Program, btf: Btf, symbols: Callable[[str], int | None]) -> None:
        self.prog = prog
        self.btf = btf
        self._symbols = symbols

    def type(self, name: str) -> Any:
        return self.btf.type(name)

    def symbol(self, name: str) -> int | None:
        return self._symbols(name)

    def variable_type(self, name: str) -> None:
        return None  # vmlinux BTF describes per-CPU variables only


def btf_types(prog: Program) -> BtfTypes:
    """
    The kernel's BTF and kallsyms. Symbols from the kallsyms tables in memory that
    VMCOREINFO points to (Linux 6.0+), else, on the live local kernel, /proc/kallsyms.
    BTF from /sys/kernel/btf/vmlinux on the live local kernel, else (a dump, a QEMU
    guest) the kernel's memory between ``__start_BTF`` and ``__stop_BTF``.

    :raises LookupError: saying why neither can be had
    """
    live = is_local_live(prog)
    info = vmcoreinfo(prog)
    symbol: Callable[[str], int | None]
    try:
        # The tables in memory where VMCOREINFO has them (6.0+): faster than /proc/kallsyms
        # (0.08-0.14 s against 0.34-0.60 s in a TCG guest), which is for older live kernels.
        symbol = MemoryKallsyms(prog.read, info)
    except KallsymsError:
        if not live:
            raise
        try:
            symbol = proc_kallsyms()
        except OSError as e:
            raise LookupError(f"no kallsyms ({e})") from None
        if os.geteuid() != 0 or not symbol("init_net"):
            raise LookupError("no kallsyms: /proc/kallsyms shows addresses to root only") from None

    try:
        if live:
            with open("/sys/kernel/btf/vmlinux", "rb") as f:
                data = f.read()
        else:
            start, stop = symbol("__start_BTF"), symbol("__stop_BTF")
            if start is None or stop is None or not 0 < stop - start < 1 << 28:
                raise LookupError("no __start_BTF/__stop_BTF symbols: a kernel without BTF")
            data = prog.read(start, stop - start)
        return BtfTypes(prog, Btf(data), symbol)
    except (OSError, FaultError, BadDataError, BtfError) as e:
        raise LookupError(f"no BTF ({e})") from None


# -- facts about a kernel build, from DWARF or BTF once, then from a cache file ------------

#: Bump when the meaning of a cached value changes without its key changing. The cache
#: is also keyed by a hash of this package's source, so any code change starts afresh.
FACTS_VERSION = 2

#: The largest struct drgn-ss reads members of, with room to spare (task_struct, the
#: largest, is 6-10 KiB in the matrix): a size or offset past it is damage, not a kernel.
MAX_STRUCT_SIZE = 1 << 16
#: The largest facts file read (they hold some 30 KB).
MAX_FACTS_FILE = 1 << 22

DebugInfoLoader = Callable[[], None]


def cache_dir() -> str:
    """Where drgn-ss caches per-build facts: $DRGN_SS_CACHE, else $XDG_CACHE_HOME/drgn-ss."""
    if os.environ.get("DRGN_SS_CACHE"):
        return os.environ["DRGN_SS_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "drgn-ss")


def _source_hash() -> str:
    """
    A checksum of this package's Python source files' names, sizes and modification
    times: any edit starts a new cache (stat calls: reading the source cost 30 ms of a TCG
    guest's start-up).
    """
    here = os.path.dirname(os.path.abspath(__file__))
    crc = zlib.crc32(str(FACTS_VERSION).encode())
    for name in sorted(n for n in os.listdir(here) if n.endswith(".py")):
        st = os.stat(os.path.join(here, name))
        crc = zlib.crc32(f"{name}:{st.st_size}:{st.st_mtime_ns};".encode(), crc)
    return f"{crc:08x}"


def vmcoreinfo(prog: Program) -> dict[str, str]:
    """
    The kernel's VMCOREINFO note as a dict (``OSRELEASE``, ``BUILD-ID``, ``KERNELOFFSET``,
    ``CRASHTIME``...). drgn reads it from the dump or the running kernel; it needs no
    debug info. In a dump, it says what the dump says: nothing in it is checked. Decoded
    with errors="surrogateescape": a message quoting a value escapes it
    (:func:`drgn_ss.names.escape_name`), one "?" per byte that is not ASCII.
    """
    def read(p: Program) -> dict[str, str]:
        try:
            text = p["VMCOREINFO"].string_().decode(errors="surrogateescape")
        except (LookupError, FaultError):
            return {}
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    return prog_cached(prog, "vmcoreinfo", read)


def valid_build_id(text: str) -> str:
    """
    A build ID as VMCOREINFO gives it, if it is one (8 to 64 bytes in hex: GNU's are 20),
    in lower case; else "" (a damaged or forged note, which names no cache file).
    """
    text = text.strip().lower()
    if 16 <= len(text) <= 128 and len(text) % 2 == 0 and not text.strip("0123456789abcdef"):
        return text
    return ""


class NoDebugInfo(LookupError):
    """The kernel's DWARF could not be found (a debug info loader raises it, saying so)."""


def set_debug_info_loader(prog: Program, loader: DebugInfoLoader) -> None:
    """
    Say how to load ``prog``'s debug info when a fact is not in the cache (the loader
    raises :class:`NoDebugInfo` if there is none). Without a loader, debug info is
    assumed to be loaded already, if there is any (scripts run under ``drgn``).
    """
    prog.cache["drgn_ss.loader"] = loader


def use_btf(prog: Program, only: bool = False, announce: Callable[[str], None] | None = None) -> None:
    """
    How facts not in the cache are worked out when ``prog`` has no DWARF: from the
    kernel's BTF and kallsyms (the default), saying so once through ``announce`` (which
    also says the warnings about facts, :meth:`KernelFacts.warn`); with ``only``, from BTF
    even where DWARF could be loaded (``--btf``).
    """
    prog.cache["drgn_ss.btf_only"] = only
    if announce is not None:
        prog.cache["drgn_ss.announce"] = announce


def debug_file(prog: Program) -> str | None:
    """The file drgn loaded the kernel's DWARF from (its vmlinux), if it loaded any."""
    try:
        path = prog.main_module().debug_file_path
    except (LookupError, AttributeError):  # no main module yet; drgn before modules
        return None
    return str(path) if path else None


def dwarf_is_the_builds(prog: Program, build_id: str, kaslr: int) -> bool:
    """
    Whether the DWARF loaded into ``prog`` is that of the build VMCOREINFO names: its file
    has that build ID (drgn refuses a vmlinux of another build; checked again here, in
    the file itself) and drgn relocates its symbols by the KASLR offset drgn-ss uses.
    """
    path = debug_file(prog)
    if not build_id or path is None:
        return False
    module = prog.main_module()
    loaded = module.build_id
    return (loaded is not None and loaded.hex() == build_id and (module.debug_file_bias or 0) == kaslr
            and elf_build_id(path) == build_id)


# What each kind of fact (the part of its key before the first ":") may hold: a cached
# value that does not fit is not used, and a worked-out one that does not is damage.

def _uint(value: Any, limit: int = 1 << 64) -> bool:
    return type(value) is int and 0 <= value < limit


def _uints(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) <= 16
            and all(_uint(v, MAX_STRUCT_SIZE) for v in value))


def _is_field(v: Any) -> bool:
    if type(v) is not list or len(v) != 5:
        return False
    at, size, signed, shift, bits = v
    return (type(at) is int and type(size) is int and type(signed) is bool and type(shift) is int
            and type(bits) is int and 0 <= at < MAX_STRUCT_SIZE and 0 < size <= 16 and 0 <= shift < 8
            and 0 <= bits <= 64)


def _is_percpu(v: Any) -> bool:
    return v is None or (isinstance(v, (list, tuple)) and len(v) == 2 and _uint(v[0]) and type(v[1]) is bool)


def _is_layout(v: Any) -> bool:
    return (isinstance(v, dict) and v.keys() == set(KernelLayout._fields)
            and all(type(x) is bool for x in v.values()))


FACT_KINDS: dict[str, Callable[[Any], bool]] = {
    "field": _is_field,
    "offset": lambda v: _uint(v, MAX_STRUCT_SIZE),
    "size": lambda v: _uint(v, MAX_STRUCT_SIZE + 1) and v > 0,
    "symbol": lambda v: v is None or _uint(v),
    "percpu": _is_percpu,
    "length": lambda v: _uint(v, 1 << 24),
    "chase": _uints,
    "address": lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and _uints(v[0])
    and _uint(v[1], MAX_STRUCT_SIZE),
    "layout": _is_layout,
    "hz": lambda v: type(v) is int and v in HZ_CANDIDATES,
}


def plausible_fact(key: str, value: Any) -> bool:
    """Whether ``value`` is one a fact of this key's kind (:data:`FACT_KINDS`) can have."""
    check = FACT_KINDS.get(key.partition(":")[0])
    return check is not None and check(value)


class Learnt(NamedTuple):
    """
    A fact worked out from something other than the types it was asked of (see
    :func:`_hz_fact`), with where it came from: "dwarf" (the build's own vmlinux), "memory"
    (the kernel's memory), or "" (this run only: it is not cached).
    """

    value: Any
    origin: str


def _facts_dir(create: bool) -> int | None:
    """
    The facts directory, opened, if it is a directory (not a link to one) of this user's
    that other users cannot write to; None if not (then nothing is cached).
    """
    try:
        return _open_facts_dir(create)
    except OSError:
        return None


def _open_facts_dir(create: bool) -> int:
    """:func:`_facts_dir`, or the OSError that says why there is none."""
    path = os.path.join(cache_dir(), "facts")
    if create:
        os.makedirs(path, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o002:
        os.close(fd)
        raise PermissionError(errno.EPERM, "not a directory of this user's that others cannot write to")
    return fd


def _read_facts_file(dir_fd: int, name: str) -> dict[str, Any]:
    """
    A facts file's JSON object, read in ``dir_fd``; {} if it is not there, is not a regular
    file of this user's (a link is not followed), is too large, or is not a JSON object.
    """
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size > MAX_FACTS_FILE:
            return {}
        found = json.loads(os.read(fd, MAX_FACTS_FILE + 1))  # a regular file: read whole
    except (OSError, ValueError, RecursionError):
        return {}
    finally:
        os.close(fd)
    return found if isinstance(found, dict) else {}


def _write_facts_file(dir_fd: int, name: str, content: dict[str, Any]) -> None:
    """
    Replace a facts file in ``dir_fd`` atomically: a new file of this user's (never an
    existing one, nor one a link points to), renamed over the old name (a link there is
    replaced, not followed).
    """
    tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                 dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(content, sort_keys=True))
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


class FactsFile:
    """
    One cache file: its name in the facts directory, what it must say about the kernel
    (``header``: the build ID, the release, for a dump's own file which file) for its
    facts to be used, and its facts by where they came from (``sections``).
    """

    def __init__(self, name: str, header: dict[str, str], sections: tuple[str, ...]) -> None:
        self.name = name
        self.header = header
        self.sections: dict[str, dict[str, Any]] = {section: {} for section in sections}
        self.dirty = False

    def load(self, dir_fd: int) -> None:
        """Read the file's facts, if it is there and is about this kernel (else keep none)."""
        found = _read_facts_file(dir_fd, self.name)
        if any(found.get(k) != v for k, v in self.header.items()):
            return
        for section in self.sections:
            facts = found.get(section)
            if isinstance(facts, dict):
                self.sections[section] = facts

    def save(self, dir_fd: int) -> None:
        _write_facts_file(dir_fd, self.name, {**self.header, **self.sections})
        self.dirty = False


def _dump_identity(prog: Program) -> str | None:
    """What tells the dump file ``prog`` reads from any other (see :func:`use_core_file`)."""
    identity = prog.cache.get("drgn_ss.core_identity")
    return identity if isinstance(identity, str) else None


class KernelFacts:
    """
    Facts about one kernel build: JSON values under string keys (``kind:...``, see
    :data:`FACT_KINDS`), each worked out the first time from DWARF (loading debug info
    then, if it was not) or from the kernel's BTF and kallsyms, and cached on disk.
    Symbol addresses are kept without the KASLR offset and relocated with this boot's
    ``KERNELOFFSET``.

    What is cached, where, and who may use it (nothing in a dump is trusted to be a path, or
    to describe any other dump):

    - ``facts/BUILDID-SOURCEHASH.json``, named by the build ID from VMCOREINFO if it is hex
      of a sane length (else nothing is cached), and holding that build ID and the release:
      its ``dwarf`` section, facts from DWARF whose file has that build ID (checked:
      :func:`dwarf_is_the_builds`); its ``live`` section, facts from the running kernel's
      own BTF, kallsyms and memory (this machine's kernel, not a dump).
    - ``facts/dump-CRC-SOURCEHASH.json``, per dump file (device, inode, size, times):
      facts from that dump's own BTF, kallsyms and memory, used for that file alone. A
      QEMU guest's are not cached.

    A run that loads DWARF (``-s``, or debug info found on a cache miss) works every fact
    it reads out from DWARF, and rewrites any cached one that differs. A run without it
    uses, in this order, ``dwarf``, ``live``, then its dump's own facts. A run given the
    build's own vmlinux (``-s``, its build ID checked against the kernel's:
    :meth:`defer_debug_info`) uses the ``dwarf`` facts alone, and loads DWARF only for one
    that is not there. Values of the wrong kind in a file are ignored (worked out again);
    so is a file that is not JSON.
    """

    def __init__(self, prog: Program) -> None:
        self.prog = prog
        info = vmcoreinfo(prog)
        self.build_id = valid_build_id(info.get("BUILD-ID", ""))
        self.release = info.get("OSRELEASE", "")
        try:
            self.kaslr = int(info.get("KERNELOFFSET", "0"), 16)
        except ValueError:  # damaged: nothing worked out here is cached
            self.kaslr, self.build_id = 0, ""
        #: This run's facts, as used.
        self.values: dict[str, Any] = {}
        #: Whether this run reads DWARF, so that every fact comes from it (None: not known yet).
        self._dwarf_run: bool | None = None
        #: Whether saving failed (and was said): it is not tried, nor said, again.
        self._unwritable = False
        self._dwarf_checked: bool | None = None
        #: Whether this run had to load debug info (a cache miss, or -s).
        self.loaded_debug_info = False
        self._types: TypeSource | None = None
        #: Seconds this run spent working facts out (loading DWARF or BTF included).
        self.types_s = 0.0
        self._depth = 0
        self.shared: FactsFile | None = None
        self.own: FactsFile | None = None
        #: The shared cache file's path (None: nothing is cached).
        self.path: str | None = None
        if self.build_id:
            header = {"build_id": self.build_id, "release": self.release}
            suffix = f"{_source_hash()}.json"
            self.shared = FactsFile(f"{self.build_id}-{suffix}", header, ("dwarf", "live"))
            self.path = os.path.join(cache_dir(), "facts", self.shared.name)
            identity = None if is_local_live(prog) else _dump_identity(prog)
            if identity is not None:
                self.own = FactsFile(f"dump-{zlib.crc32(identity.encode()):08x}-{suffix}",
                                     {**header, "file": identity}, ("dump",))
            dir_fd = _facts_dir(create=False)
            if dir_fd is not None:
                try:
                    for f in self.files():
                        f.load(dir_fd)
                finally:
                    os.close(dir_fd)
        #: What a run without DWARF may use, the build's facts before the dump's own (with
        #: the build's vmlinux not loaded yet, the dwarf section's: :meth:`defer_debug_info`).
        self._usable: dict[str, Any] = {}
        for source, section in ((self.own, "dump"), (self.shared, "live"), (self.shared, "dwarf")):
            if source is not None:
                self._usable.update(source.sections[section])

    @property
    def dirty(self) -> bool:
        """Whether this run learnt something to write to the cache."""
        return any(f.dirty for f in self.files())

    def files(self) -> list[FactsFile]:
        return [f for f in (self.shared, self.own) if f is not None]

    def warn(self, message: str) -> None:
        """Say something about the facts on stderr, if the caller said how (:func:`use_btf`)."""
        announce = self.prog.cache.get("drgn_ss.announce")
        if announce is not None:
            announce(f"warning: {message}")

    def dwarf_run(self) -> bool:
        """
        Whether this run reads the kernel's DWARF (then every fact is worked out from it):
        its debug info is loaded (not merely loadable on a miss), and ``--btf`` was not asked.
        """
        if self._dwarf_run is None:
            self._dwarf_run = (not self.prog.cache.get("drgn_ss.btf_only")
                               and "drgn_ss.loader" not in self.prog.cache
                               and debug_file(self.prog) is not None)
        return self._dwarf_run

    def defer_debug_info(self) -> bool:
        """
        For a run given the vmlinux of this very build (``-s``; the caller checked that its
        build ID is this kernel's, as :func:`drgn_ss.cli.kernels_vmlinux` does): whether
        loading its DWARF can wait for a fact the cache does not hold, because the cache
        holds facts worked out from this build's DWARF (its ``dwarf`` section, cached only
        from a file whose build ID was checked). If so, until DWARF is loaded, this run uses
        those facts alone: not the live kernel's or a dump's own (a run with DWARF would work
        each out from DWARF, which gives the ``dwarf`` value).

        :return: False (nothing changed) if the cache has no such facts, or there is no
            debug info loader (:func:`set_debug_info_loader`) to load DWARF on a miss
        """
        dwarf = self.shared.sections["dwarf"] if self.shared is not None else {}
        if not dwarf or "drgn_ss.loader" not in self.prog.cache:
            return False
        self._usable = dict(dwarf)
        self.values.clear()
        return True

    def need_debug_info(self) -> Program:
        """Load debug info now if it is not loaded yet (for a cache miss, or a rare path)."""
        loader = self.prog.cache.get("drgn_ss.loader")
        if loader is not None:
            start = time.perf_counter()
            try:
                loader()  # if it fails, it stays: nothing is worked out without debug info
            finally:
                if not self._depth:  # else timed with the fact it is loaded for
                    self.types_s += time.perf_counter() - start
            del self.prog.cache["drgn_ss.loader"]
            self.loaded_debug_info = True
            self._dwarf_run = None
            if self.dwarf_run():
                self.values.clear()  # from here on, facts come from DWARF, not the cache
        return self.prog

    def types(self) -> TypeSource:
        """
        Where facts not in the cache are worked out: the kernel's DWARF if it can be
        loaded, else its BTF and kallsyms (see :func:`use_btf`).

        :raises LookupError: if neither can be had, saying why
        """
        if self._types is None:
            if self.prog.cache.get("drgn_ss.btf_only"):
                self._types = btf_types(self.prog)
            else:
                try:
                    self.need_debug_info()
                    self._types = DwarfTypes(self.prog)
                except LookupError as no_dwarf:
                    try:
                        self._types = btf_types(self.prog)
                    except LookupError as no_btf:
                        raise LookupError(f"{no_dwarf}, and no BTF to use instead ({no_btf})") from None
                    announce = self.prog.cache.get("drgn_ss.announce")
                    if announce is not None:
                        announce(f"{no_dwarf}: reading the kernel's BTF and kallsyms instead")
        return self._types

    @property
    def source(self) -> str | None:
        """"DWARF" or "BTF": what this run worked facts out from (None: all were cached)."""
        return self._types.name if self._types is not None else None

    def _cached(self, key: str) -> Any:
        """``key``'s cached value, for a run without DWARF; KeyError if none fits."""
        value = self._usable[key]
        if not plausible_fact(key, value):
            raise KeyError(key)
        return value

    def _section(self, origin: str) -> tuple[FactsFile, str] | None:
        """Where a fact of this origin is cached, if anywhere (see :class:`KernelFacts`)."""
        if origin == "dwarf":
            if self._dwarf_checked is None:
                self._dwarf_checked = dwarf_is_the_builds(self.prog, self.build_id, self.kaslr)
            return (self.shared, "dwarf") if self.shared is not None and self._dwarf_checked else None
        if origin == "memory":
            if is_local_live(self.prog):
                return (self.shared, "live") if self.shared is not None else None
            return (self.own, "dump") if self.own is not None else None
        return None

    def value(self, key: str, compute: Callable[[TypeSource], Any]) -> Any:
        """
        The value of ``key``: from the cache, unless this run reads DWARF, else
        ``compute(types)`` (see :meth:`types`), checked (:func:`plausible_fact`) and cached
        where its origin allows (``compute`` may say it with :class:`Learnt`).

        :raises ValueError: if the value worked out is not one a kernel has
        """
        try:
            return self.values[key]
        except KeyError:
            pass
        if not self.dwarf_run():
            try:
                value = self.values[key] = self._cached(key)
                return value
            except KeyError:
                pass
        start = time.perf_counter()
        self._depth += 1
        try:
            types = self.types()
            found = compute(types)
        finally:
            self._depth -= 1
            if not self._depth:  # a fact computed inside another is timed with it
                self.types_s += time.perf_counter() - start
        value, origin = found if isinstance(found, Learnt) else (found, types.origin)
        value = json.loads(json.dumps(value))  # as the cache will hold it: lists, not tuples
        if not plausible_fact(key, value):
            raise ValueError(f"the kernel's {types.name} gives {key} = {value!r}, which no kernel has: "
                             "is the dump damaged?")
        self.values[key] = value
        self._keep(key, value, origin)
        return value

    def _keep(self, key: str, value: Any, origin: str) -> None:
        """Cache a fact where its origin allows; one from DWARF replaces a live one that differs."""
        where = self._section(origin)
        if where is None:
            return
        f, section = where
        facts = f.sections[section]
        if facts.get(key, facts) != value:
            facts[key] = value
            f.dirty = True
        if section == "dwarf" and key in f.sections["live"] and f.sections["live"][key] != value:
            del f.sections["live"][key]

    def _inside(self, types: TypeSource, type_name: str, path: str, end: int) -> None:
        """
        Check that a member ending at byte ``end`` lies inside its struct.

        :raises ValueError: if it does not (a damaged BTF)
        """
        size = types.type(type_name).size
        if end > size:
            raise ValueError(f"the kernel's {types.name} puts {type_name}.{path} past the end of its "
                             f"{size} bytes: is the dump damaged?")

    def field(self, type_name: str, path: str) -> Field:
        """A member of a struct, as :func:`drgn_ss.raw.field`."""
        def compute(types: TypeSource) -> list[Any]:
            found = field(types, type_name, path)
            self._inside(types, type_name, path, found.end)
            return list(found)

        return Field(*self.value(f"field:{type_name}:{path}", compute))

    def offset(self, type_name: str, path: str) -> int:
        """A member's byte offset, as :func:`drgn_ss.raw.offset`."""
        def compute(types: TypeSource) -> int:
            found = offset(types, type_name, path)
            self._inside(types, type_name, path, found)
            return found

        return int(self.value(f"offset:{type_name}:{path}", compute))

    def size(self, type_name: str) -> int:
        """``sizeof(type_name)``."""
        return int(self.value(f"size:{type_name}", lambda t: t.type(type_name).size))

    def symbol(self, name: str) -> int:
        """
        The address of a kernel variable in this boot.

        :raises LookupError: if the kernel has no such symbol
        """
        def link_address(types: TypeSource) -> int | None:
            address = types.symbol(name)
            return None if address is None else address - self.kaslr

        address = self.value(f"symbol:{name}", link_address)
        if address is None:
            raise LookupError(f"no symbol {name!r} in this kernel")
        return int(address) + self.kaslr

    def percpu_symbol(self, name: str) -> int:
        """
        The address of a per-CPU variable (``DEFINE_PER_CPU``), to which each CPU's
        ``__per_cpu_offset`` is added. Where x86_64's per-CPU section is linked at 0 (before
        6.15) it is an offset into each CPU's area, the same in every boot (KASLR does not
        move that section); later kernels link it among the others, and it moves with them.

        :raises LookupError: if the kernel has no such symbol
        """
        def link_address(types: TypeSource) -> list[int | bool] | None:
            address = types.symbol(name)
            if address is None:
                return None
            zero_based = address < 1 << 32
            return [address if zero_based else address - self.kaslr, not zero_based]

        found = self.value(f"percpu:{name}", link_address)
        if found is None:
            raise LookupError(f"no symbol {name!r} in this kernel")
        address, relocated = found
        return int(address) + (self.kaslr if relocated else 0)

    def has_symbol(self, name: str) -> bool:
        try:
            self.symbol(name)
        except LookupError:
            return False
        return True

    def save(self) -> None:
        """
        Write what was learnt to the cache; where it cannot be written, say so once
        (:meth:`warn`): every run then works the facts out again.
        """
        files = [f for f in self.files() if f.dirty]
        if not files or self._unwritable:
            return
        failed: OSError | None = None
        try:
            dir_fd = _open_facts_dir(create=True)
        except OSError as e:
            failed = e
        else:
            try:
                for f in files:
                    try:
                        f.save(dir_fd)
                    except OSError as e:
                        failed = failed or e
            finally:
                os.close(dir_fd)
        if failed is not None:
            self._unwritable = True
            reason = failed.strerror or str(failed)
            self.warn(f"cannot write the facts cache in {os.path.join(cache_dir(), 'facts')} ({reason}): "
                      "every run works facts out again")


def kernel_facts(prog: Program) -> KernelFacts:
    """The facts about ``prog``'s kernel build, shared by everything reading it."""
    return prog_cached(prog, "facts", KernelFacts)


def kernel_memory(prog: Program) -> Memory:
    """
    A :class:`~drgn_ss.raw.Memory` for ``prog``, reading the direct map (where the slab
    allocator puts sockets, files and tasks) by physical address when the kernel says
    where it is: ``page_offset_base`` (CONFIG_RANDOMIZE_MEMORY) and MAX_PHYSMEM_BITS.
    """
    def make(p: Program) -> Memory:
        facts = kernel_facts(p)
        bits = vmcoreinfo(p).get("NUMBER(MAX_PHYSMEM_BITS)")
        direct_map = None
        if bits and facts.has_symbol("page_offset_base"):
            try:
                base = p.read_u64(facts.symbol("page_offset_base"))
                direct_map = (base, base + (1 << int(bits)))
            except FaultError:
                pass
        return Memory(p, direct_map, p.cache.get("drgn_ss.image"))

    return prog_cached(prog, "memory", make)


def use_core_file(prog: Program, path: str) -> None:
    """
    Let :func:`kernel_memory` read ``prog``'s physical memory straight from its core
    file, ``path``, when that is an ELF file (not kdump-compressed): a small read costs
    about a quarter of drgn's. Note which file it is (device, inode, size, modification and
    change times), so that facts from its own BTF are cached for it alone.
    """
    with contextlib.suppress(OSError, ValueError):  # if not, drgn reads it
        prog.cache["drgn_ss.image"] = ElfImage(path)
    with contextlib.suppress(OSError):
        st = os.stat(path)
        prog.cache["drgn_ss.core_identity"] = (f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:"
                                               f"{st.st_ctime_ns}")


def set_qemu(prog: Program, qmp_path: str) -> None:
    """
    ``prog.set_qemu_qmp(qmp_path)``, having first asked QEMU where the guest's RAM is in
    its process, so that :func:`kernel_memory` reads it there (as drgn does, without a
    call into drgn per read). If QEMU cannot tell, drgn reads it all.
    """
    with contextlib.suppress(OSError, ValueError):
        prog.cache["drgn_ss.image"] = QemuImage(qmp_path)
    prog.set_qemu_qmp(qmp_path)


#: x86_64's largest physical address space (MAX_PHYSMEM_BITS with 5-level paging): what a
#: damaged ``max_pfn`` is cut to.
MAX_PHYSICAL_BYTES = 1 << 52


def physical_memory_bytes(prog: Program) -> int:
    """
    How much physical memory the kernel has: ``max_pfn`` pages (the highest page frame,
    mm/memblock.c, every kernel), bounded by x86_64's physical address space. What bounds
    the number of objects any list or table in it can hold.
    """
    def read(p: Program) -> int:
        try:
            pages = kernel_memory(p).read_u64(kernel_facts(p).symbol("max_pfn"))
        except (FaultError, LookupError):
            return MAX_PHYSICAL_BYTES
        return min(max(pages, 1) << 12, MAX_PHYSICAL_BYTES)

    return prog_cached(prog, "physical_memory", read)


def object_limit(prog: Program, type_name: str, cap: int | None = None) -> int:
    """
    The most objects of a type the kernel could hold: its physical memory filled with them
    (a slab can hold no more), or ``cap`` (a limit of the kernel's own) if that is fewer. A
    list or table longer than this is damaged.
    """
    limit = physical_memory_bytes(prog) // max(kernel_facts(prog).size(type_name), 1)
    return min(limit, cap) if cap is not None else limit
