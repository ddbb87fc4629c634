"""ss -s: the socket summary, from the counters behind /proc/net/sockstat, sockstat6 and snmp.

ss prints its summary from those files (misc/ss.c print_summary()); the kernel fills them
from per-CPU counters (net/ipv4/proc.c sockstat_seq_show(), net/ipv6/proc.c
sockstat6_seq_show(), the TCP MIB's CurrEstab). This reads the same counters from kernel
memory, for one network namespace, and prints what ss prints.
"""

from __future__ import annotations

from typing import NamedTuple

from drgn import Program
from drgn_ss.layout import kernel_facts, kernel_layout, kernel_memory
from drgn_ss.raw import Memory
from drgn_ss.tables import member_address

#: include/uapi/linux/snmp.h: the TCP MIB's CurrEstab (a UAPI enum: it does not move).
TCP_MIB_CURRESTAB = 9


class SockStat(NamedTuple):
    """The counters ss's summary shows, for one network namespace (ss's ``struct ssummary``)."""

    #: sockets: used (every socket of the namespace, of any family)
    sockets: int
    #: TCP: inuse (hashed IPv4 TCP sockets), orphan, tw, alloc (sockets allocated: every namespace)
    tcp4_hashed: int
    tcp_orphans: int
    tcp_tws: int
    tcp_total: int
    tcp6_hashed: int
    udp4: int
    udp6: int
    raw4: int
    raw6: int
    frag4: int
    frag6: int
    #: Tcp: CurrEstab from /proc/net/snmp
    tcp_estab: int


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


def _percpu_counter_sum_positive(prog: Program, pcpu: PerCpu, counter: int) -> int:
    """percpu_counter_sum_positive(): ``count`` plus every CPU's ``counters``, at least 0."""
    facts = kernel_facts(prog)
    P = "struct percpu_counter"
    count = int.from_bytes(pcpu.mem.read(counter + facts.offset(P, "count"), 8), "little", signed=True)
    counters = pcpu.mem.read_u64(counter + facts.offset(P, "counters"))
    return max(count + pcpu.sum_s32(counters), 0)


def raw_sockstat(prog: Program, net: int) -> SockStat:
    """
    The summary's counters for a namespace, as the kernel computes /proc/net/sockstat,
    sockstat6 and the snmp file's CurrEstab for it.

    :param net: ``struct net *`` address
    """
    facts = kernel_facts(prog)
    layout = kernel_layout(prog)
    mem = kernel_memory(prog)
    pcpu = PerCpu(prog)
    N = "struct net"
    prot_inuse = mem.read_u64(net + facts.offset(N, "core.prot_inuse"))
    val = facts.offset("struct prot_inuse", "val")
    inuse_idx = facts.field("struct proto", "inuse_idx")

    def prot_inuse_get(proto: int) -> int:  # sock_prot_inuse_get(); proto: struct proto *
        idx = inuse_idx.get(mem.read(proto, inuse_idx.end))
        return max(pcpu.sum_s32(prot_inuse + val + 4 * idx), 0)

    if layout.prot_inuse_all:  # sock_inuse_get(): 6.0+ counts in prot_inuse too
        sockets = pcpu.sum_s32(prot_inuse + facts.offset("struct prot_inuse", "all"))
    else:
        sockets = pcpu.sum_s32(mem.read_u64(net + facts.offset(N, "core.sock_inuse")))
    if layout.orphan_percpu_counter:
        tcp_orphans = _percpu_counter_sum_positive(prog, pcpu, facts.symbol("tcp_orphan_count"))
    else:  # tcp_orphan_count_sum(): a per-CPU int (5.15+)
        tcp_orphans = max(pcpu.sum_s32(facts.percpu_symbol("tcp_orphan_count")), 0)
    tcp_prot = facts.symbol("tcp_prot")
    allocated = mem.read_u64(tcp_prot + facts.offset("struct proto", "sockets_allocated"))
    if layout.tw_refcount:  # refcount_read(&tw_refcount) - 1 (6.0+)
        tws = mem.read_u32(member_address(facts, mem, net, N, "ipv4.tcp_death_row.tw_refcount")) - 1
    else:
        tws = mem.read_u32(member_address(facts, mem, net, N, "ipv4.tcp_death_row.tw_count"))
    frags = []
    for ip in ("ipv4", "ipv6"):
        frags.append(mem.read_u32(member_address(facts, mem, net, N, f"{ip}.fqdir.rhashtable.nelems")))
    mib = mem.read_u64(net + facts.offset(N, "mib.tcp_statistics"))
    estab = pcpu.sum_u64(mib + facts.offset("struct tcp_mib", "mibs") + 8 * TCP_MIB_CURRESTAB)
    return SockStat(
        sockets=sockets,
        tcp4_hashed=prot_inuse_get(facts.symbol("tcp_prot")),
        tcp_orphans=tcp_orphans,
        tcp_tws=_c_int(tws),
        tcp_total=_percpu_counter_sum_positive(prog, pcpu, allocated),
        tcp6_hashed=prot_inuse_get(facts.symbol("tcpv6_prot")),
        udp4=prot_inuse_get(facts.symbol("udp_prot")),
        udp6=prot_inuse_get(facts.symbol("udpv6_prot")),
        raw4=prot_inuse_get(facts.symbol("raw_prot")),
        raw6=prot_inuse_get(facts.symbol("rawv6_prot")),
        frag4=frags[0],
        frag6=frags[1],
        tcp_estab=_c_int(estab),
    )


def _c_int(value: int) -> int:
    """A value as ss's ``%d`` reads it from the kernel's text: wrapped to a 32-bit int."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >> 31 else value


def format_summary(s: SockStat) -> str:
    """What ``ss -s`` prints (misc/ss.c print_summary())."""
    closed = s.tcp_total - (s.tcp4_hashed + s.tcp6_hashed - s.tcp_tws)
    lines = [
        f"Total: {s.sockets}",
        f"TCP:   {s.tcp_total + s.tcp_tws} (estab {s.tcp_estab}, closed {closed}, "
        f"orphaned {s.tcp_orphans}, timewait {s.tcp_tws})",
        "",
        "Transport Total     IP        IPv6",
    ]
    rows = (("RAW", s.raw4, s.raw6), ("UDP", s.udp4, s.udp6), ("TCP", s.tcp4_hashed, s.tcp6_hashed),
            ("INET", s.raw4 + s.udp4 + s.tcp4_hashed, s.raw6 + s.udp6 + s.tcp6_hashed),
            ("FRAG", s.frag4, s.frag6))
    for name, four, six in rows:
        lines.append(f"{name}\t  {four + six:<9d} {four:<9d} {six:<9d}")
    return "\n".join(lines) + "\n\n"
