"""nethogs from kernel counters: ``drgn scripts/nethogs.py`` (the command line and its output).

Samples every TCP socket's byte counters at an interval (:mod:`drgn_ss.traffic`) and shows,
per process, what it sent and received per second, its connections, and the connections it
opened and closed since the last sample; UDP sockets, which keep no byte counts, show their
receive queues and drops. On a terminal the view refreshes in place (as top); otherwise each
sample is printed as a block of lines, or (``--json``) as one JSON line. On a crash dump
there is one sample, at the dump's own time: cumulative bytes of the connections alive at
the crash, no rates. A value that is not known (not read, or with no meaning for a dump's
one sample) is ``-`` in the text and null in JSON; 0 is a count known to be zero.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any, NamedTuple, TextIO

from drgn import BadDataError, FaultError, Program, ProgramFlags
from drgn_ss.cli import (
    EXIT_PARTIAL,
    ArgumentParser,
    Failure,
    UsageError,
    add_version,
    check_kernel,
    exit_status,
    help_formatter,
    no_debug_info_message,
    say,
    write_output,
)
from drgn_ss.crash import TIME_FORMAT, dump_time
from drgn_ss.layout import kernel_facts, use_btf
from drgn_ss.netns import raw_netns_list, raw_netns_of, raw_own_netns
from drgn_ss.render import endpoint_text, escape_name, json_name
from drgn_ss.tables import WalkErrors
from drgn_ss.traffic import ProcessTraffic, Sample, Sampler, bytes_since, holder, per_process

__all__ = (
    "Stamp",
    "build_parser",
    "connection_lines",
    "connection_rows",
    "dump_stamp",
    "header_line",
    "host_stamp",
    "process_lines",
    "run",
    "sample_json",
)


def build_parser(prog_name: str) -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=prog_name, formatter_class=help_formatter,
        description="Per-process network traffic from the kernel's TCP counters (no packet capture), as "
        "nethogs shows it.",
        epilog="Columns: sent and received KiB/s over the interval (KiB: 1024 bytes; sent: bytes the "
        "peer acknowledged, received: bytes that arrived in order), TCP connections held, opened and "
        "closed since the last sample, cumulative KiB of the connections held, UDP sockets with their "
        "queued bytes and drops (UDP keeps no byte counts). The header gives the sample's time and "
        "counts the TCP connections the namespace opened in the interval (its TCP MIB), seen or not: "
        "those that opened and closed between two samples are never seen, nor their bytes. A value "
        "not known is '-' (null in JSON): not read (a warning says so), or with no meaning for the "
        "sample. On a crash dump: one sample, at the dump's time (the kernel's wall clock, UTC), "
        "cumulative bytes; rates and connections opened and closed are '-'. Exit status: 0 every "
        "sample complete; 1 an error; 2 a usage error; 3 some sample could not read everything (a "
        "warning on stderr says what: hash chains, sockets, tasks).")
    p.add_argument("--interval", type=float, default=1.0, metavar="S",
                   help="seconds between samples (default 1)")
    p.add_argument("--count", type=int, default=0, metavar="N",
                   help="stop after N samples after the first (default: until interrupted)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per sample, one per line: bytes and bytes per second (not "
                   "KiB), times in seconds (time: since the epoch), null where a value is not known")
    namespaces = p.add_mutually_exclusive_group()
    namespaces.add_argument("--all-netns", action="store_true", help="sockets of every network namespace")
    namespaces.add_argument(
        "--netns", metavar="NS",
        help="one network namespace: its inode number (as lsns and /proc/PID/ns/net show it), a pid, "
        "or on the live kernel a namespace file (/run/netns/NAME); by default, this process's own (live) "
        "or init_net (a dump, a guest read from outside)")
    p.add_argument("--by", choices=("process", "connection"), default="process",
                   help="one row per process (default) or per TCP connection")
    p.add_argument("--verbose", action="store_true",
                   help="after each sample, one JSON line on stderr: sockets, seconds walking the tables "
                   "and taking the whole sample, CPU seconds spent on it, whether the task tables "
                   "were walked, the interval, the seconds it then sleeps (a sample longer than the "
                   "interval stretches it)")
    add_version(p)
    return p


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
    (:func:`drgn_ss.crash.dump_time`, as ``drgn-ss --header`` shows it), ``YYYY-MM-DD
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
    opened = _opened(now, before)
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
                           "tcp_opened": _opened(now, before)}
    if by == "connection":
        obj["connections"] = [{**r, "command": json_name(r["command"])} for r in connection_rows(now, before)]
    else:
        obj["processes"] = [{**r._asdict(), "comm": json_name(r.comm)} for r in per_process(now, before)]
    return json.dumps(obj)


def _opened(now: Sample, before: Sample | None) -> int | None:
    """TCP connections the namespaces opened between two samples, seen or not (the TCP MIB)."""
    if before is None or now.tcp_opens is None or before.tcp_opens is None:
        return None
    return now.tcp_opens - before.tcp_opens


def run(prog: Program, argv: Sequence[str], out: TextIO | None = None, prog_name: str = "nethogs.py") -> int:
    """Sample ``prog``'s sockets as ``nethogs.py ARGV`` would; return the exit status."""
    def main() -> int:
        args = build_parser(prog_name).parse_args(argv)
        if args.interval <= 0 or args.count < 0:
            raise UsageError("--interval must be positive and --count not negative")
        check_kernel(prog)
        use_btf(prog, announce=lambda message: say(prog_name, message))  # facts' warnings on stderr
        try:
            return _loop(prog, args, out or sys.stdout, prog_name)
        except ValueError as e:  # --netns names no namespace
            raise Failure(str(e)) from None
        except LookupError as e:  # a fact not in the cache, and no debug info to work it out
            raise Failure(no_debug_info_message(prog, e)) from None
        except FaultError as e:
            raise Failure(f"could not read kernel memory: {e}") from None
        except BadDataError as e:  # drgn found the dump malformed where it read it
            raise Failure(f"cannot read this kernel: {e}") from None
        except KeyboardInterrupt:
            return 0
        finally:
            kernel_facts(prog).save()

    return exit_status(prog_name, main)


def _loop(prog: Program, args: argparse.Namespace, out: TextIO, prog_name: str) -> int:
    listed = WalkErrors()  # the namespaces --all-netns could not read (a filtered dump)
    if args.netns is not None:
        nets = [raw_netns_of(prog, args.netns)]
    else:
        nets = raw_netns_list(prog, listed) if args.all_netns else [raw_own_netns(prog)]
    if listed:
        say(prog_name, f"warning: could not read {listed.describe()}")
    live = bool(prog.flags & ProgramFlags.IS_LIVE)
    terminal = out.isatty() and not args.json
    sampler = Sampler(prog, nets)
    if live:  # a first walk is slower (facts, symbols, the owners): the baseline comes after it
        sampler.sample()
    before: Sample | None = None
    deadline = time.monotonic()
    samples = 0
    status = EXIT_PARTIAL if listed else 0
    try:
        while True:
            now = sampler.sample()
            if before is not None or not live:
                _show(now, before, host_stamp() if live else dump_stamp(prog), args, out, terminal)
            # A sample longer than the interval stretches that one interval: the schedule slips
            # instead of catching up with samples taken back to back.
            deadline = max(deadline + args.interval, time.monotonic())
            if args.verbose:
                print(json.dumps({"sockets": len(now.connections), "walk_s": round(now.walk_s, 4),
                                  "sample_s": round(now.sample_s, 4),
                                  "cpu_s": round(now.cpu_s, 4), "owners_walked": now.owners_walked,
                                  "interval_s": round(now.start - before.start, 4) if before else None,
                                  "sleep_s": round(deadline - time.monotonic(), 4) if live else None}),
                      file=sys.stderr)
            if now.errors:
                status = EXIT_PARTIAL
                say(prog_name, f"warning: could not read {now.errors.describe()}")
            if not live:
                say(prog_name, "not a running kernel: one sample, cumulative bytes of the connections "
                    "alive at the time of the dump, no rates")
                return status
            if before is not None:
                samples += 1
                if args.count and samples >= args.count:
                    return status
            before = now
            time.sleep(max(deadline - time.monotonic(), 0))
    except KeyboardInterrupt:  # the end the user chose: the status still says if a sample was partial
        return status


def _show(now: Sample, before: Sample | None, stamp: Stamp, args: argparse.Namespace, out: TextIO,
          terminal: bool) -> None:
    if args.json:
        write_output(out, [sample_json(stamp, now, before, args.by) + "\n"])
        return
    processes = per_process(now, before)
    if args.by == "connection":
        lines = connection_lines(connection_rows(now, before))
    else:
        lines = process_lines(processes)
    header = header_line(stamp, now, before, processes)
    if terminal:  # refresh in place, as top
        write_output(out, ["\x1b[H\x1b[2J" + header + "\n" + "\n".join(lines) + "\n"])
    else:
        write_output(out, [header + "\n" + "\n".join(lines) + "\n\n"])
