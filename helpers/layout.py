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
import json
import os
import time
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, TypeVar

from drgn import BadDataError, FaultError, Object, Program, ProgramFlags, Type, TypeKind
from drgn_ss.btf import Btf, BtfError
from drgn_ss.kallsyms import KallsymsError, MemoryKallsyms, proc_kallsyms
from drgn_ss.raw import ElfImage, Field, Memory, QemuImage, field, offset

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


def kernel_hz(prog: Program) -> int:
    """
    The kernel's HZ (CONFIG_HZ), which DWARF does not record.

    jiffies start at INITIAL_JIFFIES = (u32)(-300 * HZ) and advance HZ times a second,
    as the monotonic clock advances in nanoseconds: the candidate that best explains
    jiffies_64 from the timekeeper's monotonic time is the one. It is a property of
    the build, so it is cached with the other facts.
    """
    return prog_cached(prog, "hz", lambda p: int(kernel_facts(p).value("hz", _detect_hz)))


def _detect_hz(types: TypeSource) -> int:
    facts = kernel_facts(types.prog)
    mem = kernel_memory(types.prog)
    if kernel_layout(types.prog).tk_core:
        # static struct { seqcount_raw_spinlock_t seq; struct timekeeper timekeeper; } tk_core:
        # a type with no name, which BTF does not describe (it has no global variables).
        tk_type = types.variable_type("tk_core")
        base = facts.symbol("tk_core") + (
            offset(_OneType(tk_type), "", "timekeeper") if tk_type is not None
            else -(-types.type("seqcount_raw_spinlock_t").size // 8) * 8)  # the next 8-byte boundary
    else:
        base = facts.symbol("timekeeper_data") + facts.offset("struct tk_data", "timekeeper")
    mono_ns = mem.read_u64(base + facts.offset("struct timekeeper", "tkr_mono.base"))
    now = raw_jiffies(types.prog)

    def error(hz: int) -> int:
        return abs(now - initial_jiffies(hz) - hz * mono_ns // 1_000_000_000)

    return min(HZ_CANDIDATES, key=error)


def jiffies_delta_to_msecs(prog: Program, delta: int) -> int:
    """As the kernel's jiffies_delta_to_msecs(): a negative delta is 0."""
    return max(delta, 0) * 1000 // kernel_hz(prog)


# -- where types come from: DWARF, or BTF and kallsyms --------------------------------------

class TypeSource(Protocol):
    """Types and symbol addresses of a kernel, from DWARF or from BTF and kallsyms."""

    #: "DWARF" or "BTF".
    name: str
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
FACTS_VERSION = 1

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


def _file_part(text: str) -> str:
    """
    ``text`` from VMCOREINFO (the dump's own: anything) made a safe part of a file name in
    the cache: letters, digits and ``.+-_~`` (no "/" to climb out of it), 64 at most.
    """
    return "".join(c if c.isascii() and (c.isalnum() or c in ".+-_~") else "_" for c in text[:64])


def vmcoreinfo(prog: Program) -> dict[str, str]:
    """
    The kernel's VMCOREINFO note as a dict (``OSRELEASE``, ``BUILD-ID``, ``KERNELOFFSET``,
    ``CRASHTIME``...). drgn reads it from the dump or the running kernel; it needs no
    debug info. Decoded with errors="surrogateescape": a message quoting a value escapes
    it (:func:`drgn_ss.names.escape_name`), one "?" per byte that is not ASCII.
    """
    def read(p: Program) -> dict[str, str]:
        try:
            text = p["VMCOREINFO"].string_().decode(errors="surrogateescape")
        except (LookupError, FaultError):
            return {}
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    return prog_cached(prog, "vmcoreinfo", read)


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
    kernel's BTF and kallsyms (the default), saying so once through ``announce``; with
    ``only``, from BTF even where DWARF could be loaded (``--btf``).
    """
    prog.cache["drgn_ss.btf_only"] = only
    if announce is not None:
        prog.cache["drgn_ss.announce"] = announce


class KernelFacts:
    """
    Facts about one kernel build: JSON values under string keys, each worked out from
    DWARF the first time (loading debug info then, if it was not), and cached on disk
    under the build ID from VMCOREINFO. Symbol addresses are kept without the KASLR
    offset and relocated with this boot's ``KERNELOFFSET``.
    """

    def __init__(self, prog: Program) -> None:
        self.prog = prog
        info = vmcoreinfo(prog)
        self.build_id = info.get("BUILD-ID", "")
        self.release = info.get("OSRELEASE", "")
        self.kaslr = int(info.get("KERNELOFFSET", "0"), 16)
        self.values: dict[str, Any] = {}
        self.dirty = False
        #: Whether this run had to load debug info (a cache miss).
        self.loaded_debug_info = False
        self._types: TypeSource | None = None
        #: Seconds this run spent working facts out (loading DWARF or BTF included).
        self.types_s = 0.0
        self._depth = 0
        self.path: str | None = None
        if self.build_id:
            self.path = os.path.join(cache_dir(), "facts", f"{_file_part(self.release)}-"
                                     f"{_file_part(self.build_id)}-{_source_hash()}.json")
            try:
                with open(self.path) as f:
                    self.values = json.load(f)
            except (OSError, ValueError):
                self.values = {}

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

    def value(self, key: str, compute: Callable[[TypeSource], Any]) -> Any:
        """The cached value of ``key``, else ``compute(types)`` (see :meth:`types`), cached."""
        try:
            return self.values[key]
        except KeyError:
            pass
        start = time.perf_counter()
        self._depth += 1
        try:
            value = compute(self.types())
        finally:
            self._depth -= 1
            if not self._depth:  # a fact computed inside another is timed with it
                self.types_s += time.perf_counter() - start
        self.values[key] = value
        self.dirty = True
        return value

    def field(self, type_name: str, path: str) -> Field:
        """A member of a struct, as :func:`drgn_ss.raw.field`."""
        raw = self.value(f"field:{type_name}:{path}",
                         lambda t: list(field(t, type_name, path)))
        return Field(*raw)

    def offset(self, type_name: str, path: str) -> int:
        """A member's byte offset, as :func:`drgn_ss.raw.offset`."""
        return int(self.value(f"offset:{type_name}:{path}", lambda t: offset(t, type_name, path)))

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
        """Write what was learnt to the cache (quietly skipped where it cannot be written)."""
        if not self.dirty or self.path is None:
            return
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            tmp = f"{self.path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                f.write(json.dumps(self.values, sort_keys=True))
            os.replace(tmp, self.path)
            self.dirty = False
        except OSError:
            pass


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
    about a quarter of drgn's.
    """
    with contextlib.suppress(OSError, ValueError):  # if not, drgn reads it
        prog.cache["drgn_ss.image"] = ElfImage(path)


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
