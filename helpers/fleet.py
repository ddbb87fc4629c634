"""What a fleet's monitoring agents ingest: one moment of a kernel's sockets, per process and
per listener (never per connection), and per-process traffic as counters that only grow.

:func:`fleet_sample` reads every socket of the namespaces with its holder, each TCP
listener's queues, each TCP connection's byte counters, each namespace's IP octet counters
and TIME-WAIT count against its limit, and the host's orphans and socket memory against
theirs. :class:`TrafficLedger` turns successive samples into counters: each connection's
bytes since the last sample go to its process (the connections a process holds come and
go; its counter does not fall when one closes), and each namespace's IP octets that no
connection seen accounts for (connections that opened and closed between two samples,
datagrams, headers) to the namespace's unattributed counter. The Prometheus and Zabbix
output (:mod:`drgn_ss.output.metrics`, :mod:`drgn_ss.output.zabbix`) format these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from drgn import FaultError, Program
from drgn_ss.kernel.clock import jiffies
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.namespaces import netns_inode
from drgn_ss.owners import OwnerMap, subflow_owners
from drgn_ss.sockets.counters import PerCpu, SockStat, ip_octets, sockstat_counts
from drgn_ss.sockets.limits import HostLimits, NetLimits, host_limits, net_limits
from drgn_ss.sockets.queues import ListenerQueues, listener_queues
from drgn_ss.sockets.record import TCP_LISTEN, Socket
from drgn_ss.traffic import ConnKey, TcpCounters, conn_key, tcp_counters

__all__ = [
    "NO_PROCESS", "OTHER", "FleetSample", "Holder", "NamespaceRow", "TrafficLedger", "fleet_sample",
    "holder_of", "other_holder", "ranked_holders", "socket_counts",
]

#: The command name of what holds sockets no process holds (TIME-WAIT, orphans, kernel
#: sockets), and of the bucket past the top N processes.
NO_PROCESS = "(no process)"
OTHER = "other"


class Holder(NamedTuple):
    """Who a socket is counted for: a process (pid 0: none, or the other bucket) in a namespace."""

    netns: int
    #: What the process runs in (a container, pod or unit, as ``--containers`` says), or "".
    container: str
    comm: str
    pid: int


class NamespaceRow(NamedTuple):
    """One network namespace's counts and limits (None: not readable)."""

    inum: int
    summary: SockStat
    limits: NetLimits
    #: IP bytes in and out (IPv4 and IPv6, headers included).
    ip_octets: tuple[int, int] | None


class FleetSample(NamedTuple):
    """One moment of a kernel, as the agents' output needs it."""

    #: The kernel's jiffies when it was read (a later sample of the same boot has more).
    jiffies: int
    socks: list[Socket]
    #: ``struct sock`` address -> its holder (its first holder in ss's order).
    holders: dict[int, Holder]
    #: TCP listeners' queues by ``struct sock`` address.
    queues: dict[int, ListenerQueues]
    counters: dict[int, TcpCounters]
    namespaces: list[NamespaceRow]
    host: HostLimits
    errors: WalkErrors


def fleet_sample(prog: Program, nets: Sequence[int], owners: OwnerMap, owners_by: str,
                 runs_in: dict[int, tuple[str, dict[str, Any]]], errors: WalkErrors,
                 tables: Sequence[str], traffic: bool = True) -> FleetSample:
    """
    Read one sample of the namespaces ``nets`` (``struct net *``): the sockets of ``tables``
    (ss's netids) with their holders from ``owners`` (:func:`~drgn_ss.owners.socket_owners`)
    and what each process runs in (``runs_in``: pid -> (text, fields)). ``traffic``: read
    each TCP connection's byte counters (one more read a socket; only the ledger uses them).
    """
    from drgn_ss.sockets.families import family_sockets

    now = jiffies(prog)
    socks = family_sockets(prog, nets, tables, True, True, errors, inodes=owners_by == "ino", cgroups=False)
    if owners_by == "sock":  # an MPTCP subflow is held as its MPTCP socket is (ss -p's users)
        subflow_owners(prog, [(s.address, s.socket) for s in socks if s.proto == "tcp"], owners)
    holders = {s.address: holder_of(s, owners, owners_by, runs_in) for s in socks}
    listeners = [s for s in socks if s.proto == "tcp" and s.state == TCP_LISTEN]
    requests = [s for s in socks if s.kind == "request"]
    queues = listener_queues(prog, listeners, requests, errors) if listeners else {}
    counters = tcp_counters(prog, socks, errors) if traffic else {}
    pcpu = PerCpu(prog)
    namespaces = []
    for net in nets:
        try:
            inum = netns_inode(prog, net)
        except FaultError as e:  # a namespace a dump lost: its sockets were not listed either
            tolerate(errors, "namespaces", e)
            continue
        try:
            octets: tuple[int, int] | None = ip_octets(prog, net, pcpu)
        except FaultError as e:
            tolerate(errors, "counters", e)
            octets = None
        namespaces.append(NamespaceRow(inum, sockstat_counts(prog, net, errors),
                                       net_limits(prog, net, errors), octets))
    return FleetSample(now, socks, holders, queues, counters, namespaces, host_limits(prog, errors), errors)


def holder_of(s: Socket, owners: OwnerMap, owners_by: str,
              runs_in: dict[int, tuple[str, dict[str, Any]]]) -> Holder:
    """A socket's holder: its first holder in ss's order, or :data:`NO_PROCESS`."""
    found = owners.get(s.ino if owners_by == "ino" else s.address)
    if not found:
        return Holder(s.netns, "", NO_PROCESS, 0)
    first = found[0]
    place = runs_in.get(first.pid)
    return Holder(s.netns, place[0] if place else "", first.comm, first.pid)


def socket_counts(sample: FleetSample) -> dict[tuple[Holder, str, int], int]:
    """Sockets by (holder, netid, state number)."""
    counts: dict[tuple[Holder, str, int], int] = {}
    for s in sample.socks:
        key = (sample.holders[s.address], s.proto, s.state)
        counts[key] = counts.get(key, 0) + 1
    return counts


def ranked_holders(sample: FleetSample, top: int) -> set[Holder]:
    """The ``top`` processes holding the most sockets (ties: lower pid first); never NO_PROCESS."""
    per: dict[Holder, int] = {}
    for h in sample.holders.values():
        if h.pid:
            per[h] = per.get(h, 0) + 1
    ranked = sorted(per, key=lambda h: (-per[h], h.pid, h.netns))
    return set(ranked[:top])


def other_holder(netns: int) -> Holder:
    """The bucket of a namespace's processes past the top N."""
    return Holder(netns, "", OTHER, 0)


class TrafficLedger:
    """
    Per-process bytes as counters across samples of one running kernel (one boot).

    Each TCP connection's bytes since the last sample (``bytes_acked`` sent,
    ``bytes_received`` received: tcp_info's) go to the process holding it now; a connection
    new since then counts all of its bytes, the interval being its whole life. At most
    ``top`` processes have counters of their own, kept while they hold sockets; the bytes
    of the rest go to their namespace's ``other`` counter, so that no counter ever falls
    and the sum over a namespace's counters is every byte attributed. A namespace's IP
    octets moved in an interval, less those attributed, go to its unattributed counter.
    """

    #: The state's format (:meth:`state`): bump when it changes.
    FORMAT = 1

    def __init__(self, release: str, top: int) -> None:
        self.release = release
        self.top = top
        self._reset()

    def _reset(self) -> None:
        self.jiffies = 0
        #: Each connection's counters at the last sample, and whom it counted for.
        self.conns: dict[ConnKey, tuple[int, int, Holder]] = {}
        #: Holder (a process, or a namespace's other bucket) -> [sent, received].
        self.totals: dict[Holder, list[int]] = {}
        #: Namespace inode -> [ip in, ip out] at the last sample.
        self.octets: dict[int, list[int]] = {}
        #: Namespace inode -> [unattributed in, unattributed out].
        self.unattributed: dict[int, list[int]] = {}
        #: Samples added.
        self.samples = 0

    def add(self, sample: FleetSample) -> None:
        """Count ``sample``'s bytes since the last sample; a kernel booted since starts over."""
        if sample.jiffies < self.jiffies:
            self._reset()
        self.jiffies = sample.jiffies
        present = {h for h in sample.holders.values() if h.pid}
        for h in [h for h in self.totals if h.pid and h not in present]:
            del self.totals[h]  # its process holds no socket now: its counter ends
        attributed: dict[int, list[int]] = {}
        conns: dict[ConnKey, tuple[int, int, Holder]] = {}
        fresh = sorted((s for s in sample.socks if s.address in sample.counters),
                       key=lambda s: -sum(sample.counters[s.address][1:3]))
        for s in fresh:
            c = sample.counters[s.address]
            key = conn_key(s)
            old = self.conns.get(key)
            sent, received = c.bytes_acked, c.bytes_received
            if old is not None and old[0] <= sent and old[1] <= received:
                sent, received = sent - old[0], received - old[1]
            to = self._counted_for(sample.holders[s.address])
            total = self.totals.setdefault(to, [0, 0])
            total[0] += sent
            total[1] += received
            both = attributed.setdefault(s.netns, [0, 0])
            both[0] += received
            both[1] += sent
            conns[key] = (c.bytes_acked, c.bytes_received, to)
        self.conns = conns
        self._add_octets(sample, attributed)
        self.samples += 1

    def _counted_for(self, h: Holder) -> Holder:
        """Where a process's bytes go: its own counter while it is among the top, else other."""
        if not h.pid or h in self.totals:
            return h
        if sum(1 for k in self.totals if k.pid) < self.top:
            self.totals[h] = [0, 0]
            return h
        return other_holder(h.netns)

    def _add_octets(self, sample: FleetSample, attributed: dict[int, list[int]]) -> None:
        for ns in sample.namespaces:
            if ns.ip_octets is None:
                continue
            old = self.octets.get(ns.inum)
            self.octets[ns.inum] = list(ns.ip_octets)
            lost = self.unattributed.setdefault(ns.inum, [0, 0])
            if old is None:
                continue  # a first sample: the bytes before it are not the interval's
            seen = attributed.get(ns.inum, [0, 0])
            for i in (0, 1):
                moved = ns.ip_octets[i] - old[i]
                lost[i] += max(moved - seen[i], 0) if moved >= 0 else 0

    def state(self) -> dict[str, Any]:
        """The ledger as JSON-ready data, for the next run (:meth:`from_state`)."""
        holders = list({*self.totals, *(v[2] for v in self.conns.values())})
        index = {h: i for i, h in enumerate(holders)}
        return {
            "format": self.FORMAT, "release": self.release, "top": self.top, "jiffies": self.jiffies,
            "samples": self.samples, "holders": [list(h) for h in holders],
            "totals": [[index[h], *v] for h, v in self.totals.items()],
            "conns": [[k[0], k[1], k[2].hex(), k[3], k[4].hex(), k[5], v[0], v[1], index[v[2]]]
                      for k, v in self.conns.items()],
            "octets": {str(k): v for k, v in self.octets.items()},
            "unattributed": {str(k): v for k, v in self.unattributed.items()},
        }

    @classmethod
    def from_state(cls, data: Any, release: str, top: int) -> TrafficLedger:
        """
        A ledger from :meth:`state`'s data, checked whole: a state of another kernel, top
        or format starts over (ValueError: what was wrong).
        """
        ledger = cls(release, top)
        if not isinstance(data, dict) or data.get("format") != cls.FORMAT:
            raise ValueError("not a state of this version")
        if data.get("release") != release or data.get("top") != top:
            raise ValueError("a state of another kernel or --prometheus-top")
        try:
            holders = [Holder(_uint(h[0]), str(h[1]), str(h[2]), _uint(h[3])) for h in data["holders"]]
            ledger.jiffies, ledger.samples = _uint(data["jiffies"]), _uint(data["samples"])
            ledger.totals = {holders[_uint(t[0])]: [_uint(t[1]), _uint(t[2])] for t in data["totals"]}
            ledger.conns = {(_uint(c[0]), str(c[1]), bytes.fromhex(c[2]), _uint(c[3]), bytes.fromhex(c[4]),
                             _uint(c[5])): (_uint(c[6]), _uint(c[7]), holders[_uint(c[8])])
                            for c in data["conns"]}
            ledger.octets = {int(k): [_uint(v[0]), _uint(v[1])] for k, v in data["octets"].items()}
            ledger.unattributed = {int(k): [_uint(v[0]), _uint(v[1])]
                                   for k, v in data["unattributed"].items()}
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"damaged ({type(e).__name__})") from None
        return ledger


def _uint(value: Any) -> int:
    """A non-negative integer of a state file, or ValueError."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
        raise ValueError("not a count")
    return value
