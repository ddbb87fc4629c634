"""ss -s: the socket summary, from the counters behind /proc/net/sockstat, sockstat6 and snmp.

ss prints its summary from those files (misc/ss.c print_summary()); the kernel fills them
from per-CPU counters (net/ipv4/proc.c sockstat_seq_show(), net/ipv6/proc.c
sockstat6_seq_show(), the TCP MIB's CurrEstab). This reads the same counters from kernel
memory, for one network namespace, and prints what ss prints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from drgn import FaultError, Program
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import kernel_facts, kernel_layout
from drgn_ss.kernel.fields import s32
from drgn_ss.kernel.memory import Memory
from drgn_ss.kernel.target import kernel_memory
from drgn_ss.tables.hashtable import member_address

__all__ = [
    "IPSTATS_MIB_INOCTETS", "IPSTATS_MIB_OUTOCTETS", "PerCpu", "SockStat", "TCP_MIB_ACTIVEOPENS",
    "TCP_MIB_CURRESTAB", "TCP_MIB_PASSIVEOPENS", "ip_octets", "sockstat_counts", "tcp_mib_counters",
]

#: include/uapi/linux/snmp.h: the TCP MIB's ActiveOpens, PassiveOpens and CurrEstab (a
#: UAPI enum: it does not move).
TCP_MIB_ACTIVEOPENS, TCP_MIB_PASSIVEOPENS, TCP_MIB_CURRESTAB = 5, 6, 9
#: The same file's IP MIB InOctets and OutOctets (/proc/net/netstat's IpExt, snmp6's Ip6).
IPSTATS_MIB_INOCTETS, IPSTATS_MIB_OUTOCTETS = 2, 6


class SockStat(NamedTuple):
    """
    The counters ss's summary shows, for one network namespace (ss's ``struct ssummary``);
    None where a counter could not be read.
    """

    #: sockets: used (every socket of the namespace, of any family)
    sockets: int | None
    #: TCP: inuse (hashed IPv4 TCP sockets), orphan, tw, alloc (sockets allocated: every namespace)
    tcp4_hashed: int | None
    tcp_orphans: int | None
    tcp_tws: int | None
    tcp_total: int | None
    tcp6_hashed: int | None
    udp4: int | None
    udp6: int | None
    raw4: int | None
    raw6: int | None
    frag4: int | None
    frag6: int | None
    #: Tcp: CurrEstab from /proc/net/snmp
    tcp_estab: int | None


class PerCpu:
    """Per-CPU variables: each possible CPU's copy is at ``ptr + __per_cpu_offset[cpu]``."""

    def __init__(self, prog: Program) -> None:
        facts = kernel_facts(prog)
        self.mem: Memory = kernel_memory(prog)
        count = self.mem.read_u32(facts.symbol("nr_cpu_ids"))
        mask = self.mem.read((facts.symbol("__cpu_possible_mask")), (count + 7) // 8)
        offsets = self.mem.read(facts.symbol("__per_cpu_offset"), count * 8)
        self.offsets = [int.from_bytes(offsets[cpu * 8 : cpu * 8 + 8], "little")
                        for cpu in range(count) if mask[cpu // 8] >> (cpu % 8) & 1]

    def addresses(self, ptr: int) -> list[int]:
        """per_cpu_ptr(ptr, cpu) for each possible CPU: the sum wraps (from 6.15, x86_64's
        per-CPU pointers are addresses in the kernel image and the offsets wrap around)."""
        return [(ptr + off) & _U64 for off in self.offsets]

    def sum_s32(self, ptr: int) -> int:
        """The sum over possible CPUs of a per-CPU ``int`` at ``ptr`` (a __percpu address)."""
        read = self.mem.read
        return sum(int.from_bytes(read(addr, 4), "little", signed=True) for addr in self.addresses(ptr))

    def sum_u64(self, ptr: int) -> int:
        """The sum of a per-CPU ``unsigned long``, wrapped to 64 bits as the kernel's is."""
        return sum(map(self.mem.read_u64, self.addresses(ptr))) & _U64


_U64 = (1 << 64) - 1


def tcp_mib_counters(prog: Program, net: int, index: int, pcpu: PerCpu | None = None) -> int:
    """
    One TCP MIB counter of a namespace summed over the CPUs, as /proc/net/snmp shows it.

    :param index: ``TCP_MIB_*``
    """
    facts = kernel_facts(prog)
    mem = kernel_memory(prog)
    mib = mem.read_u64(net + facts.offset("struct net", "mib.tcp_statistics"))
    return (pcpu or PerCpu(prog)).sum_u64(mib + facts.offset("struct tcp_mib", "mibs") + 8 * index)


def ip_octets(prog: Program, net: int, pcpu: PerCpu | None = None) -> tuple[int, int]:
    """
    The bytes of IP packets a namespace received and sent, IPv4 and IPv6 together, headers
    included (IpExt InOctets and OutOctets of /proc/net/netstat plus snmp6's Ip6InOctets and
    Ip6OutOctets): ``struct ipstats_mib`` per CPU, at ``net->mib.ip_statistics`` and
    ``ipv6_statistics`` (absent without IPv6).
    """
    facts = kernel_facts(prog)
    mem = kernel_memory(prog)
    pcpu = pcpu or PerCpu(prog)
    mibs = facts.offset("struct ipstats_mib", "mibs")
    got = [0, 0]
    for member in ("mib.ip_statistics", "mib.ipv6_statistics"):
        try:
            at = facts.offset("struct net", member)
        except LookupError:  # no IPv6
            continue
        stats = mem.read_u64(net + at)
        if not stats:
            continue
        got[0] += pcpu.sum_u64(stats + mibs + 8 * IPSTATS_MIB_INOCTETS)
        got[1] += pcpu.sum_u64(stats + mibs + 8 * IPSTATS_MIB_OUTOCTETS)
    return got[0] & _U64, got[1] & _U64


def _percpu_counter_sum_positive(prog: Program, pcpu: PerCpu, counter: int) -> int:
    """percpu_counter_sum_positive(): ``count`` plus every CPU's ``counters``, at least 0."""
    facts = kernel_facts(prog)
    P = "struct percpu_counter"
    count = int.from_bytes(pcpu.mem.read(counter + facts.offset(P, "count"), 8), "little", signed=True)
    counters = pcpu.mem.read_u64(counter + facts.offset(P, "counters"))
    return max(count + pcpu.sum_s32(counters), 0)


class _NetCounters:
    """How the kernel computes each of /proc/net/sockstat's counters for one ``struct net``."""

    def __init__(self, prog: Program, net: int, errors: WalkErrors | None) -> None:
        self.prog = prog
        self.net = net
        self.errors = errors
        self.facts = kernel_facts(prog)
        self.layout = kernel_layout(prog)
        self.mem = kernel_memory(prog)
        self.pcpu = PerCpu(prog)
        self.val = self.facts.offset("struct prot_inuse", "val")
        self.inuse_idx = self.facts.field("struct proto", "inuse_idx")

    def read(self, compute: Callable[[], int]) -> int | None:
        """``compute()``, or None where it faults (counted)."""
        try:
            return compute()
        except FaultError as e:
            tolerate(self.errors, "counters", e)
            return None

    def _member(self, path: str) -> int:
        return member_address(self.facts, self.mem, self.net, "struct net", path)

    def _prot_inuse(self) -> int:
        return self.mem.read_u64(self.net + self.facts.offset("struct net", "core.prot_inuse"))

    def prot_inuse_get(self, proto: int) -> int | None:
        """sock_prot_inuse_get() of a ``struct proto *`` (``&tcp_prot``...)."""
        def compute() -> int:
            idx = self.inuse_idx.get(self.mem.read(proto, self.inuse_idx.end))
            return max(self.pcpu.sum_s32(self._prot_inuse() + self.val + 4 * idx), 0)
        return self.read(compute)

    def sockets(self) -> int:
        """sock_inuse_get(): 6.0+ counts in prot_inuse too."""
        if self.layout.prot_inuse_all:
            return self.pcpu.sum_s32(self._prot_inuse() + self.facts.offset("struct prot_inuse", "all"))
        inuse = self.mem.read_u64(self.net + self.facts.offset("struct net", "core.sock_inuse"))
        return self.pcpu.sum_s32(inuse)

    def orphans(self) -> int:
        """tcp_orphan_count_sum()."""
        if self.layout.orphan_percpu_counter:
            return _percpu_counter_sum_positive(self.prog, self.pcpu, self.facts.symbol("tcp_orphan_count"))
        return max(self.pcpu.sum_s32(self.facts.percpu_symbol("tcp_orphan_count")), 0)

    def allocated(self) -> int:
        """tcp_prot's sockets_allocated."""
        counter = self.mem.read_u64(self.facts.symbol("tcp_prot")
                                    + self.facts.offset("struct proto", "sockets_allocated"))
        return _percpu_counter_sum_positive(self.prog, self.pcpu, counter)

    def tws(self) -> int:
        """TIME-WAIT sockets: refcount_read(&tw_refcount) - 1 (6.0+), else tw_count."""
        if self.layout.tw_refcount:
            return s32(self.mem.read_u32(self._member("ipv4.tcp_death_row.tw_refcount")) - 1)
        return s32(self.mem.read_u32(self._member("ipv4.tcp_death_row.tw_count")))

    def frags(self, ip: str) -> int:
        """Reassembly queues of ``ip`` ("ipv4" or "ipv6")."""
        return self.mem.read_u32(self._member(f"{ip}.fqdir.rhashtable.nelems"))

    def estab(self) -> int:
        """The snmp file's CurrEstab."""
        return s32(tcp_mib_counters(self.prog, self.net, TCP_MIB_CURRESTAB, self.pcpu))


def sockstat_counts(prog: Program, net: int, errors: WalkErrors | None = None) -> SockStat:
    """
    The summary's counters for a namespace, as the kernel computes /proc/net/sockstat,
    sockstat6 and the snmp file's CurrEstab for it. A counter that cannot be read (a page
    filtered out of a dump) is None, and counted in ``errors``.

    :param net: ``struct net *`` address
    """
    c = _NetCounters(prog, net, errors)
    return SockStat(
        sockets=c.read(c.sockets),
        tcp4_hashed=c.prot_inuse_get(c.facts.symbol("tcp_prot")),
        tcp_orphans=c.read(c.orphans),
        tcp_tws=c.read(c.tws),
        tcp_total=c.read(c.allocated),
        tcp6_hashed=c.prot_inuse_get(c.facts.symbol("tcpv6_prot")),
        udp4=c.prot_inuse_get(c.facts.symbol("udp_prot")),
        udp6=c.prot_inuse_get(c.facts.symbol("udpv6_prot")),
        raw4=c.prot_inuse_get(c.facts.symbol("raw_prot")),
        raw6=c.prot_inuse_get(c.facts.symbol("rawv6_prot")),
        frag4=c.read(lambda: c.frags("ipv4")),
        frag6=c.read(lambda: c.frags("ipv6")),
        tcp_estab=c.read(c.estab),
    )
