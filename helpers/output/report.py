"""--report: the triage report (:class:`~drgn_ss.report.Report`) as text for a person
(:func:`report_text`) and as one JSON object for a machine (:func:`report_json`).

Every socket is named by its local and peer address as ``ss -n`` shows them, every process
as ``"COMMAND"(pid=PID)``, escaped as in ``users:``; JSON carries the names as the kernel
has them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from drgn_ss.kernel.strings import escape_name, json_name
from drgn_ss.output.cells import age_text
from drgn_ss.output.queues import oldest_age, queue_text
from drgn_ss.output.text import STATE_NAMES, endpoint_text
from drgn_ss.owners import Owner
from drgn_ss.report import Finding, Report, holders
from drgn_ss.sockets.limits import PAGE_SIZE, ProtoMemory
from drgn_ss.sockets.queues import ListenerQueues
from drgn_ss.sockets.record import AF_INET, AF_INET6, Socket
from drgn_ss.sockets.tcpinfo import TcpInfo
from drgn_ss.sockets.unix import AF_UNIX, ss_name

__all__ = ["report_json", "report_text", "warning_text"]


def _state(state: int) -> str:
    return STATE_NAMES[state] if 0 <= state < len(STATE_NAMES) else "UNKNOWN"


def _local(s: Socket) -> str:
    """A socket's local end as ``ss -n`` shows it; a unix socket's name (or ``*``) and inode."""
    if s.family in (AF_INET, AF_INET6):
        return endpoint_text(s.src, s.sport, s.family, s.v6only)
    name = ss_name(s.src).decode("utf-8", "surrogateescape") if s.family == AF_UNIX and s.src else "*"
    return f"{escape_name(name)} {s.sport}"


def _peer(s: Socket) -> str:
    if s.family in (AF_INET, AF_INET6):
        return endpoint_text(s.dst, s.dport, s.family, s.v6only)
    return f"* {s.dport}"


def _peer_key(family: int, addr: bytes, port: int) -> str:
    return endpoint_text(addr, port, family, True)


def _who(owners: Sequence[Owner]) -> str:
    """Processes as ``"COMMAND"(pid=PID)``, each once, or ``no process``."""
    seen: dict[int, str] = {}
    for o in owners:
        seen.setdefault(o.pid, f'"{escape_name(o.comm)}"(pid={o.pid})')
    return ",".join(seen.values()) or "no process"


def _owner_objects(owners: Sequence[Owner]) -> list[dict[str, Any]]:
    return [{"command": json_name(o.comm), "pid": o.pid, "fd": o.fd} for o in owners]


def _named(data: Any, s: Socket) -> str:
    """A socket in a warning: its local end (and its peer's, if it has one), and its processes."""
    peer = f" (peer {_peer(s)})" if s.dport and s.family in (AF_INET, AF_INET6) else ""
    return f"{_local(s)}{peer} {_who(holders(data, s))}"


def warning_text(report: Report, f: Finding) -> str:
    """One warning's line: what crossed which limit, and the sockets and processes concerned."""
    data, v = report.input, f.values
    named = "; ".join(_named(data, s) for s in f.socks)
    if f.kind == "accept_queue_full":
        return (f"accept queue full: {named}: {v['len']}/{v['max']} waiting for accept(), "
                f"{v['drops']} dropped")
    if f.kind == "close_wait_old":
        return (f"{v['count']} CLOSE-WAIT older than {age_text(v['limit_ms'])} "
                f"(oldest {age_text(v['oldest_ms'])}): the application does not close them: {named}")
    if f.kind == "orphans":
        return f"orphaned TCP sockets: {v['count']} of tcp_max_orphans {v['max']}"
    if f.kind == "time_wait":
        peers = [(p, n) for p, n in report.time_wait_by_peer][:3]
        top = ", ".join(f"{_peer_key(*p)} {n}" for p, n in peers)
        return (f"TIME-WAIT sockets: {v['count']} of tcp_max_tw_buckets {v['max']} in netns {v['netns']}"
                f" (most to {top})")
    if f.kind == "memory_pressure":
        state = "under memory pressure" if v["under_pressure"] else "over its pressure mark"
        return (f"{v['protocol'].upper()} {state}: {v['allocated']} pages allocated, {v['protocol']}_mem "
                f"{v['min']} {v['pressure']} {v['max']}" + (f"; largest: {named}" if named else ""))
    low, high = v["range"]
    peer = _peer(f.socks[0]) if f.socks else "?"
    return (f"local ports to {peer}: {v['in_use']} of ip_local_port_range {low}-{high} in use"
            f" (netns {v['netns']}): {_who([o for s in f.socks for o in holders(data, s)])}")


def report_json(report: Report) -> dict[str, Any]:
    """The report as one JSON object (docs/usage.md, "The triage report", names each key)."""
    data = report.input
    limits = {ns.inum: ns.limits for ns in data.namespaces}
    return {
        "netns": [ns.inum for ns in data.namespaces],
        "totals": _totals_json(report),
        "processes": [_process_json(report, p) for p in report.processes],
        **({"containers": _containers_json(report)} if data.runs_in is not None else {}),
        "close_wait": _close_wait_json(report),
        "orphans": {"count": report.orphans, "max": data.host.max_orphans},
        "time_wait": {
            "count": sum(report.time_wait_by_netns.values()),
            "max": data.namespaces[0].limits.max_tw_buckets if len(data.namespaces) == 1 else None,
            "by_netns": [{"netns": inum, "count": report.time_wait_by_netns[inum], "max": lim.max_tw_buckets}
                         for inum, lim in limits.items()],
            "by_peer": [{"peer": _peer_key(*p), "count": n} for p, n in report.time_wait_by_peer],
            "port_use": [{"peer": _peer_key(family, addr, port), "netns": netns, "in_use": n,
                          "range": list(port_range)}
                         for (family, addr, port, netns), n, port_range in report.port_use],
        },
        "memory": {"page_size": PAGE_SIZE, "tcp": _proto_memory(data.host.tcp_mem),
                   "udp": _proto_memory(data.host.udp_mem),
                   "largest": [{**_socket_json(report, s), "bytes": n} for s, n in report.largest_memory]},
        "listeners": {
            "sockets": [{**_socket_json(report, s), **_listener_json(q)} for s, q in report.listeners],
            "counters": [{"netns": inum, "listen_overflows": lim.listen_overflows,
                          "listen_drops": lim.listen_drops} for inum, lim in limits.items()],
        },
        "queues": [_queue_json(report, s) for s in report.largest_queues],
        "retransmits": {"now": [_retrans_json(report, s, i) for s, i in report.retransmitting],
                        "most_total": [_retrans_json(report, s, i) for s, i in report.most_retransmits]},
        "warnings": [warning_text(report, f) for f in report.warnings],
    }


def _socket_json(report: Report, s: Socket) -> dict[str, Any]:
    return {"netid": s.proto, "state": _state(s.state), "local": _local(s), "peer": _peer(s),
            "netns": s.netns, "owners": _owner_objects(holders(report.input, s))}


def _totals_json(report: Report) -> dict[str, Any]:
    by_netid: dict[str, dict[str, int]] = {}
    for (netid, state), n in sorted(report.totals.items()):
        by_netid.setdefault(netid, {})[_state(state)] = n
    return {"sockets": sum(report.totals.values()), "by_netid": by_netid,
            "summary": [{"netns": ns.inum, **ns.summary._asdict()} for ns in report.input.namespaces]}


def _process_json(report: Report, p: Any) -> dict[str, Any]:
    out = {"pid": p.pid, "command": json_name(p.comm), "sockets": p.sockets,
           "states": {f"{netid}:{_state(state)}": n for (netid, state), n in sorted(p.states.items())},
           "recv_q": p.recv_q, "send_q": p.send_q, "memory": p.memory}
    runs_in = report.input.runs_in
    if runs_in is not None:
        out["container"] = runs_in[p.pid][1] if p.pid in runs_in else None
    return out


def _by_container(report: Report) -> dict[str, list[Any]]:
    """--containers: the processes of each container, pod or unit, by its text."""
    runs_in = report.input.runs_in or {}
    out: dict[str, list[Any]] = {}
    for p in report.processes:
        if p.pid in runs_in:
            out.setdefault(runs_in[p.pid][0], []).append(p)
    return out


def _containers_json(report: Report) -> list[dict[str, Any]]:
    """Per container (pod, unit): its processes, their sockets, queues and memory, the most sockets first."""
    runs_in = report.input.runs_in or {}
    out = [{"container": runs_in[procs[0].pid][1], "pids": [p.pid for p in procs],
            "sockets": sum(p.sockets for p in procs), "recv_q": sum(p.recv_q for p in procs),
            "send_q": sum(p.send_q for p in procs), "memory": sum(p.memory for p in procs)}
           for procs in _by_container(report).values()]
    return sorted(out, key=lambda c: -c["sockets"])


def _close_wait_json(report: Report) -> dict[str, Any]:
    per_process: Counter[tuple[int, str]] = Counter()
    for s, _age in report.close_wait:
        for pid, comm in {(o.pid, o.comm) for o in holders(report.input, s)}:
            per_process[pid, comm] += 1
    return {"count": len(report.close_wait),
            "oldest": [{**_socket_json(report, s), "age_ms": age} for s, age in report.close_wait[:10]],
            "by_process": [{"pid": pid, "command": json_name(comm), "count": n}
                           for (pid, comm), n in per_process.most_common()]}


def _proto_memory(m: ProtoMemory) -> dict[str, Any]:
    return {"allocated": m.allocated, "min": m.min, "pressure": m.pressure, "max": m.max,
            "under_pressure": m.under_pressure}


def _listener_json(q: ListenerQueues) -> dict[str, Any]:
    return {"accept_len": q.accept_len, "accept_max": q.accept_max,
            "oldest_accept_ms": oldest_age(q.accept), "syn_len": len(q.syn),
            "oldest_syn_ms": oldest_age(q.syn), "drops": q.drops}


def _queue_json(report: Report, s: Socket) -> dict[str, Any]:
    ages = report.input.ages.get(s.address)
    return {**_socket_json(report, s), "recv_q": s.recv_q, "send_q": s.send_q,
            "oldest_unread_ms": ages.oldest_unread_ms if ages else None,
            "oldest_unacked_ms": ages.oldest_unacked_ms if ages else None}


def _retrans_json(report: Report, s: Socket, i: TcpInfo) -> dict[str, Any]:
    return {**_socket_json(report, s), "retrans": i.retrans, "backoff": i.backoff, "rto_ms": i.rto // 1000,
            "total_retrans": i.total_retrans}


def report_text(report: Report) -> Iterator[str]:
    """The report for a person: each part a heading and aligned lines, the warnings last."""
    data = report.input
    yield f"Network namespaces: {' '.join(str(ns.inum) for ns in data.namespaces)}\n"
    yield from _totals_text(report)
    yield from _processes_text(report)
    yield from _close_wait_text(report)
    yield from _limits_text(report)
    yield from _listeners_text(report)
    yield from _queues_text(report)
    yield "\nWarnings:\n" if report.warnings else "\nWarnings: none\n"
    for f in report.warnings:
        yield f"  {warning_text(report, f)}\n"


def _totals_text(report: Report) -> Iterator[str]:
    from drgn_ss.output.summary import format_summary

    yield f"\nSockets: {sum(report.totals.values())}\n"
    by_netid: dict[str, list[str]] = {}
    for (netid, state), n in sorted(report.totals.items()):
        by_netid.setdefault(netid, []).append(f"{_state(state)} {n}")
    for netid, parts in by_netid.items():
        yield f"  {netid:<6} {', '.join(parts)}\n"
    for ns in report.input.namespaces:
        summary = format_summary(ns.summary).splitlines()
        yield f"\nss -s (netns {ns.inum}): {summary[0]}\n"
        yield from (f"  {line}\n" for line in summary[1:] if line.strip())


def _processes_text(report: Report) -> Iterator[str]:
    if not report.processes:
        return
    yield "\nProcesses (most sockets first):\n"
    yield f"  {'PID':>7} {'SOCKETS':>7} {'RECV-Q':>9} {'SEND-Q':>9} {'MEMORY':>9}  COMMAND, STATES\n"
    for p in report.processes[:20]:
        states = ",".join(f"{netid}:{_state(state)}={n}" for (netid, state), n in sorted(p.states.items()))
        runs_in = (report.input.runs_in or {}).get(p.pid)
        where = f" {runs_in[0]}" if runs_in else ""
        yield (f"  {p.pid:>7} {p.sockets:>7} {p.recv_q:>9} {p.send_q:>9} {p.memory:>9}"
               f"  \"{escape_name(p.comm)}\"{where} {states}\n")
    if len(report.processes) > 20:
        yield f"  ... and {len(report.processes) - 20} more (--json lists them all)\n"
    groups = _by_container(report)
    if groups:
        yield "\nContainers, pods and units:\n"
    for text, procs in sorted(groups.items(), key=lambda item: -sum(p.sockets for p in item[1])):
        pids = ",".join(str(p.pid) for p in procs)
        yield (f"  {sum(p.sockets for p in procs):>7} sockets {sum(p.memory for p in procs):>9} bytes"
               f"  {text} pids {pids}\n")


def _close_wait_text(report: Report) -> Iterator[str]:
    yield f"\nCLOSE-WAIT: {len(report.close_wait)}\n"
    for s, age in report.close_wait[:10]:
        shown = age_text(age) if age is not None else "?"
        yield f"  {shown:>9}  {_local(s)} <- {_peer(s)} {_who(holders(report.input, s))}\n"


def _limits_text(report: Report) -> Iterator[str]:
    data = report.input
    yield f"\nOrphans: {report.orphans} of tcp_max_orphans {data.host.max_orphans}\n"
    for ns in data.namespaces:
        count = report.time_wait_by_netns[ns.inum]
        yield f"TIME-WAIT: {count} of tcp_max_tw_buckets {ns.limits.max_tw_buckets} (netns {ns.inum})\n"
    for p, n in report.time_wait_by_peer[:5]:
        yield f"  {n:>7} to {_peer_key(*p)}\n"
    for (family, addr, port, _netns), n, (low, high) in report.port_use[:5]:
        yield f"Local ports to {_peer_key(family, addr, port)}: {n} of {low}-{high}\n"
    for name, m in (("TCP", data.host.tcp_mem), ("UDP", data.host.udp_mem)):
        flag = {True: ", under pressure", False: "", None: ""}[m.under_pressure]
        yield (f"{name} memory: {m.allocated} pages; {name.lower()}_mem min {m.min}, pressure {m.pressure},"
               f" max {m.max}{flag}\n")
    for s, n in report.largest_memory[:5]:
        yield f"  {n:>9}  {s.proto} {_local(s)} {_peer(s)} {_who(holders(data, s))}\n"


def _listeners_text(report: Report) -> Iterator[str]:
    data = report.input
    yield "\nListeners (fullest first):\n"
    for s, q in report.listeners[:10]:
        yield f"  {s.proto} {_local(s)}{queue_text(q, s.family == AF_UNIX)} {_who(holders(data, s))}\n"
    for ns in data.namespaces:
        yield (f"  ListenOverflows {ns.limits.listen_overflows}, ListenDrops {ns.limits.listen_drops}"
               f" (netns {ns.inum})\n")


def _queues_text(report: Report) -> Iterator[str]:
    data = report.input
    if report.largest_queues:
        yield "\nLargest queues:\n"
    for s in report.largest_queues:
        ages = data.ages.get(s.address)
        unread = ages.oldest_unread_ms if ages else None
        extra = f" oldest_unread={age_text(unread)}" if unread is not None else ""
        yield (f"  {s.proto} {_state(s.state)} recv_q={s.recv_q} send_q={s.send_q}{extra} {_local(s)}"
               f" {_peer(s)} {_who(holders(data, s))}\n")
    if report.retransmitting:
        yield "\nRetransmitting now:\n"
    for s, i in report.retransmitting:
        yield (f"  {_local(s)} {_peer(s)} retrans={i.retrans} backoff={i.backoff} rto={i.rto // 1000}ms"
               f" {_who(holders(data, s))}\n")
    if report.most_retransmits:
        yield "\nMost retransmitted:\n"
    for s, i in report.most_retransmits:
        yield f"  {_local(s)} {_peer(s)} total_retrans={i.total_retrans} {_who(holders(data, s))}\n"
