"""--prometheus: a sample (:mod:`drgn_ss.fleet`) as metrics in Prometheus' text exposition
format, made and written by the maintained client library (prometheus_client: HELP and
TYPE lines, label escaping, and a file written whole and renamed into place, as the
node_exporter's textfile collector needs).

Every metric is per namespace (``netns``: its inode number), and per process where it is
about processes (``container``, ``process``, ``pid``; the top N only, the rest in an
``other`` bucket), or per listener (``local``): never per connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from drgn_ss.fleet import FleetSample, Holder, TrafficLedger, other_holder, ranked_holders, socket_counts
from drgn_ss.kernel.strings import escape_name
from drgn_ss.output.text import STATE_NAMES, endpoint_text
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

__all__ = ["METRIC_NAMES", "PREFIX", "PROCESS_LABELS", "metric_families", "registry_of"]

#: Every metric's name starts so.
PREFIX = "drgn_ss_"
Family = GaugeMetricFamily | CounterMetricFamily
#: The labels that name a process.
PROCESS_LABELS = ("netns", "container", "process", "pid")
#: Each metric: (name less the prefix, type, help, labels).
_METRICS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("sockets", "gauge", "Sockets by family (ss's netid) and state, per process.",
     (*PROCESS_LABELS, "netid", "state")),
    ("listen_queue_length", "gauge", "Connections waiting for accept() on a TCP listener.",
     (*PROCESS_LABELS, "local")),
    ("listen_queue_max", "gauge", "The most a TCP listener's accept queue may hold (its backlog).",
     (*PROCESS_LABELS, "local")),
    ("listen_syn_queue_length", "gauge", "Requests in SYN-RECV on a TCP listener.",
     (*PROCESS_LABELS, "local")),
    ("listen_drops", "counter", "SYNs and ACKs a TCP listener dropped (sk_drops).",
     (*PROCESS_LABELS, "local")),
    ("netns_listen_overflows", "counter", "The namespace's ListenOverflows (TcpExt).", ("netns",)),
    ("netns_listen_drops", "counter", "The namespace's ListenDrops (TcpExt).", ("netns",)),
    ("time_wait", "gauge", "TIME-WAIT sockets of the namespace (sockstat's tw).", ("netns",)),
    ("time_wait_limit", "gauge", "The namespace's net.ipv4.tcp_max_tw_buckets.", ("netns",)),
    ("orphans", "gauge", "TCP sockets no process holds, still closing (host-wide).", ()),
    ("orphans_limit", "gauge", "net.ipv4.tcp_max_orphans.", ()),
    ("memory_pages", "gauge", "Pages of socket memory the protocol has allocated (host-wide).", ("proto",)),
    ("memory_limit_pages", "gauge", "The protocol's tcp_mem/udp_mem thresholds, in pages.",
     ("proto", "level")),
    ("memory_pressure", "gauge", "1 while the kernel holds the protocol under memory pressure.", ("proto",)),
    ("process_sent_bytes", "counter", "Bytes a process's TCP connections sent that the peer acknowledged.",
     PROCESS_LABELS),
    ("process_received_bytes", "counter", "Bytes a process's TCP connections received in order.",
     PROCESS_LABELS),
    ("netns_ip_bytes", "counter", "IP bytes the namespace moved, headers included (IPv4 and IPv6).",
     ("netns", "direction")),
    ("netns_unattributed_bytes", "counter",
     "IP bytes the namespace moved past those of the connections sampled: connections too short "
     "to be seen, datagrams, headers.", ("netns", "direction")),
    ("sample_seconds", "gauge", "Seconds the last sample took.", ()),
    ("sample_partial", "gauge", "1 if the last sample could not read all it should have.", ()),
)
#: Every metric's full name, as it appears in the file (counters with ``_total``).
METRIC_NAMES = tuple(PREFIX + name + ("_total" if kind == "counter" else "") for name, kind, _, _ in _METRICS)


def metric_families(sample: FleetSample, ledger: TrafficLedger, top: int, sample_s: float,
                    constant: dict[str, str] | None = None) -> list[Family]:
    """Every metric of a sample, with the ledger's counters; ``constant`` labels on each."""
    constant = constant or {}
    made = {name: _family(name, kind, text, (*constant, *labels)) for name, kind, text, labels in _METRICS}
    extra = list(constant.values())

    def add(name: str, labels: Sequence[str], value: float | None) -> None:
        if value is not None:
            made[name].add_metric([*extra, *labels], value)

    chosen = ranked_holders(sample, top)
    shown = {h: h if not h.pid or h in chosen else other_holder(h.netns)
             for h in set(sample.holders.values())}
    counts: dict[tuple[Holder, str, int], int] = {}
    for (h, netid, state), n in socket_counts(sample).items():
        key = (shown[h], netid, state)
        counts[key] = counts.get(key, 0) + n
    for (h, netid, state), n in sorted(counts.items()):
        add("sockets", [*_process(h), netid, _state(state)], n)
    _listeners(sample, shown, add)
    _namespaces(sample, add)
    for h, (sent, received) in sorted(ledger.totals.items()):
        add("process_sent_bytes", _process(h), sent)
        add("process_received_bytes", _process(h), received)
    add("sample_seconds", [], round(sample_s, 6))
    add("sample_partial", [], 1 if sample.errors else 0)
    for inum, moved in sorted(ledger.octets.items()):
        lost = ledger.unattributed.get(inum, [0, 0])
        for i, direction in enumerate(("in", "out")):
            add("netns_ip_bytes", [str(inum), direction], moved[i])
            add("netns_unattributed_bytes", [str(inum), direction], lost[i])
    return [family for family in made.values() if family.samples]


def _family(name: str, kind: str, text: str, labels: Sequence[str]) -> Family:
    cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
    return cls(PREFIX + name, text, labels=list(labels))


def _process(h: Holder) -> list[str]:
    """A holder's label values, names escaped as ss -p escapes them (no control characters)."""
    return [str(h.netns), escape_name(h.container), escape_name(h.comm), str(h.pid) if h.pid else ""]


def _state(state: int) -> str:
    return STATE_NAMES[state] if 0 <= state < len(STATE_NAMES) else str(state)


def _listeners(sample: FleetSample, shown: dict[Holder, Holder], add: Any) -> None:
    """Each listener's queues; listeners of one label set (SO_REUSEPORT, the other bucket) summed."""
    rows: dict[tuple[str, ...], list[int]] = {}
    for s in sample.socks:
        q = sample.queues.get(s.address)
        if q is None:
            continue
        local = endpoint_text(s.src, s.sport, s.family, s.v6only)
        row = rows.setdefault((*_process(shown[sample.holders[s.address]]), local), [0, 0, 0, 0])
        for i, value in enumerate((q.accept_len, q.accept_max, len(q.syn), q.drops)):
            row[i] += value
    for labels, row in rows.items():
        for name, value in zip(("listen_queue_length", "listen_queue_max", "listen_syn_queue_length",
                                "listen_drops"), row):
            add(name, labels, value)


def _namespaces(sample: FleetSample, add: Any) -> None:
    for ns in sample.namespaces:
        inum = [str(ns.inum)]
        add("time_wait", inum, ns.summary.tcp_tws)
        add("time_wait_limit", inum, ns.limits.max_tw_buckets)
        add("netns_listen_overflows", inum, ns.limits.listen_overflows)
        add("netns_listen_drops", inum, ns.limits.listen_drops)
    orphans = [ns.summary.tcp_orphans for ns in sample.namespaces if ns.summary.tcp_orphans is not None]
    add("orphans", [], orphans[0] if orphans else None)
    add("orphans_limit", [], sample.host.max_orphans)
    for proto, mem in (("tcp", sample.host.tcp_mem), ("udp", sample.host.udp_mem)):
        add("memory_pages", [proto], mem.allocated)
        for level in ("min", "pressure", "max"):
            add("memory_limit_pages", [proto, level], getattr(mem, level))
        if mem.under_pressure is not None:
            add("memory_pressure", [proto], int(mem.under_pressure))


class _Families(Collector):
    def __init__(self, families: Iterable[Family]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Family]:
        return iter(self.families)


def registry_of(families: Iterable[Family]) -> CollectorRegistry:
    """A registry that holds ``families`` (ValueError if two share a name)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Families(families))
    return registry
