"""What is wrong with a host's sockets: the triage report's findings, worked out from one
listing's records and what the kernel holds them to (:func:`triage`).

Everything here is computed from data already read (:class:`ReportInput`): the records of
every family in the namespaces asked about, their holders, their memory (``-m``),
``tcp_info`` (``-i``), listeners' queues (:mod:`drgn_ss.sockets.queues`), TCP sockets' ages
(:mod:`drgn_ss.sockets.ages`) and the limits (:mod:`drgn_ss.sockets.limits`). The result is
plain data; :mod:`drgn_ss.output.report` prints it as text or JSON.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

from drgn_ss.owners import Owner, OwnerMap
from drgn_ss.sockets.ages import SocketAges
from drgn_ss.sockets.counters import SockStat
from drgn_ss.sockets.limits import HostLimits, NetLimits
from drgn_ss.sockets.meminfo import SKMEM_FIELDS
from drgn_ss.sockets.queues import ListenerQueues
from drgn_ss.sockets.record import (
    AF_INET,
    AF_INET6,
    TCP_CLOSE_WAIT,
    TCP_CLOSING,
    TCP_ESTABLISHED,
    TCP_FIN_WAIT1,
    TCP_FIN_WAIT2,
    TCP_LAST_ACK,
    TCP_LISTEN,
    TCP_SYN_RECV,
    TCP_SYN_SENT,
    TCP_TIME_WAIT,
    Socket,
)
from drgn_ss.sockets.tcpinfo import TcpInfo

__all__ = [
    "DEFAULT_THRESHOLDS", "Finding", "NamespaceFacts", "ProcessTotals", "Report", "ReportInput", "Thresholds",
    "holders", "socket_memory", "triage",
]

#: How many sockets each "largest", "oldest" and "now" list keeps.
TOP = 10
_RMEM, _WMEM_QUEUED, _FWD_ALLOC = (SKMEM_FIELDS.index(name)
                                   for name in ("rmem_alloc", "wmem_queued", "fwd_alloc"))


class Thresholds(NamedTuple):
    """When a finding is a warning (``--warn-at NAME=VALUE``)."""

    #: A CLOSE-WAIT socket older than this (ms): its application does not close.
    close_wait_age_ms: int = 60_000
    #: Orphans, TIME-WAIT sockets, one destination's local ports: this share of the limit.
    orphans: float = 0.8
    time_wait: float = 0.8
    port_use: float = 0.8


DEFAULT_THRESHOLDS = Thresholds()


class NamespaceFacts(NamedTuple):
    """What a report needs of one network namespace besides its sockets."""

    inum: int
    limits: NetLimits
    port_range: tuple[int, int]
    summary: SockStat


class ReportInput(NamedTuple):
    """One listing's records and what was read about them (each by socket address)."""

    socks: Sequence[Socket]
    owners: OwnerMap
    #: What ``owners`` is keyed by: "sock" (addresses) or "ino" (inode numbers).
    owners_by: str
    skmem: dict[int, tuple[int, ...]]
    tcp_info: dict[int, TcpInfo]
    queues: dict[int, ListenerQueues]
    ages: dict[int, SocketAges]
    host: HostLimits
    namespaces: Sequence[NamespaceFacts]
    #: --containers: what each pid runs in (as text and as JSON), else None.
    runs_in: dict[int, tuple[str, dict[str, Any]]] | None = None


class ProcessTotals(NamedTuple):
    """One process's sockets: counts by netid and state, queue sums, memory."""

    pid: int
    comm: str
    sockets: int
    #: (netid, state number) -> count
    states: dict[tuple[str, int], int]
    recv_q: int
    send_q: int
    memory: int


class Finding(NamedTuple):
    """A threshold crossed: what, the numbers, and the sockets concerned (with their holders)."""

    kind: str
    values: dict[str, Any]
    socks: tuple[Socket, ...]


class Report(NamedTuple):
    """The triage report's findings (see :func:`triage`)."""

    input: ReportInput
    #: (netid, state) -> count, over the namespaces
    totals: dict[tuple[str, int], int]
    processes: list[ProcessTotals]
    #: Every CLOSE-WAIT socket with its age (None: unknown), oldest first.
    close_wait: list[tuple[Socket, int | None]]
    orphans: int | None
    #: Each namespace's TIME-WAIT sockets (by inode number; 0 for none)
    time_wait_by_netns: dict[int, int]
    #: (family, peer address, peer port) -> TIME-WAIT sockets to it, most first
    time_wait_by_peer: list[tuple[tuple[int, bytes, int], int]]
    #: (family, peer address, peer port, netns), the local ports in that namespace's range
    #: used to it, and the range (low, high); the most used first
    port_use: list[tuple[tuple[int, bytes, int, int], int, tuple[int, int]]]
    #: The sockets holding the most memory (bytes), most first
    largest_memory: list[tuple[Socket, int]]
    #: Listeners whose queues were read, the fullest first
    listeners: list[tuple[Socket, ListenerQueues]]
    #: Connections with the most queued (Recv-Q + Send-Q), most first
    largest_queues: list[Socket]
    #: TCP sockets retransmitting now (the most backed off first), and the most total_retrans
    retransmitting: list[tuple[Socket, TcpInfo]]
    most_retransmits: list[tuple[Socket, TcpInfo]]
    warnings: list[Finding]


def socket_memory(skmem: tuple[int, ...]) -> int:
    """
    The bytes a socket has charged against its protocol's ``*_mem``: received, queued to
    send, and reserved ahead (``sk_forward_alloc``, an int: read as a u32, negative never counts).
    """
    forward = skmem[_FWD_ALLOC]
    return skmem[_RMEM] + skmem[_WMEM_QUEUED] + (0 if forward >> 31 else forward)


def holders(data: ReportInput, s: Socket) -> list[Owner]:
    """The processes holding a socket (none for a minisock or a kernel socket)."""
    key = s.address if data.owners_by == "sock" else s.ino
    return data.owners.get(key, []) if key else []


def triage(data: ReportInput, thresholds: Thresholds | None = None) -> Report:
    """The findings of a listing: totals, per process, and what crosses ``thresholds``."""
    socks = data.socks
    tcp = [s for s in socks if s.proto == "tcp"]
    close_wait = sorted(((s, _cw_age(data, s)) for s in tcp if s.state == TCP_CLOSE_WAIT),
                        key=lambda item: -1 if item[1] is None else item[1], reverse=True)
    time_wait = [s for s in tcp if s.kind == "timewait" and s.state == TCP_TIME_WAIT]
    by_peer = Counter((s.family, s.dst, s.dport) for s in time_wait)
    by_netns = Counter(s.netns for s in time_wait)
    memory = sorted(((s, socket_memory(data.skmem[s.address])) for s in socks if s.address in data.skmem),
                    key=lambda item: item[1], reverse=True)
    listeners = sorted(((s, data.queues[s.address]) for s in socks if s.address in data.queues),
                       key=lambda item: _fill(item[1]), reverse=True)
    connected = [s for s in socks if s.state != TCP_LISTEN and s.kind == "full" and (s.recv_q or s.send_q)]
    infos = [(s, data.tcp_info[s.address]) for s in tcp
             if s.address in data.tcp_info and s.state != TCP_LISTEN]
    retransmitting = sorted(((s, i) for s, i in infos if i.retrans or (s.timer == 1 and s.retrans)),
                            key=lambda item: (item[1].backoff, item[1].retrans), reverse=True)
    most = sorted(((s, i) for s, i in infos if i.total_retrans), key=lambda item: item[1].total_retrans,
                  reverse=True)
    report = Report(
        data, Counter((s.proto, s.state) for s in socks), _processes(data), close_wait,
        _orphans(data), {ns.inum: by_netns[ns.inum] for ns in data.namespaces}, by_peer.most_common(),
        _port_use(data, tcp),
        memory[:TOP], listeners, sorted(connected, key=lambda s: s.recv_q + s.send_q, reverse=True)[:TOP],
        retransmitting[:TOP], most[:TOP], [])
    return report._replace(warnings=_warnings(report, thresholds or DEFAULT_THRESHOLDS))


def _orphans(data: ReportInput) -> int | None:
    """TCP's orphans (host-wide: every namespace's summary has the same)."""
    counts = [ns.summary.tcp_orphans for ns in data.namespaces if ns.summary.tcp_orphans is not None]
    return counts[0] if counts else None


def _cw_age(data: ReportInput, s: Socket) -> int | None:
    """A CLOSE-WAIT socket's age: since the peer's last ACK, its FIN unless more came after."""
    ages = data.ages.get(s.address)
    return ages.last_ack_ms if ages is not None else None


def _fill(q: ListenerQueues) -> float:
    """How full a listener's accept queue is (a SYN queue counts as a tie-break)."""
    return q.accept_len / max(q.accept_max, 1) + len(q.syn) / 1e6


def _processes(data: ReportInput) -> list[ProcessTotals]:
    """Per process: its sockets by state, their queues and memory; the most sockets first."""
    totals: dict[int, dict[str, Any]] = {}
    for s in data.socks:
        seen: set[int] = set()
        for owner in holders(data, s):
            if owner.pid in seen:  # one socket on two fds of a process counts once
                continue
            seen.add(owner.pid)
            t = totals.setdefault(owner.pid, {"comm": owner.comm, "sockets": 0, "states": Counter(),
                                              "recv_q": 0, "send_q": 0, "memory": 0})
            t["sockets"] += 1
            t["states"][s.proto, s.state] += 1
            if s.state != TCP_LISTEN:  # a listener's queues are its backlog: no bytes
                t["recv_q"] += s.recv_q
                t["send_q"] += s.send_q
            if s.address in data.skmem:
                t["memory"] += socket_memory(data.skmem[s.address])
    out = [ProcessTotals(pid, t["comm"], t["sockets"], dict(t["states"]), t["recv_q"], t["send_q"],
                         t["memory"]) for pid, t in totals.items()]
    return sorted(out, key=lambda p: (-p.sockets, p.pid))


def _port_use(data: ReportInput, tcp: Sequence[Socket]
              ) -> list[tuple[tuple[int, bytes, int, int], int, tuple[int, int]]]:
    """
    Per destination (and namespace), the local ports in the namespace's ip_local_port_range
    that connections to it use (a port is used once per destination: connect() may reuse it
    for another): what is left before connect() fails with EADDRNOTAVAIL.
    """
    ranges = {ns.inum: ns.port_range for ns in data.namespaces}
    used: dict[tuple[int, bytes, int, int], set[int]] = {}
    for s in tcp:
        if not s.dport or s.family not in (AF_INET, AF_INET6):
            continue
        low, high = ranges.get(s.netns, (1, 0))
        if low <= s.sport <= high and s.state in _CONNECTING_STATES:
            used.setdefault((s.family, s.dst, s.dport, s.netns), set()).add(s.sport)
    return sorted(((key, len(ports), ranges[key[3]]) for key, ports in used.items()),
                  key=lambda item: item[1], reverse=True)


#: States that hold a local port against a destination: a connection's, until it is closed.
_CONNECTING_STATES = frozenset({TCP_ESTABLISHED, TCP_SYN_SENT, TCP_SYN_RECV, TCP_FIN_WAIT1, TCP_FIN_WAIT2,
                                TCP_TIME_WAIT, TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_CLOSING})


def _warnings(report: Report, t: Thresholds) -> list[Finding]:
    """One finding per threshold crossed, naming the sockets concerned."""
    return [*_queue_warnings(report, t), *_limit_warnings(report, t), *_memory_warnings(report),
            *_port_warnings(report, t)]


def _queue_warnings(report: Report, t: Thresholds) -> list[Finding]:
    """A full accept queue; CLOSE-WAIT sockets older than the threshold."""
    out = [Finding("accept_queue_full", {"len": q.accept_len, "max": q.accept_max, "drops": q.drops}, (s,))
           for s, q in report.listeners if q.accept_max and q.accept_len >= q.accept_max]
    old = [(s, age) for s, age in report.close_wait if age is not None and age > t.close_wait_age_ms]
    if old:
        out.append(Finding("close_wait_old", {"count": len(old), "oldest_ms": old[0][1],
                                              "limit_ms": t.close_wait_age_ms},
                           tuple(s for s, _ in old[:TOP])))
    return out


def _limit_warnings(report: Report, t: Thresholds) -> list[Finding]:
    """Orphans, and each namespace's TIME-WAIT sockets, near their limits."""
    data = report.input
    out = []
    limit = data.host.max_orphans
    if report.orphans is not None and limit and report.orphans >= t.orphans * limit:
        out.append(Finding("orphans", {"count": report.orphans, "max": limit}, ()))
    for ns in data.namespaces:
        count = report.time_wait_by_netns[ns.inum]
        limit = ns.limits.max_tw_buckets
        if limit and count >= t.time_wait * limit:
            out.append(Finding("time_wait", {"count": count, "max": limit, "netns": ns.inum}, ()))
    return out


def _memory_warnings(report: Report) -> list[Finding]:
    """TCP or UDP over its pressure mark, or TCP's pressure flag set: with the largest sockets."""
    out = []
    for name, mem in (("tcp", report.input.host.tcp_mem), ("udp", report.input.host.udp_mem)):
        over = mem.allocated is not None and mem.pressure is not None and mem.allocated >= mem.pressure
        if over or mem.under_pressure:
            largest = tuple(s for s, _ in report.largest_memory if s.proto == name)[:3]
            out.append(Finding("memory_pressure", {"protocol": name, **mem._asdict()}, largest))
    return out


def _port_warnings(report: Report, t: Thresholds) -> list[Finding]:
    """A destination using most of its namespace's local port range."""
    data = report.input
    out = []
    for (family, addr, port, netns), count, (low, high) in report.port_use:
        if count >= t.port_use * (high - low + 1):
            concerned = tuple(s for s in data.socks if s.proto == "tcp" and s.netns == netns
                              and (s.family, s.dst, s.dport) == (family, addr, port))
            out.append(Finding("port_use", {"in_use": count, "range": [low, high], "netns": netns},
                               concerned[:TOP]))
    return out
