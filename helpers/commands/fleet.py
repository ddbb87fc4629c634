"""--prometheus, --zabbix-discovery and --zabbix-get: what a fleet's agents ingest, from one
sample of every namespace (:mod:`drgn_ss.fleet`), or with --interval a sample each S
seconds from one open Program.

The textfile is written whole under another name and renamed into place
(prometheus_client.write_to_textfile): a reader never sees half of it, and a write that
fails (a full disk, an unwritable directory) leaves the previous file as it was. Counters
carry over between runs in a state file next to it (a running kernel only: a dump's
numbers are its own and are never kept for a later run to trust).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Sequence
from typing import Any, TextIO

from drgn import Program, ProgramFlags
from drgn_ss.commands.common import Failure, UsageError, say, write_output
from drgn_ss.kernel.damage import WalkErrors

__all__ = ["add_fleet_options", "fleet", "prepare_fleet_options"]

_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
#: The most --prometheus-top allows (each process is a few series per state).
MAX_TOP = 10_000


def add_fleet_options(p: argparse.ArgumentParser) -> None:
    """The options of the agents' output."""
    p.add_argument("--prometheus", metavar="FILE",
                   help="instead of a listing, write metrics of every namespace (or --netns's) to FILE "
                   "in Prometheus' text format, atomically, for node_exporter's textfile collector: "
                   "sockets by family and state per process, listeners' queues and drops, TIME-WAIT and "
                   "orphans against their limits, socket memory against tcp_mem, and per-process bytes "
                   "as counters (kept across runs in FILE.state)")
    p.add_argument("--prometheus-top", metavar="N", type=_count, default=20,
                   help="with --prometheus, series for the N processes holding the most sockets; the "
                   "others' go to process=\"other\" (default 20)")
    p.add_argument("--prometheus-label", metavar="NAME=VALUE", action="append", default=[],
                   help="with --prometheus, a label on every metric (repeatable): host=web1")
    p.add_argument("--interval", metavar="S", type=_seconds,
                   help="with --prometheus, keep the kernel open and write FILE every S seconds until "
                   "stopped (SIGTERM or SIGINT), or --count times")
    p.add_argument("--count", metavar="N", type=_count,
                   help="with --interval, stop after N files")
    p.add_argument("--zabbix-discovery", metavar="WHAT", choices=("listen", "connections", "processes"),
                   help="instead of a listing, print Zabbix low-level discovery JSON of every namespace's "
                   "listen (listeners), connections (TCP listeners and established connections, with "
                   "their processes) or processes")
    p.add_argument("--zabbix-get", metavar="KEY",
                   help="instead of a listing, print one Zabbix item's value: sockets[PROTO,STATE], "
                   "port[PROTO,LPORT,STATE], proc[PROC,STATE], accept_queue[LPORT], accept_queue_max[LPORT], "
                   "syn_queue[LPORT], listen_drops[LPORT], time_wait, time_wait_max, orphans, orphans_max")


def _count(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= MAX_TOP:
        raise argparse.ArgumentTypeError(f"not a count from 1 to {MAX_TOP}: {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0.1 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"not a number of seconds from 0.1 to 86400: {text!r}")
    return value


def prepare_fleet_options(args: argparse.Namespace) -> None:
    """Check the agents' options before the kernel is opened."""
    modes = [m for m in ("prometheus", "zabbix_discovery", "zabbix_get") if getattr(args, m)]
    args.fleet = bool(modes)
    if len(modes) > 1:
        raise UsageError("--prometheus, --zabbix-discovery and --zabbix-get each make a run of their "
                         "own: give one")
    if not args.prometheus and (args.interval or args.prometheus_label or args.prometheus_top != 20):
        raise UsageError("--interval, --prometheus-top and --prometheus-label go with --prometheus")
    if args.count and not args.interval:
        raise UsageError("--count says how many files --interval writes: give --interval too")
    if not modes:
        return
    if args.prometheus and not args.prometheus.endswith(".prom"):
        raise UsageError(f"--prometheus {args.prometheus}: the textfile collector reads only files "
                         "named *.prom")
    if args.filter or getattr(args, "filter_file", None) or args.tables or args.listening or args.all:
        raise UsageError("the agents' output is of every socket of the namespaces: "
                         "no tables, states or filter")
    if args.report or args.summary or args.json or args.ndjson or args.pid or args.holders:
        raise UsageError("the agents' output does not go with --report, --summary, --json, --pid "
                         "or --holders")
    if args.netns is None and not getattr(args, "named_netns", None):
        args.all_netns = True  # a fleet watches every namespace
    if args.zabbix_get:
        from drgn_ss.output.zabbix import ZabbixKeyError, parse_key

        try:
            args.zabbix_item = parse_key(args.zabbix_get)
        except ZabbixKeyError as e:
            raise UsageError(str(e)) from None
    args.constant_labels = _labels(args.prometheus_label)


def _labels(values: Sequence[str]) -> dict[str, str]:
    """--prometheus-label NAME=VALUE: a valid label name, not one of drgn-ss's own."""
    from drgn_ss.output.metrics import PROCESS_LABELS

    ours = {*PROCESS_LABELS, "netid", "state", "local", "proto", "level", "direction"}
    out: dict[str, str] = {}
    for text in values:
        name, eq, value = text.partition("=")
        if not eq or not _LABEL_RE.match(name) or name.startswith("__"):
            raise UsageError(f"--prometheus-label {text}: NAME=VALUE, NAME a Prometheus label name")
        if name in ours or name in out:
            raise UsageError(f"--prometheus-label {text}: the label name {name} clashes with "
                             f"{'one given before' if name in out else 'one drgn-ss sets'}")
        out[name] = value
    return out


def fleet(prog: Program, args: argparse.Namespace, nets: Sequence[int], errors: WalkErrors,
          out: TextIO) -> int:
    """Sample the namespaces ``nets`` and write what the agent asked for; the exit status."""
    if not args.prometheus:
        write_output(out, [_zabbix(args, _sample(prog, args, nets, errors, False)), "\n"])
        return 3 if errors else 0
    return _prometheus(prog, args, nets)


def _sample(prog: Program, args: argparse.Namespace, nets: Sequence[int], errors: WalkErrors,
            prometheus: bool) -> Any:
    """
    One sample of every family drgn-ss reads, with holders; for Prometheus also what each
    process runs in and the TCP byte counters (Zabbix's discovery and items use neither).
    """
    from drgn_ss.commands.who import process_containers
    from drgn_ss.fleet import fleet_sample
    from drgn_ss.owners import socket_owners
    from drgn_ss.selection.tables import TABLES

    tables = tuple(t for t in TABLES if t != "dccp")
    owners, owners_by = socket_owners(prog, args.owners, errors, {}, False)
    runs_in = process_containers(prog, errors) if prometheus else {}
    return fleet_sample(prog, nets, owners or {}, owners_by, runs_in, errors, tables, traffic=prometheus)


def _zabbix(args: argparse.Namespace, sample: Any) -> str:
    from drgn_ss.output.zabbix import ZabbixKeyError, discovery_json, item_value

    if args.zabbix_discovery:
        return discovery_json(sample, args.zabbix_discovery)
    try:
        return str(item_value(sample, *args.zabbix_item))
    except ZabbixKeyError as e:
        raise UsageError(str(e)) from None
    except ValueError as e:
        raise Failure(str(e)) from None


def _prometheus(prog: Program, args: argparse.Namespace, nets: Sequence[int]) -> int:
    """Write the textfile once, or each --interval; 3 if the last sample was partial."""
    from drgn_ss.output.metrics import METRIC_NAMES

    live = bool(prog.flags & ProgramFlags.IS_LIVE)
    if args.interval and not live:
        raise Failure("--interval samples a running kernel: a dump does not change")
    path = os.path.abspath(args.prometheus)
    _check_target(path)
    _sibling_clash(path, {name.removesuffix("_total") for name in METRIC_NAMES})  # before a sample
    ledger = _load_ledger(prog, args, path) if live else _new_ledger(prog, args)
    stop = _stopper() if args.interval else [False]
    written = 0
    errors = WalkErrors()
    while not stop[0]:
        start = time.monotonic()
        errors = WalkErrors()
        sample = _sample(prog, args, nets, errors, True)
        ledger.add(sample)
        _write_metrics(path, args, sample, ledger, time.monotonic() - start)
        if live:
            _save_ledger(path, ledger)
        written += 1
        if errors:
            say(args.prog_name, f"warning: partial sample: could not read {errors.describe()}")
        if not args.interval or (args.count and written >= args.count):
            break
        _sleep_until(start + args.interval, stop)
    return 3 if errors else 0


def _check_target(path: str) -> None:
    """The textfile's directory exists and is writable."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise Failure(f"cannot write {path}: no directory {directory}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise Failure(f"cannot write {path}: the directory {directory} is not writable")


def _write_metrics(path: str, args: argparse.Namespace, sample: Any, ledger: Any, took: float) -> None:
    """Make the metrics, check their names against the directory's other files, write them whole."""
    from drgn_ss.output.metrics import metric_families, registry_of
    from prometheus_client import write_to_textfile

    families = metric_families(sample, ledger, args.prometheus_top, took, args.constant_labels)
    try:
        registry = registry_of(families)
    except ValueError as e:
        raise Failure(f"cannot write {path}: a metric name clash: {e}") from None
    _sibling_clash(path, {f.name for f in families})
    try:
        write_to_textfile(path, registry)
    except OSError as e:
        raise Failure(f"cannot write {path}: {e.strerror or e} "
                      "(the previous file is left as it was)") from None


def _sibling_clash(path: str, names: set[str]) -> None:
    """A metric of ours in another file of the directory: node_exporter would refuse the scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    directory = os.path.dirname(path)
    for entry in sorted(os.listdir(directory)):
        other = os.path.join(directory, entry)
        if not entry.endswith(".prom") or other == path or not os.path.isfile(other):
            continue
        try:
            with open(other, encoding="utf-8", errors="replace") as f:
                theirs = {family.name for family in text_string_to_metric_families(f.read(1 << 24))}
        except (OSError, ValueError):
            continue  # not ours to judge: the collector says so itself
        clash = sorted(names & theirs)
        if clash:
            raise Failure(f"cannot write {path}: a metric name clash: {clash[0]} is in {other} too "
                          "(the textfile collector would fail on both)")


def _new_ledger(prog: Program, args: argparse.Namespace) -> Any:
    from drgn_ss.fleet import TrafficLedger
    from drgn_ss.kernel.program import vmcoreinfo

    release = vmcoreinfo(prog).get("OSRELEASE") or os.uname().release
    return TrafficLedger(release, args.prometheus_top)


def _load_ledger(prog: Program, args: argparse.Namespace, path: str) -> Any:
    """The counters of the last run (FILE.state); a state that does not fit starts over, said."""
    from drgn_ss.fleet import TrafficLedger

    ledger = _new_ledger(prog, args)
    try:
        with open(path + ".state") as f:
            data = json.load(f)
        return TrafficLedger.from_state(data, ledger.release, ledger.top)
    except FileNotFoundError:
        return ledger
    except (OSError, ValueError) as e:
        say(args.prog_name, f"warning: {path}.state: {e}: counters start over")
        return ledger


def _save_ledger(path: str, ledger: Any) -> None:
    tmp = f"{path}.state.{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            json.dump(ledger.state(), f, separators=(",", ":"))
        os.replace(tmp, path + ".state")
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise Failure(f"cannot write {path}.state: {e.strerror or e}") from None


def _stopper() -> list[bool]:
    """A flag SIGTERM and SIGINT set: the loop ends after the file it is writing."""
    stop = [False]

    def handler(signum: int, frame: Any) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _sleep_until(when: float, stop: list[bool]) -> None:
    while not stop[0]:
        left = when - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.5))
