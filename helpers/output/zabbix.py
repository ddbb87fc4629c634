"""--zabbix-discovery and --zabbix-get: a sample (:mod:`drgn_ss.fleet`) as the Zabbix agent's
low-level discovery JSON and item values.

Discovery (``{"data": [...]}``, which every Zabbix since 2.0 reads; 4.2+ read the bare
array too): ``listen``, each listening TCP socket and bound unconnected UDP socket;
``connections``, each TCP listener and established TCP connection with its process (the
question this project began with: LISTEN and ESTABLISHED, with the process); ``processes``,
each process holding a socket. Macros: ``{#PROTO}``, ``{#LADDR}``, ``{#LPORT}``, ``{#RADDR}``,
``{#RPORT}``, ``{#STATE}``, ``{#PROC}``, ``{#PID}``, ``{#NETNS}``, as they apply.

Item keys (Zabbix's ``name[param,...]``; an empty or missing parameter matches all):
``sockets[PROTO,STATE]``, ``port[PROTO,LPORT,STATE]``, ``proc[PROC,STATE]``: counts of sockets;
``accept_queue[LPORT]``, ``accept_queue_max[LPORT]``, ``syn_queue[LPORT]``,
``listen_drops[LPORT]``: of the TCP listeners on that port, summed; ``time_wait``,
``time_wait_max``, ``orphans``, ``orphans_max``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence

from drgn_ss.fleet import NO_PROCESS, FleetSample, Holder
from drgn_ss.kernel.strings import escape_name
from drgn_ss.output.text import STATE_NAMES, Formatter
from drgn_ss.sockets.record import TCP_CLOSE, TCP_ESTABLISHED, TCP_LISTEN, Socket

__all__ = ["DISCOVERIES", "ITEM_KEYS", "ZabbixKeyError", "discovery_json", "item_value", "parse_key"]

#: --zabbix-discovery's names.
DISCOVERIES = ("listen", "connections", "processes")
#: --zabbix-get's item names, each with the most parameters it takes.
ITEM_KEYS = {
    "sockets": 2, "port": 3, "proc": 2, "accept_queue": 1, "accept_queue_max": 1, "syn_queue": 1,
    "listen_drops": 1, "time_wait": 0, "time_wait_max": 0, "orphans": 0, "orphans_max": 0,
}
_KEY_RE = re.compile(r"^([a-z_]+)(?:\[([^\[\]]*)\])?$")


class ZabbixKeyError(ValueError):
    """An item key --zabbix-get does not know."""


def parse_key(key: str) -> tuple[str, list[str]]:
    """A key's name and parameters: ``port[tcp,80,]`` -> ("port", ["tcp", "80"]) (trailing empties go)."""
    m = _KEY_RE.match(key.strip())
    if not m or m[1] not in ITEM_KEYS:
        raise ZabbixKeyError(f"--zabbix-get {key}: no such item (known: {', '.join(ITEM_KEYS)})")
    params = [p.strip().strip('"') for p in m[2].split(",")] if m[2] else []
    while params and not params[-1]:
        params.pop()
    if len(params) > ITEM_KEYS[m[1]]:
        raise ZabbixKeyError(f"--zabbix-get {key}: {m[1]} takes at most {ITEM_KEYS[m[1]]} parameters")
    return m[1], params


def _state(s: Socket) -> str:
    return STATE_NAMES[s.state] if 0 <= s.state < len(STATE_NAMES) else str(s.state)


def _addr(s: Socket, remote: bool) -> str:
    """An address as a macro value: no brackets (Zabbix keys take ``::1``, not ``[::1]``)."""
    return Formatter.host(s.dst if remote else s.src, s.family, bool(s.v6only)).strip("[]")


def _row(s: Socket, h: Holder, remote: bool) -> dict[str, str]:
    row = {"{#PROTO}": s.proto, "{#LADDR}": _addr(s, False), "{#LPORT}": str(s.sport)}
    if remote:
        row.update({"{#RADDR}": _addr(s, True), "{#RPORT}": str(s.dport), "{#STATE}": _state(s)})
    row.update({"{#PROC}": escape_name(h.comm) if h.pid else "", "{#PID}": str(h.pid) if h.pid else "",
                "{#NETNS}": str(s.netns)})
    return row


def discovery_json(sample: FleetSample, what: str) -> str:
    """The low-level discovery JSON of ``what`` (one of :data:`DISCOVERIES`)."""
    rows: list[dict[str, str]] = []
    seen: set[tuple[str, ...]] = set()
    for s in sample.socks:
        h = sample.holders[s.address]
        if what == "processes":
            if not h.pid:
                continue
            row = {"{#PROC}": escape_name(h.comm), "{#PID}": str(h.pid), "{#NETNS}": str(h.netns)}
        elif what == "listen":
            if not (s.proto == "tcp" and s.state == TCP_LISTEN or s.proto == "udp" and s.state == TCP_CLOSE):
                continue
            row = _row(s, h, False)
        elif s.proto == "tcp" and s.state in (TCP_LISTEN, TCP_ESTABLISHED) and s.kind == "full":
            row = _row(s, h, True)
        else:
            continue
        key = tuple(row.values())
        if key not in seen:  # a socket of two families' tables, or a process met again
            seen.add(key)
            rows.append(row)
    return json.dumps({"data": rows}, ensure_ascii=True, separators=(",", ":"))


def item_value(sample: FleetSample, name: str, params: Sequence[str]) -> int:
    """The value of an item (:func:`parse_key`'s name and parameters)."""
    p = [*params, "", "", ""]
    if name in ("time_wait", "time_wait_max", "orphans", "orphans_max"):
        return _limit(sample, name)
    if name in ("sockets", "port", "proc"):
        proto, port, state = (p[0], p[1], p[2]) if name == "port" else (p[0], "", p[1])
        if name == "proc":
            proto = ""
        match = _matcher(proto, port, state, p[0] if name == "proc" else "")
        return sum(1 for s in sample.socks if match(s, sample.holders[s.address]))
    total = 0
    for s in sample.socks:
        q = sample.queues.get(s.address)
        if q is None or (p[0] and str(s.sport) != p[0]):
            continue
        total += {"accept_queue": q.accept_len, "accept_queue_max": q.accept_max, "syn_queue": len(q.syn),
                  "listen_drops": q.drops}[name]
    return total


def _matcher(proto: str, port: str, state: str, comm: str) -> Callable[[Socket, Holder], bool]:
    if state and state not in STATE_NAMES:
        raise ZabbixKeyError(f"no such state {state!r} (known: {', '.join(STATE_NAMES[1:])})")
    if port and not port.isdigit():
        raise ZabbixKeyError(f"a port is a number: {port!r}")
    number = STATE_NAMES.index(state) if state else -1

    def match(s: Socket, h: Holder) -> bool:
        return ((not proto or s.proto == proto) and (not port or s.sport == int(port))
                and (number < 0 or s.state == number)
                and (not comm or (h.comm == comm and h.comm != NO_PROCESS)))

    return match


def _limit(sample: FleetSample, name: str) -> int:
    if name == "orphans_max":
        value = sample.host.max_orphans
    elif name == "orphans":
        value = next((n.summary.tcp_orphans for n in sample.namespaces
                      if n.summary.tcp_orphans is not None), None)
    else:
        values = [n.summary.tcp_tws if name == "time_wait" else n.limits.max_tw_buckets
                  for n in sample.namespaces]
        value = None if None in values else sum(v or 0 for v in values)
    if value is None:
        raise ValueError(f"{name}: could not be read")
    return value
