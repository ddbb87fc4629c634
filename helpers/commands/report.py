"""--report: the triage report of the namespaces listed (one, or every one with
--all-netns): every socket of every family read once with its holders, memory, tcp_info,
queues and ages, and the limits they are held to (:func:`drgn_ss.report.triage`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any, TextIO

from drgn import Program
from drgn_ss.commands.common import UsageError, write_output
from drgn_ss.commands.who import process_containers
from drgn_ss.kernel.damage import WalkErrors
from drgn_ss.report import ReportInput, Thresholds

__all__ = ["THRESHOLD_NAMES", "parse_thresholds", "prepare_report_options", "report"]

#: --warn-at's names, each with its Thresholds field and what its value is.
THRESHOLD_NAMES = {
    "close-wait-age": ("close_wait_age_ms", "seconds"),
    "orphans": ("orphans", "percent"),
    "time-wait": ("time_wait", "percent"),
    "port-use": ("port_use", "percent"),
}


def parse_thresholds(values: Sequence[str]) -> Thresholds:
    """--warn-at NAME=VALUE (repeatable): seconds for close-wait-age, a percentage of a limit for the rest."""
    changed: dict[str, Any] = {}
    for text in values:
        name, _, value = text.partition("=")
        if name not in THRESHOLD_NAMES:
            raise UsageError(f"--warn-at {text}: no such threshold (known: {', '.join(THRESHOLD_NAMES)})")
        field, unit = THRESHOLD_NAMES[name]
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not 0 <= number < 1e9 or (unit == "percent" and number > 100):
            most = " up to 100" if unit == "percent" else ""
            raise UsageError(f"--warn-at {text}: {name} takes {unit} (a number{most})")
        changed[field] = int(number * 1000) if unit == "seconds" else number / 100
    return Thresholds()._replace(**changed)


def prepare_report_options(args: argparse.Namespace) -> None:
    """Check --report's company before the kernel is opened."""
    if args.warn_at and not args.report:
        raise UsageError("--warn-at sets when the report warns: give --report too")
    if not args.report:
        return
    if args.filter or getattr(args, "filter_file", None) or args.tables or args.listening or args.all:
        raise UsageError("the report is of every socket of the namespaces listed: "
                         "no tables, states or filter")
    if args.pid or args.holders or args.summary or args.ndjson:
        raise UsageError("--report does not go with --pid, --holders, --summary or --ndjson")
    args.thresholds = parse_thresholds(args.warn_at or [])


def report(prog: Program, args: argparse.Namespace, nets: Sequence[int], errors: WalkErrors,
           out: TextIO) -> int:
    """Read everything the report needs, and print it (text, or --json); 0 (errors say the rest)."""
    from drgn_ss.output.report import report_json, report_text
    from drgn_ss.report import triage

    data = _report_input(prog, args, nets, errors)
    found = triage(data, args.thresholds)
    if args.json:
        write_output(out, [json.dumps(report_json(found), ensure_ascii=True, indent=1), "\n"])
    else:
        write_output(out, report_text(found))
    return 0


def _report_input(prog: Program, args: argparse.Namespace, nets: Sequence[int],
                  errors: WalkErrors) -> ReportInput:
    """Every socket of ``nets`` and what the report needs of each, read once."""
    from drgn_ss.namespaces import local_port_range, netns_inode
    from drgn_ss.owners import socket_owners
    from drgn_ss.report import NamespaceFacts
    from drgn_ss.selection.tables import TABLES
    from drgn_ss.sockets.ages import socket_ages
    from drgn_ss.sockets.counters import sockstat_counts
    from drgn_ss.sockets.families import family_sockets
    from drgn_ss.sockets.limits import host_limits, net_limits
    from drgn_ss.sockets.meminfo import sk_meminfo
    from drgn_ss.sockets.queues import listener_queues
    from drgn_ss.sockets.tcpinfo import socket_tcp_info

    owners, owners_by = socket_owners(prog, args.owners, errors, {}, False)
    tables = tuple(t for t in TABLES if t != "dccp")  # what drgn-ss reads
    socks = family_sockets(prog, nets, tables, True, True, errors, inodes=owners_by == "ino",
                           cgroups=False)
    requests = [s for s in socks if s.kind == "request"]
    namespaces = [NamespaceFacts(netns_inode(prog, net), net_limits(prog, net, errors),
                                 local_port_range(prog, net), sockstat_counts(prog, net, errors))
                  for net in nets]
    runs_in = process_containers(prog, errors) if args.containers else None
    skmem = sk_meminfo(prog, socks, errors)
    return ReportInput(socks, owners or {}, owners_by, skmem, socket_tcp_info(prog, socks, errors),
                       listener_queues(prog, socks, requests, errors, skmem),
                       socket_ages(prog, socks, errors), host_limits(prog, errors), namespaces, runs_in)
