"""drgn-nethogs' output: the text lines and the JSON of one sample.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from drgn import Program
from drgn_ss.kernel.crash import TIME_FORMAT, dump_time
from drgn_ss.output.text import endpoint_text, escape_name, json_name
from drgn_ss.traffic import ProcessTraffic, Sample, bytes_since, holder, per_process, tcp_opened

__all__ = [
    "Stamp", "connection_lines", "connection_rows", "dump_stamp", "header_line", "host_stamp",
    "process_lines", "sample_json",
]


class Stamp(NamedTuple):
    """When a sample was taken: as the header shows it, and in seconds since the epoch for JSON."""

    text: str
    seconds: float | None


def host_stamp() -> Stamp:
    """Now, by this host's clock (a running kernel's sample): ``HH:MM:SS``, local time."""
    now = time.time()
    return Stamp(time.strftime("%H:%M:%S", time.localtime(now)), now)


def dump_stamp(prog: Program) -> Stamp:
    """
    A dump's time: the kernel's wall clock at the timekeeper's last update before the dump
    (:func:`drgn_ss.kernel.crash.dump_time`, as ``drgn-ss --header`` shows it), ``YYYY-MM-DD
    HH:MM:SS UTC``; ``-`` and None if it cannot be read. Never this host's clock.
    """
    when = dump_time(prog)
    return Stamp("-", None) if when is None else Stamp(when.strftime(TIME_FORMAT), when.timestamp())


def _kib(n: float | None) -> str:
    """Bytes (or bytes per second) in KiB, one decimal; ``-`` if not known."""
    return "-" if n is None else f"{n / 1024:.1f}"


def _count(n: int | None) -> str:
    """A count, ``-`` if not known."""
    return "-" if n is None else str(n)


def process_lines(rows: Sequence[ProcessTraffic]) -> list[str]:
    """The per-process table: rates in KiB/s, totals in KiB (KiB: 1024 bytes); ``-``: not known."""
    lines = [f"{'PID':>7} {'COMMAND':<16} {'SENT KiB/s':>10} {'RECV KiB/s':>10} {'TCP':>5} {'OPENED':>6} "
             f"{'CLOSED':>6} {'SENT KiB':>11} {'RECV KiB':>11} {'UDP':>4} {'UDP QUEUED':>10} {'DROPS':>6}"]
    for r in rows:
        lines.append(f"{r.pid:>7} {escape_name(r.comm):<16} {_kib(r.sent_rate):>10} "
                     f"{_kib(r.received_rate):>10} {r.tcp:>5} {_count(r.opened):>6} {_count(r.closed):>6} "
                     f"{_kib(r.sent):>11} {_kib(r.received):>11} {r.udp:>4} {_count(r.udp_queued):>10} "
                     f"{_count(r.udp_drops):>6}")
    return lines


def connection_rows(now: Sample, before: Sample | None) -> list[dict[str, Any]]:
    """
    One row per TCP connection: its process, ends (as ``ss -n`` shows them: IPv6 in
    brackets), bytes and (with ``before``) rates; None where a value is not known (its
    counters could not be read; no rates without ``before``). The command is as the
    kernel has it (decoded with errors="surrogateescape"): the text escapes it, JSON
    carries it with :func:`json_name`.
    """
    interval = now.when - before.when if before is not None else 0.0
    rows = []
    for key, conn in now.connections.items():
        s = conn.sock
        if s.proto != "tcp":
            continue
        c = conn.counters
        owner = holder(now.owners, s)
        since = bytes_since(key, c, before) if c is not None and before is not None and interval > 0 else None
        rows.append({
            "pid": owner.pid if owner else 0,
            "command": owner.comm if owner else "(no process)",
            "local": endpoint_text(s.src, s.sport, s.family, s.v6only),
            "peer": endpoint_text(s.dst, s.dport, s.family, s.v6only),
            "sent": None if c is None else c.bytes_acked, "received": None if c is None else c.bytes_received,
            "sent_rate": None if since is None else since[0] / interval,
            "received_rate": None if since is None else since[1] / interval,
            "segs_out": None if c is None else c.segs_out, "segs_in": None if c is None else c.segs_in,
        })
    rows.sort(key=_busiest)
    return rows


def _busiest(row: dict[str, Any]) -> tuple[float, int]:
    """The busiest first: by rate, then by bytes (what is not known counts as 0)."""
    return (-((row["sent_rate"] or 0) + (row["received_rate"] or 0)),
            -((row["sent"] or 0) + (row["received"] or 0)))


def connection_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The per-connection table (:func:`connection_rows`), as :func:`process_lines`."""
    width = max([28, *(len(r[end]) for r in rows for end in ("local", "peer"))])
    lines = [f"{'PID':>7} {'COMMAND':<16} {'LOCAL':<{width}} {'PEER':<{width}} {'SENT KiB/s':>10} "
             f"{'RECV KiB/s':>10} {'SENT KiB':>11} {'RECV KiB':>11}"]
    for r in rows:
        lines.append(f"{r['pid']:>7} {escape_name(r['command']):<16} {r['local']:<{width}} "
                     f"{r['peer']:<{width}} {_kib(r['sent_rate']):>10} {_kib(r['received_rate']):>10} "
                     f"{_kib(r['sent']):>11} {_kib(r['received']):>11}")
    return lines


def header_line(stamp: Stamp, now: Sample, before: Sample | None, processes: Sequence[ProcessTraffic]) -> str:
    """
    ``TIME  N sockets, S s interval, O TCP connections opened (K seen: ...)``; on a first
    sample (a dump's only one), ``cumulative`` and ``-`` for what an interval would tell.
    """
    line = f"{stamp.text}  {len(now.connections)} sockets, " + (
        f"{now.start - before.start:.2f} s interval" if before is not None else "cumulative")
    opened = tcp_opened(now, before)
    seen = None if before is None else sum(r.opened or 0 for r in processes)
    line += f", {_count(opened)} TCP connections opened ({_count(seen)} seen"
    known = opened is not None and seen is not None
    return line + (": the rest opened and closed in between)" if known else ")")


def sample_json(stamp: Stamp, now: Sample, before: Sample | None, by: str) -> str:
    """
    One sample as a line of JSON: ``time`` (seconds since the epoch: this host's clock on a
    running kernel, the kernel's on a dump), ``interval_s``, ``rate_s``, ``tcp_opened`` and
    ``processes`` (or ``connections``), bytes in bytes and rates in bytes per second; null
    where a value is not known.
    """
    obj: dict[str, Any] = {"time": stamp.seconds,
                           "interval_s": (now.start - before.start) if before else None,
                           "rate_s": (now.when - before.when) if before else None,
                           "tcp_opened": tcp_opened(now, before)}
    if by == "connection":
        obj["connections"] = [{**r, "command": json_name(r["command"])} for r in connection_rows(now, before)]
    else:
        obj["processes"] = [{**r._asdict(), "comm": json_name(r.comm)} for r in per_process(now, before)]
    return json.dumps(obj)
