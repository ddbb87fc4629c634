"""Per-process network traffic from the kernel's own per-socket counters (for nethogs.py).

Each TCP socket counts the bytes it sent and received (``tcp_sock.bytes_sent``,
``bytes_acked``, ``bytes_received``: what tcp_info reports). :class:`Sampler` reads them for
every TCP socket, joins each socket to the processes holding it (one walk of the task and
file tables per sample, and only when a socket appeared that no earlier walk placed), and
turns two samples into per-process rates. UDP sockets keep no byte counts: what is shown
for them is their receive queue and drop count.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from drgn import FaultError, Program
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import kernel_facts
from drgn_ss.kernel.fields import Field
from drgn_ss.kernel.target import kernel_memory
from drgn_ss.owners import Owner, kernel_owners
from drgn_ss.sockets.counters import TCP_MIB_ACTIVEOPENS, TCP_MIB_PASSIVEOPENS, PerCpu, tcp_mib_counters
from drgn_ss.sockets.inet import inet_sockets
from drgn_ss.sockets.meminfo import sk_meminfo
from drgn_ss.sockets.record import Socket

__all__ = [
    "COUNTER_MEMBERS", "ConnKey", "Connection", "ProcessTraffic", "Sample", "Sampler", "TcpCounters",
    "bytes_since", "conn_key", "holder", "per_process", "tcp_counters", "tcp_opened",
]


class TcpCounters(NamedTuple):
    """A TCP socket's byte and segment counts (tcp_get_info()'s tcpi_bytes_*, tcpi_segs_*)."""

    bytes_sent: int
    bytes_acked: int
    bytes_received: int
    segs_out: int
    segs_in: int


#: The ``struct tcp_sock`` members of :class:`TcpCounters`, in its order.
COUNTER_MEMBERS = ("bytes_sent", "bytes_acked", "bytes_received", "segs_out", "segs_in")


#: What tells one connection from another across samples: its ``struct sock`` address
#: (reused once it is freed) with its protocol and addresses.
ConnKey = tuple[int, str, bytes, int, bytes, int]


def conn_key(s: Socket) -> ConnKey:
    """What tells one connection from another across samples: its ``struct sock`` and endpoints."""
    return (s.address, s.proto, s.src, s.sport, s.dst, s.dport)


class Connection(NamedTuple):
    """One socket in one sample."""

    sock: Socket
    #: TCP: the counters; UDP: None.
    counters: TcpCounters | None
    #: UDP: (receive queue bytes, drops); TCP: None.
    udp: tuple[int, int] | None


class Sample(NamedTuple):
    """Every TCP and UDP socket at one moment, and who holds each."""

    #: time.monotonic() when the counters were read (the middle of their reads: rates are
    #: over the time between two samples' reads), and the seconds the walk of the tables took.
    when: float
    walk_s: float
    connections: dict[ConnKey, Connection]
    #: ``struct socket`` address -> its holders (only the sockets of this sample).
    owners: dict[int, list[Owner]]
    #: CPU seconds this process spent on the sample (walks, reads, joins).
    cpu_s: float
    #: Whether the task and file tables were walked for this sample.
    owners_walked: bool
    errors: WalkErrors
    #: TCP connections the sampled namespaces have opened since boot (the TCP MIB's
    #: ActiveOpens + PassiveOpens): the difference between two samples counts those that
    #: opened and closed unseen between them too. None if it could not be read.
    tcp_opens: int | None = None
    #: time.monotonic() when the sample began (its place in the sampler's schedule).
    start: float = 0.0
    #: Seconds the whole sample took: the walk, the counters and, when made, the walk of the
    #: tasks for owners. A sample longer than the interval stretches it.
    sample_s: float = 0.0


def tcp_counters(prog: Program, socks: Sequence[Socket], errors: WalkErrors | None = None
                     ) -> dict[int, TcpCounters]:
    """:class:`TcpCounters` of each full TCP socket, by address; minisocks have none."""
    facts = kernel_facts(prog)
    mem = kernel_memory(prog)
    fields: list[Field] = [facts.field("struct tcp_sock", name) for name in COUNTER_MEMBERS]
    span = max(f.end for f in fields)
    out = {}
    for s in socks:
        if s.proto != "tcp" or s.kind != "full":
            continue
        try:
            buf = mem.read(s.address, span)
        except FaultError as e:
            tolerate(errors, "sockets", e)
            continue
        out[s.address] = TcpCounters(*(f.get(buf) for f in fields))
    return out


class Sampler:
    """
    Samples a kernel's sockets again and again. Owners are looked up by one walk of the
    task and file tables, done only when a socket shows up that the last walk did not see
    held (a new connection): never a walk per socket, and none at all while the set of
    connections holds still.
    """

    def __init__(self, prog: Program, nets: Sequence[int]) -> None:
        self.prog = prog
        self.nets = list(nets)
        #: ``struct sock`` address -> holders, from the last walk of the tasks.
        self.owners: dict[int, list[Owner]] = {}
        #: Sockets (``struct sock`` addresses) the last walk found no holder for.
        self.orphans: set[int] = set()
        self.pcpu = PerCpu(prog)

    def sample(self) -> Sample:
        cpu0, start = time.process_time(), time.monotonic()
        errors = WalkErrors()
        socks = [s for s in inet_sockets(self.prog, self.nets, ("udp", "tcp"), listening=False,
                                           established=True, errors=errors, inodes=False, cgroups=False)
                 if s.kind == "full"]
        read_start = time.monotonic()
        counters = tcp_counters(self.prog, socks, errors)
        # Rates are over the time between two samples' reads of the counters (the walk
        # before them takes longer, and varies more).
        when = (read_start + time.monotonic()) / 2
        udp = [s for s in socks if s.proto == "udp"]
        skmem = sk_meminfo(self.prog, udp, errors) if udp else {}
        walk_s = time.monotonic() - start
        wanted = {s.address for s in socks if s.socket}
        unknown = wanted - self.owners.keys() - self.orphans
        walked = bool(unknown)
        if walked:
            found = kernel_owners(self.prog, errors)
            self.owners = {sock: found[sock] for sock in wanted if sock in found}
            self.orphans = wanted - self.owners.keys()
        connections = {}
        for s in socks:
            mem = skmem.get(s.address)
            connections[conn_key(s)] = Connection(
                s, counters.get(s.address), (mem[0], mem[8]) if mem is not None else None)
        owners = {sock: self.owners[sock] for sock in wanted if sock in self.owners}
        try:
            opens: int | None = sum(tcp_mib_counters(self.prog, net, TCP_MIB_ACTIVEOPENS, self.pcpu)
                                    + tcp_mib_counters(self.prog, net, TCP_MIB_PASSIVEOPENS, self.pcpu)
                                    for net in self.nets)
        except FaultError:
            opens = None
        return Sample(when, walk_s, connections, owners, time.process_time() - cpu0, walked, errors, opens,
                      start, time.monotonic() - start)


class ProcessTraffic(NamedTuple):
    """
    One process's share of a sample (and of the interval before it). None is a value not
    known: not read (the counters of a connection could not be), or with no meaning for
    the sample (rates, opened and closed of a first sample, or of a dump's only one).
    """

    pid: int
    comm: str
    #: TCP connections it holds (those whose counters could not be read too), and UDP sockets.
    tcp: int
    udp: int
    #: Cumulative bytes of the TCP connections it holds now (tcpi_bytes_acked, _received);
    #: None if the counters of one of them could not be read.
    sent: int | None
    received: int | None
    #: Bytes per second over the interval, from connections seen in both samples (None
    #: for the first sample, on a dump, or if the counters of one could not be read).
    sent_rate: float | None
    received_rate: float | None
    #: TCP connections that appeared since the last sample, and that went away (None
    #: for the first sample, or on a dump).
    opened: int | None
    closed: int | None
    #: UDP: bytes waiting in its sockets' receive queues, and datagrams dropped (None if
    #: one of its sockets' could not be read).
    udp_queued: int | None
    udp_drops: int | None


def holder(owners: dict[int, list[Owner]], s: Socket) -> Owner | None:
    """The process a socket is counted for: its first holder in ss's order (highest pid)."""
    holders = owners.get(s.address)
    return holders[0] if holders else None


def bytes_since(key: ConnKey, counters: TcpCounters, before: Sample) -> tuple[int, int, bool] | None:
    """
    A TCP connection's bytes sent (acknowledged) and received since ``before``, and whether
    it is new since then: not in ``before``, or its address reused by another connection
    (counters smaller than they were), all of its bytes being the interval's. None if
    ``before`` holds it but could not read its counters: its bytes since are not known.
    """
    old = before.connections.get(key)
    if old is None:
        return counters.bytes_acked, counters.bytes_received, True
    if old.counters is None:
        return None
    if old.counters.bytes_acked > counters.bytes_acked:
        return counters.bytes_acked, counters.bytes_received, True
    return (counters.bytes_acked - old.counters.bytes_acked,
            counters.bytes_received - old.counters.bytes_received, False)


@dataclass
class _Tally:
    pid: int
    comm: str
    tcp: int = 0
    udp: int = 0
    sent: int = 0
    received: int = 0
    sent_delta: int = 0
    received_delta: int = 0
    opened: int = 0
    closed: int = 0
    udp_queued: int = 0
    udp_drops: int = 0
    #: TCP connections whose counters could not be read, now or (for rates) in the sample
    #: before; UDP sockets whose queues could not be read.
    tcp_unread: int = 0
    unrated: int = 0
    udp_unread: int = 0


def per_process(now: Sample, before: Sample | None) -> list[ProcessTraffic]:
    """
    Each process's traffic: the connections it holds in ``now``, its bytes, and with a
    ``before`` sample its rates and opened/closed counts; sorted by rate, then bytes.
    A socket no process holds (closed by its process, still sending) counts for pid 0.
    Sent bytes are those the peer acknowledged (tcpi_bytes_acked); received, those that
    arrived in order (tcpi_bytes_received).
    """
    tallies: dict[int, _Tally] = {}
    interval = now.when - before.when if before is not None else 0.0

    def tally(owner: Owner | None) -> _Tally:
        pid, comm = (owner.pid, owner.comm) if owner is not None else (0, "(no process)")
        if pid not in tallies:
            tallies[pid] = _Tally(pid, comm)
        return tallies[pid]

    for key, conn in now.connections.items():
        t = tally(holder(now.owners, conn.sock))
        if conn.sock.proto != "tcp":
            t.udp += 1
            if conn.udp is None:
                t.udp_unread += 1
            else:
                t.udp_queued += conn.udp[0]
                t.udp_drops += conn.udp[1]
            continue
        t.tcp += 1
        c = conn.counters
        if c is None:
            t.tcp_unread += 1
            t.opened += before is not None and key not in before.connections
            continue
        t.sent += c.bytes_acked
        t.received += c.bytes_received
        if before is None:
            continue
        since = bytes_since(key, c, before)
        if since is None:
            t.unrated += 1
            continue
        sent, received, new = since
        t.opened += new
        t.sent_delta += sent
        t.received_delta += received
    if before is not None:
        for key, conn in before.connections.items():
            if conn.sock.proto == "tcp" and key not in now.connections:
                tally(holder(before.owners, conn.sock)).closed += 1
    return _sorted([_traffic(t, before is not None, interval) for t in tallies.values()])


def _traffic(t: _Tally, paired: bool, interval: float) -> ProcessTraffic:
    """A process's tally as :class:`ProcessTraffic`: None where a value is not known."""
    read = not t.tcp_unread
    rated = paired and interval > 0 and read and not t.unrated
    udp_read = not t.udp_unread
    return ProcessTraffic(
        t.pid, t.comm, t.tcp, t.udp,
        t.sent if read else None, t.received if read else None,
        t.sent_delta / interval if rated else None, t.received_delta / interval if rated else None,
        t.opened if paired else None, t.closed if paired else None,
        t.udp_queued if udp_read else None, t.udp_drops if udp_read else None)


def _sorted(rows: list[ProcessTraffic]) -> list[ProcessTraffic]:
    """The busiest first: by rate, then by bytes (what is not known counts as 0), then pid."""
    rows.sort(key=lambda p: (-((p.sent_rate or 0) + (p.received_rate or 0)),
                             -((p.sent or 0) + (p.received or 0)), p.pid))
    return rows


def tcp_opened(now: Sample, before: Sample | None) -> int | None:
    """TCP connections the namespaces opened between two samples, seen or not (the TCP MIB)."""
    if before is None or now.tcp_opens is None or before.tcp_opens is None:
        return None
    return now.tcp_opens - before.tcp_opens
