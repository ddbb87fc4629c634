"""nethogs from kernel counters: ``drgn scripts/nethogs.py``'s options and sampling loop
(:mod:`drgn_ss.output.nethogs` prints each sample).

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
from typing import TextIO

from drgn import BadDataError, FaultError, Program, ProgramFlags
from drgn_ss.commands.common import (
    EXIT_PARTIAL,
    ArgumentParser,
    Failure,
    UsageError,
    add_version,
    exit_status,
    help_formatter,
    say,
    write_output,
)
from drgn_ss.commands.program import check_kernel, no_debug_info_message
from drgn_ss.kernel.damage import WalkErrors
from drgn_ss.kernel.facts import kernel_facts, use_btf
from drgn_ss.namespaces import netns_list, netns_of, own_netns
from drgn_ss.output.nethogs import (
    Stamp,
    connection_lines,
    connection_rows,
    dump_stamp,
    header_line,
    host_stamp,
    process_lines,
    sample_json,
)
from drgn_ss.traffic import Sample, Sampler, per_process

__all__ = ["build_parser", "run"]


def build_parser(prog_name: str) -> argparse.ArgumentParser:
    """nethogs' own options (the interval, the count, the views); the program's are added by the caller."""
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
        nets = [netns_of(prog, args.netns)]
    else:
        nets = netns_list(prog, listed) if args.all_netns else [own_netns(prog)]
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
