"""ss's command line, for ``drgn scripts/ss.py`` and the ``drgn-ss`` command.

:func:`run` lists sockets of an already opened drgn Program (the scripts run
under drgn get one); :func:`command` is ``drgn-ss``, which opens the program
itself from ``-c``/``-s``/``--qemu`` or the live kernel.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn, TextIO, cast

from drgn import (
    BadDataError,
    FaultError,
    Program,
    ProgramFlags,
)
from drgn_ss.commands.common import (
    EXIT_PARTIAL,
    Failure,
    UsageError,
    anon_kb,
    end_process,
    exit_status,
    leave_to_exit,
    native_path,
    say,
    write_output,
)
from drgn_ss.commands.fleet import fleet, prepare_fleet_options
from drgn_ss.commands.program import check_kernel, no_debug_info_message, open_program
from drgn_ss.commands.report import prepare_report_options, report
from drgn_ss.commands.ss_parser import build_parser
from drgn_ss.commands.triage import prepare_triage_options, triage_listing
from drgn_ss.commands.who import prepare_who_options, who_listing
from drgn_ss.kernel.crash import crash_summary, crash_summary_without_debug_info, dump_summary, panicked
from drgn_ss.kernel.damage import WalkErrors
from drgn_ss.kernel.facts import KernelFacts, kernel_facts, use_btf
from drgn_ss.kernel.program import is_local_live
from drgn_ss.namespaces import (
    ifname_resolver,
    local_port_range,
    netns_inode,
    netns_list,
    netns_of,
    netns_processes,
    own_netns,
)
from drgn_ss.output.text import COL_NETID, COL_STATE, Formatter, NetnsTag, render_sockets
from drgn_ss.owners import OwnerMap, socket_owners, subflow_owners
from drgn_ss.selection.errors import FilterError, SelectionError
from drgn_ss.selection.states import SS_ALL, SS_LISTENING, Selection, build_selection
from drgn_ss.sockets.families import family_sockets
from drgn_ss.sockets.meminfo import sk_meminfo
from drgn_ss.sockets.packet import AF_PACKET
from drgn_ss.sockets.record import TCP_LISTEN, Socket

__all__ = ["command", "run", "show_crash_summary"]


def _inet_options(prog: Program, args: argparse.Namespace, socks: list[Socket], errors: WalkErrors,
                  fmt: Formatter) -> None:
    """What --tos and --inet-sockopt read of each inet socket, -b of each packet socket, and -O."""
    from drgn_ss.sockets.sockfilter import socket_filters  # only for these options
    from drgn_ss.sockets.sockopt import inet_options

    fmt.tos, fmt.sockopts = inet_options(prog, socks, errors, args.tos, args.inet_sockopt)
    fmt.filters = (socket_filters(prog, [s for s in socks if s.family == AF_PACKET], errors) if args.bpf
                   else None)
    fmt.oneline, fmt.threads = args.oneline, args.threads


def _parse_filter(words: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """ss's FILTER: ``state``/``exclude`` NAME pairs first, then an expression (the rest)."""
    out = []
    i = 0
    while i < len(words):
        verb = words[i]
        if verb not in ("state", "exclude", "excl"):
            break
        if i + 1 >= len(words):
            raise UsageError(f"{verb!r} needs a state name")
        out.append(("state" if verb == "state" else "exclude", words[i + 1]))
        i += 2
    return out, words[i:]


def _main(prog_name: str, argv: Sequence[str], program_options: bool,
          get_program: Callable[[argparse.Namespace], Program], out: TextIO) -> int:
    started = time.perf_counter()

    def main() -> int:
        args = build_parser(prog_name, program_options).parse_args(argv)
        args.prog_name = prog_name
        args.started = started
        args.processes = args.processes or args.threads  # ss -T shows users, each thread's
        prepare_who_options(args)
        prepare_triage_options(args)
        prepare_report_options(args)
        prepare_fleet_options(args)
        selection = _selection(args)  # bad options fail before the kernel is opened
        if args.named_netns and (args.netns is not None or args.all_netns):
            raise UsageError("-N names one namespace: it does not go with --netns or --all-netns")
        if args.peers and not args.processes:
            raise UsageError("--peers shows the processes holding a unix socket's peer: give -p too")
        if args.summary and (args.json or args.ndjson):
            raise UsageError("the summary is text: it does not go with --json")
        if args.header and (args.json or args.ndjson):
            raise UsageError("--header prints text before the listing: it does not go with --json; "
                             "the crash summary goes to stderr")
        if args.btf and getattr(args, "symbols", None):
            raise UsageError("--btf reads the kernel's own types: it does not go with -s")
        # A listing makes some 50 objects per socket and no cycles: without the cyclic
        # collector's passes over them, a 100,000-socket listing is ~15% faster.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return _list(get_program(args), args, selection, out)
        finally:
            if collecting:
                gc.enable()

    return exit_status(prog_name, main)


def run(prog: Program, argv: Sequence[str], out: TextIO | None = None,
        prog_name: str = "ss.py") -> int:
    """List sockets of ``prog`` as ``ss ARGV`` would; return the exit status."""
    return _main(prog_name, argv, False, lambda args: prog, out or sys.stdout)


def _selection(args: argparse.Namespace) -> Selection:
    """The sockets the options select; a bad option or state name is a usage error."""
    states, expression = _parse_filter(args.filter)
    if getattr(args, "filter_file", None):
        expression = [*expression, *_filter_file(args.filter_file)]
    try:
        return build_selection(args.tables, SS_ALL if args.all else SS_LISTENING if args.listening else 0,
                               states, expression)
    except FilterError as e:
        raise UsageError(f"bad filter: {e}\n{e.pointer()}") from None
    except SelectionError as e:
        raise UsageError(str(e)) from None


def _filter_file(path: str) -> list[str]:
    """ss's -F: the lines of a file (stdin for a name starting with -), as ss's lexer reads them."""
    try:
        if path.startswith("-"):
            text = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                text = f.read(1 << 20)
    except OSError as e:
        raise UsageError(f"cannot read the filter file {path}: {e.strerror}") from None
    lines = []
    for raw in text.decode("utf-8", "surrogateescape").split("\n"):
        if len(raw) >= 1023:
            raise UsageError("Too long line in filter")
        if raw and raw[0] not in "#0":
            lines.append(raw)
    return lines


def _list(prog: Program, args: argparse.Namespace, selection: Selection, out: TextIO) -> int:
    check_kernel(prog)
    use_btf(prog, args.btf, lambda message: say(args.prog_name, message))
    facts = kernel_facts(prog)
    try:
        return _listing(prog, args, selection, out)
    except LookupError as e:  # a fact not in the cache, and no debug info to work it out
        raise Failure(no_debug_info_message(prog, e)) from None
    except BadDataError as e:  # drgn found the dump malformed where it read it
        raise Failure(f"cannot read this kernel: {e}") from None
    finally:
        facts.save()


def _listing(prog: Program, args: argparse.Namespace, selection: Selection, out: TextIO) -> int:
    image = prog.cache.get("drgn_ss.image")
    if getattr(image, "missing", 0):
        say(args.prog_name, f"warning: the dump is cut short: {_size_text(image.missing)} of memory it "
            "describes are not in the file")
    facts = kernel_facts(prog)
    no_summary = show_crash_summary(prog, args.prog_name, out if args.header else None)
    errors = WalkErrors()
    listening = bool(selection.states & 1 << TCP_LISTEN)
    established = bool(selection.states & ~(1 << TCP_LISTEN))
    counts: dict[str, int] = {}
    marks = _Marks(args.stats, facts.types_s)  # facts are worked out as the walk first needs them
    try:
        nets, tags = _namespaces(prog, args, errors)
        if args.report or args.fleet:  # not a listing: the report, or the agents' output
            code = (fleet if args.fleet else report)(prog, args, nets, errors, out)
            _warn_partial(args, errors)
            return code or (EXIT_PARTIAL if errors else 0)
        if args.summary and _summaries(prog, args, selection, nets, tags, errors, out):
            _warn_partial(args, errors)
            return EXIT_PARTIAL if errors else 0
        rows = not any(getattr(args, name, None) for name in _NOT_ROWS)  # records made on demand only
        owners, owners_by = (socket_owners(prog, args.owners, errors, counts, args.threads, compact=rows)
                             if args.processes else (None, "ino"))
        marks.mark()
        ifname = ifname_resolver(prog, errors)
        socks = selection.select(family_sockets(
            prog, nets, selection.protos, listening, established, errors,
            inodes=args.extended or (args.processes and owners_by == "ino") or bool(args.holders),
            cgroups=args.extended or args.cgroup,
            details=args.extended, families=selection.families, states=selection.states, rows=rows), ifname)
        marks.mark()
        if owners is not None and owners_by == "sock" and not args.pid:  # --pid: each fd once
            subflow_owners(prog, _tcp_sockets(socks, owners), owners)
        own = own_netns(prog) if args.all_netns else nets[0]
        skmem = sk_meminfo(prog, socks, errors) if args.memory else None
        tcp_info = None
        if args.info:
            from drgn_ss.sockets.tcpinfo import socket_tcp_info  # only for -i: start-up
            tcp_info = socket_tcp_info(prog, socks, errors)
        fmt = Formatter(args.numeric, (0, 0) if args.numeric else local_port_range(prog, own),
                        ifname, owners, args.extended, args.options, owners_by, tags, skmem, tcp_info,
                        _process_names(prog, socks, args.numeric, errors))
        fmt.dg_proto = next((p for p in ("tcp", "udp", "raw") if p in selection.protos), None)
        fmt.resolve, fmt.show_cgroup, fmt.peers = args.resolve and not args.numeric, args.cgroup, args.peers
        _inet_options(prog, args, socks, errors, fmt)
        socks = who_listing(prog, args, socks, owners, fmt, errors)
        triage_listing(prog, args, nets, socks, fmt, errors)
    except FaultError as e:
        raise Failure(f"could not read kernel memory: {e}") from None
    except ValueError as e:
        raise Failure(str(e)) from None
    if no_summary:  # said once the listing is known to work without it
        say(args.prog_name, no_summary)
    write_output(out, _rendered(socks, fmt, selection, args, out))
    leave_to_exit(socks, fmt, owners)
    _warn_partial(args, errors)
    if args.stats:
        _print_stats(args, facts, len(socks), counts.get("files", 0), marks)
    return EXIT_PARTIAL if errors else 0


class _Marks:
    """
    --stats: the times a listing's phases start (the owners, the walk, the rest) and the
    anonymous memory (RssAnon: what the process allocated, not the dump or guest pages it
    maps) at each phase's end.
    """

    def __init__(self, on: bool, types_s: float) -> None:
        self.on, self.types_before = on, types_s
        self.times = [time.perf_counter()]
        self.anon: list[int | None] = []

    def mark(self) -> None:
        self.times.append(time.perf_counter())
        if self.on:
            self.anon.append(anon_kb())


def _tcp_sockets(socks: Sequence[Socket], owners: OwnerMap) -> Sequence[tuple[int, int]]:
    """
    (address, struct socket) of each TCP socket that may be an MPTCP subflow (for
    subflow_owners): of a SockTable's rows with owners a HolderMap, only those it lacks.
    """
    unheld = getattr(socks, "unheld", None)
    if unheld is not None and type(owners).__name__ == "HolderMap":
        return cast(list[tuple[int, int]], unheld("tcp", owners))
    return [(s.address, s.socket) for s in socks if s.proto == "tcp"]


#: Options whose work reads each socket's record, or changes the list of them: without any,
#: TCP and UDP may come as rows (drgn_ss._fast.SockTable), their records made only on demand.
_NOT_ROWS = ("addresses", "ages", "all_netns", "bpf", "cgroup", "containers", "extended", "holders",
             "inet_sockopt", "info", "json", "kernel_users", "memory", "ndjson", "options", "peers", "pid",
             "queues", "report", "summary", "threads", "tos", "fleet")


def _print_stats(args: argparse.Namespace, facts: KernelFacts, sockets: int, files: int,
                 marks: _Marks) -> None:
    """
    --stats: one JSON line of timings and counts on stderr. ``anon_peak_mb``: the most
    anonymous memory seen after the owners, after the walk and at the end.
    """
    t0, t1, t2 = marks.times
    marks.mark()
    anon = [a for a in marks.anon if a is not None]
    stats = {"sockets": sockets, "files": files, "walk_s": round(t2 - t1, 6),
             "owners_s": round(t1 - t0, 6), "render_s": round(marks.times[-1] - t2, 6),
             "debug_info_loaded": facts.loaded_debug_info,
             "types": facts.source, "types_s": round(facts.types_s, 6),
             "startup_s": round(t0 - args.started + facts.types_s - marks.types_before, 6),
             "interpreter_s": _seconds_since_start(args.started), "native": native_path(),
             "anon_peak_mb": round(max(anon) / 1024, 1) if anon else None}
    print(json.dumps(stats), file=sys.stderr)


def _process_names(prog: Program, socks: Sequence[Socket], numeric: bool,
                   errors: WalkErrors) -> Callable[[int], str | None] | None:
    """
    Processes' commands by pid, for netlink port ids that are pids (ss looks them up in
    /proc): from the kernel's task list, walked only if a netlink socket is listed.
    """
    tables = getattr(socks, "protos", None)  # a SockTable: TCP and UDP only
    if numeric or (tables is not None and "nl" not in tables()) or not any(
            s.proto == "nl" and s.sport > 0 for s in socks):
        return None
    from drgn_ss.tasks import thread_group_leaders

    names = {pid: comm for pid, comm, _files in thread_group_leaders(prog, errors)}
    return names.get


def _summaries(prog: Program, args: argparse.Namespace, selection: Selection, nets: list[int],
               tags: dict[int, NetnsTag] | None, errors: WalkErrors, out: TextIO) -> bool:
    """Print ss's summary of each namespace; whether that is all (no table, family or filter: as ss)."""
    from drgn_ss.output.summary import format_summary  # imported where used: start-up
    from drgn_ss.sockets.counters import sockstat_counts

    for net in nets:
        if tags is not None:
            write_output(out, [f"{tags[netns_inode(prog, net)].text().strip()}\n"])
        write_output(out, [format_summary(sockstat_counts(prog, net, errors))])
    return selection.default and not args.filter


def _rendered(socks: Sequence[Socket], fmt: Formatter, selection: Selection, args: argparse.Namespace,
              out: TextIO) -> Iterable[str]:
    """The listing's text (ss's columns, without those one protocol or state makes useless) or JSON."""
    if args.json or args.ndjson:
        from drgn_ss.output.json_output import render_json  # imported where used: start-up

        return render_json(socks, fmt, lines=args.ndjson)
    disabled = set()
    if selection.single_proto:
        disabled.add(COL_NETID)
    if selection.single_state:
        disabled.add(COL_STATE)
    return render_sockets(socks, fmt, frozenset(disabled), not args.no_header, _screen_width(out))

def show_crash_summary(prog: Program, prog_name: str, header: TextIO | None) -> str:
    """
    Print the crash summary of a dump of a kernel that panicked: on stderr, or as ``# ``
    lines on ``header`` (--header). Of another dump, --header prints its release, when it
    was taken and its uptime (:func:`~drgn_ss.kernel.crash.dump_summary`); stderr has nothing.

    :return: what to say instead where there is no summary to print, "" if nothing: the
        summary needs debug info; and where ``panic_cpu`` cannot be read, whether the
        kernel panicked cannot be told, and no summary is made up
    """
    crashed = panicked(prog)
    if not crashed and header is not None and not prog.flags & ProgramFlags.IS_LIVE:
        write_output(header, [f"# {line}\n" for line in dump_summary(prog)])  # read raw: no DWARF
    if crashed is None:
        return "no crash summary: whether this kernel panicked cannot be read (panic_cpu)"
    if not crashed:
        return ""
    try:
        kernel_facts(prog).need_debug_info()  # the panic message and task are drgn Objects
        summary = crash_summary(prog)
    except (Failure, LookupError) as e:  # no debug info here: what can be read raw, and why not more
        hint = "" if prog.cache.get("drgn_ss.btf_only") else " (give -s VMLINUX)"  # -s and --btf exclude
        summary = [*crash_summary_without_debug_info(prog), f"no panic message or crashing task: {e}{hint}"]
    if summary and header is not None:
        write_output(header, [f"# {line}\n" for line in summary])
    elif summary:
        for line in summary:
            say(prog_name, line)
    return ""


def _namespaces(prog: Program, args: argparse.Namespace, errors: WalkErrors
                ) -> tuple[list[int], dict[int, NetnsTag] | None]:
    """
    The namespaces to list (``struct net *`` addresses) and, for --all-netns, what tells
    each apart: its inode number -> its tag.
    """
    if getattr(args, "named_netns", None):
        if not is_local_live(prog):
            raise Failure(f"-N {args.named_netns}: names a namespace of this machine's kernel (ip netns); "
                          "on a dump, use --netns INODE or PID")
        args.netns = os.path.join("/run/netns", args.named_netns)
    if args.netns is not None:
        try:
            return [netns_of(prog, args.netns)], None
        except ValueError as e:
            raise Failure(str(e)) from None
    if not args.all_netns:
        return [own_netns(prog)], None
    nets = netns_list(prog, errors)
    processes = netns_processes(prog, errors)
    tags = {}
    for net in nets:  # netns_list() read each one's inode number
        inum = netns_inode(prog, net)
        tags[inum] = NetnsTag(inum, processes.get(net))
    return nets, tags


def _warn_partial(args: argparse.Namespace, errors: WalkErrors) -> None:
    for family, reason in errors.left_out.items():
        say(args.prog_name, f"warning: {family} sockets are not listed: {reason}")
    if errors.counted:
        say(args.prog_name, f"warning: partial listing: could not read {errors.describe()} "
            "(freed while read, missing from the dump, or damaged)")


def _size_text(n: int) -> str:
    """A size for a message: in MB, or in bytes below one (not "0 MB")."""
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n} bytes"


def _seconds_since_start(when: float) -> float | None:
    """
    Seconds from this process's start (/proc/self/stat, 10 ms ticks) to ``when`` (a
    perf_counter time): the interpreter and imports, before drgn-ss's own code ran.
    """
    try:
        with open("/proc/self/stat", "rb") as f:
            start_ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
        boottime = time.clock_gettime(time.CLOCK_BOOTTIME) - (time.perf_counter() - when)
        return round(boottime - start_ticks / os.sysconf("SC_CLK_TCK"), 3)
    except (OSError, ValueError, IndexError):
        return None


def _screen_width(out: TextIO) -> int | None:
    """The terminal's width when ``out`` is a terminal (ss's layout), else None (compact)."""
    try:
        if out.isatty():
            return os.get_terminal_size(out.fileno()).columns or None
    except (OSError, ValueError):
        pass
    return None


def console() -> NoReturn:
    """The ``drgn-ss`` console script: :func:`command`, the process ended with its status."""
    end_process(command)


def command(argv: Sequence[str] | None = None) -> int:
    """The ``drgn-ss`` command."""
    # drgn logs its own warnings (missing symbols, unmatched files); our errors say it in one line.
    logging.getLogger("drgn").setLevel(logging.CRITICAL + 1)
    # Looking for drgn plugins scans every installed distribution's entry points: 70-110 ms,
    # a third of a warm run. Skipped unless the user says which plugins they want.
    if "DRGN_PLUGINS" not in os.environ and "DRGN_DISABLE_PLUGINS" not in os.environ:
        os.environ["DRGN_DISABLE_PLUGINS"] = "*"
    return _main("drgn-ss", list(sys.argv[1:] if argv is None else argv), True, open_program,
                 sys.stdout)
