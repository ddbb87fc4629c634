"""The limits the kernel holds sockets to, and how close they are: what a triage report
measures sockets against (drgn_ss.report).

- Host-wide: ``tcp_max_orphans`` (``sysctl_tcp_max_orphans``), ``tcp_mem`` and ``udp_mem``
  (``sysctl_tcp_mem[3]``, ``sysctl_udp_mem[3]``: min, pressure, max in pages) against the
  pages the protocol has charged (``tcp_memory_allocated``, ``udp_memory_allocated``, or
  those members of ``net_aligned_data``: /proc/net/sockstat's ``mem``), and TCP's pressure
  flag (``tcp_memory_pressure``: set, to when it began, while over the pressure mark; UDP
  has none).
- Per network namespace: ``tcp_max_tw_buckets`` (``tcp_death_row.sysctl_max_tw_buckets``)
  and the TcpExt counters ListenOverflows and ListenDrops (the namespace's ``LINUX_MIB``,
  /proc/net/netstat).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from drgn import FaultError, Program
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import kernel_facts, kernel_layout
from drgn_ss.kernel.fields import s32
from drgn_ss.kernel.target import kernel_memory
from drgn_ss.sockets.counters import PerCpu
from drgn_ss.tables.hashtable import member_address

__all__ = ["HostLimits", "LINUX_MIB_LISTENDROPS", "LINUX_MIB_LISTENOVERFLOWS", "NetLimits", "PAGE_SIZE",
           "ProtoMemory", "host_limits", "net_limits"]

#: include/uapi/linux/snmp.h's names of TcpExt's ListenOverflows and ListenDrops. Their
#: values are read from the kernel's types: the enum is not append-only (19 and 20 up to 6.12,
#: 23 and 24 in 7.2, where four counters came before them).
LINUX_MIB_LISTENOVERFLOWS, LINUX_MIB_LISTENDROPS = "LINUX_MIB_LISTENOVERFLOWS", "LINUX_MIB_LISTENDROPS"
#: x86-64's, the only architecture drgn-ss reads: tcp_mem and udp_mem count these.
PAGE_SIZE = 4096


class ProtoMemory(NamedTuple):
    """A protocol's memory against its ``*_mem`` sysctl, in pages (None: not readable)."""

    allocated: int | None
    min: int | None
    pressure: int | None
    max: int | None
    #: Whether the kernel says it is under pressure now (None: it keeps no such flag).
    under_pressure: bool | None


class HostLimits(NamedTuple):
    """The host-wide limits (None where one could not be read)."""

    max_orphans: int | None
    tcp_mem: ProtoMemory
    udp_mem: ProtoMemory


class NetLimits(NamedTuple):
    """One network namespace's limit and listen counters (None where one could not be read)."""

    max_tw_buckets: int | None
    listen_overflows: int | None
    listen_drops: int | None


def host_limits(prog: Program, errors: WalkErrors | None = None) -> HostLimits:
    """The host's orphan limit and TCP's and UDP's memory against theirs."""
    facts = kernel_facts(prog)
    mem = kernel_memory(prog)

    def read(compute: Callable[[], int]) -> int | None:
        try:
            return compute()
        except (FaultError, LookupError) as e:  # LookupError: no such variable in this kernel
            if isinstance(e, FaultError):
                tolerate(errors, "counters", e)
            return None

    def signed(address: int) -> int:
        raw = mem.read_u64(address)
        return raw - (1 << 64) if raw >> 63 else raw

    def proto(limits: Callable[[], int], allocated: Callable[[], int],
              pressure: Callable[[], int] | None) -> ProtoMemory:
        """A protocol's ``*_mem[3]``, its pages allocated and its pressure flag, at those addresses."""
        low = read(lambda: signed(limits()))
        mark = read(lambda: signed(limits() + 8))
        high = read(lambda: signed(limits() + 16))
        used = read(lambda: max(signed(allocated()), 0))
        flag = read(lambda: mem.read_u64(pressure())) if pressure is not None else None
        return ProtoMemory(used, low, mark, high, None if flag is None else bool(flag))

    # Each variable by name, as a literal: drgn_ss.kernel.kallsyms.SYMBOLS finds them in one pass.
    if kernel_layout(prog).net_aligned_data:
        def allocated(protocol: str) -> Callable[[], int]:
            return lambda: (facts.symbol("net_aligned_data")
                            + facts.offset("struct net_aligned_data", f"{protocol}_memory_allocated"))
        tcp_allocated, udp_allocated = allocated("tcp"), allocated("udp")
    else:
        tcp_allocated = lambda: facts.symbol("tcp_memory_allocated")  # noqa: E731
        udp_allocated = lambda: facts.symbol("udp_memory_allocated")  # noqa: E731
    tcp = proto(lambda: facts.symbol("sysctl_tcp_mem"), tcp_allocated,
                lambda: facts.symbol("tcp_memory_pressure"))
    udp = proto(lambda: facts.symbol("sysctl_udp_mem"), udp_allocated, None)
    orphans = read(lambda: mem.read_u32(facts.symbol("sysctl_tcp_max_orphans")))
    return HostLimits(orphans, tcp, udp)


def net_limits(prog: Program, net: int, errors: WalkErrors | None = None) -> NetLimits:
    """A namespace's TIME-WAIT limit and listen counters (``net``: a ``struct net *``)."""
    facts = kernel_facts(prog)
    mem = kernel_memory(prog)
    pcpu = PerCpu(prog)

    def read(compute: Callable[[], int]) -> int | None:
        try:
            return compute()
        except FaultError as e:
            tolerate(errors, "counters", e)
            return None
        except LookupError:  # the kernel's types do not name the counter (BTF keeps no such enum)
            return None

    def mib(name: str) -> int:  # a LINUX_MIB counter summed over the CPUs, as /proc/net/netstat
        index = facts.enumerator(None, name)
        stats = mem.read_u64(net + facts.offset("struct net", "mib.net_statistics"))
        return pcpu.sum_u64(stats + facts.offset("struct linux_mib", "mibs") + 8 * index)

    tw_max = read(lambda: s32(mem.read_u32(
        member_address(facts, mem, net, "struct net", "ipv4.tcp_death_row.sysctl_max_tw_buckets"))))
    return NetLimits(tw_max, read(lambda: mib(LINUX_MIB_LISTENOVERFLOWS)),
                     read(lambda: mib(LINUX_MIB_LISTENDROPS)))
