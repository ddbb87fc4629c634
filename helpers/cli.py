"""ss's command line, for ``drgn scripts/ss.py`` and the ``drgn-ss`` command.

:func:`run` lists sockets of an already opened drgn Program (the scripts run
under drgn get one); :func:`command` is ``drgn-ss``, which opens the program
itself from ``-c``/``-s``/``--qemu`` or the live kernel.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, NoReturn, TextIO

import drgn
from drgn import (
    Architecture,
    BadDataError,
    FaultError,
    MissingDebugInfoError,
    Program,
    ProgramFlags,
    host_platform,
)
from drgn_ss import __version__
from drgn_ss.crash import crash_summary, crash_summary_without_debug_info, dump_summary, is_damage, panicked
from drgn_ss.decode import raw_inet_socks, raw_skmem
from drgn_ss.inet import TCP_LISTEN
from drgn_ss.layout import (
    NoDebugInfo,
    is_local_live,
    kernel_facts,
    set_debug_info_loader,
    set_qemu,
    use_btf,
    use_core_file,
    vmcoreinfo,
)
from drgn_ss.names import escape_name, safe_line
from drgn_ss.netns import (
    raw_ifname_resolver,
    raw_local_port_range,
    raw_netns_inum,
    raw_netns_list,
    raw_netns_of,
    raw_netns_processes,
    raw_own_netns,
)
from drgn_ss.owners import OWNER_SOURCES, socket_owners
from drgn_ss.raw import elf_build_id, native, native_build
from drgn_ss.render import COL_NETID, COL_STATE, Formatter, NetnsTag, render_json, render_sockets
from drgn_ss.select import SS_ALL, SS_LISTENING, Selection, build_selection
from drgn_ss.ssfilter import FilterError, SelectionError
from drgn_ss.summary import format_summary, raw_sockstat
from drgn_ss.tables import WalkErrors
from drgn_ss.tcpinfo import raw_tcp_info

EXIT_ERROR = 1
EXIT_USAGE = 2
#: The listing was printed, but some of the kernel's tables could not be read.
EXIT_PARTIAL = 3


class UsageError(Exception):
    """Bad options: the message, a hint to --help, exit status 2."""


class Failure(Exception):
    """An error for the user: one line, no traceback, exit status 1."""


class OutputError(Failure):
    """The listing could not be written (a full disk, an I/O error): one line, exit status 1."""


@contextlib.contextmanager
def output_errors() -> Iterator[None]:
    """
    Writes to the output, whose errors become :class:`OutputError`; a reader that closed
    the pipe stays :class:`BrokenPipeError` (it ends the command quietly, as ss).
    """
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as e:
        raise OutputError(f"cannot write output: {e.strerror or e}") from None


def write_output(out: TextIO, chunks: Iterable[str]) -> None:
    """Write ``chunks`` to ``out``, then flush it, in :func:`output_errors`."""
    for chunk in chunks:  # made outside it: only the writes' errors are the output's
        with output_errors():
            out.write(chunk)
    with output_errors():
        out.flush()


def _drop_stdout() -> None:
    """
    Point stdout at /dev/null once writing to it failed: what is still in its buffer would
    fail again as Python exits, with a traceback of its own.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no stdout, or not a file (a test's)
        pass
    finally:
        os.close(devnull)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's, whose errors are :class:`UsageError`: one line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)

    def _print_message(self, message: str, file: Any = None) -> None:
        """--help and --version on stdout: a write error is :class:`OutputError` (argparse ignores it)."""
        if message and file is sys.stdout:
            write_output(sys.stdout, [message])
        else:
            super()._print_message(message, file)


class LastFamily(argparse.Action):
    """
    -4 and -6: the later one given wins, as in ss, which lists (and reads a filter's
    addresses as) its last preferred family only.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        namespace.ipv4, namespace.ipv6 = self.dest == "ipv4", self.dest == "ipv6"


#: ss's one-letter options (ss --help): a ``-s`` "file" made of them only (drgn-ss -st) is
#: ss's -s (summary) and more, read as drgn's -s VMLINUX.
SS_SHORT_OPTIONS = frozenset("hVnraloempTisbEZzN460tMSudwxfKHOADF")

#: Socket families ss lists and drgn-ss does not yet: the reason they give.
FAMILY = "drgn-ss lists TCP and UDP"


class NotSupported(NamedTuple):
    """An ss option drgn-ss lacks: what it does in ss, and why drgn-ss has it not."""

    flags: tuple[str, ...]
    what: str
    reason: str = FAMILY
    #: Whether it takes a value in ss (-N NAME, -f FAMILY...).
    value: bool = False

    def message(self, option: str) -> str:
        later = " yet" if self.reason.startswith(FAMILY) else ""
        return f"{option} ({self.what}) is not supported{later}: {self.reason}"


#: ss's options drgn-ss does not have, each refused in one line (exit status 2) rather than
#: argparse's "unrecognized arguments". A family drgn-ss learns to list leaves this table.
NOT_SUPPORTED = (
    NotSupported(("-x", "--unix"), "unix sockets"),
    NotSupported(("-w", "--raw"), "raw sockets"),
    NotSupported(("-0", "--packet"), "packet sockets"),
    NotSupported(("-M", "--mptcp"), "MPTCP sockets"),
    NotSupported(("-S", "--sctp"), "SCTP sockets"),
    NotSupported(("-d", "--dccp"), "DCCP sockets"),
    NotSupported(("--vsock",), "vsock sockets"),
    NotSupported(("--tipc",), "TIPC sockets"),
    NotSupported(("--xdp",), "XDP sockets"),
    NotSupported(("-f", "--family"), "families by name", f"{FAMILY}; -4 and -6 pick a family", True),
    NotSupported(("-A", "--query", "--socket"), "socket types by name",
                 f"{FAMILY}; -t and -u pick one", True),
    NotSupported(("-r", "--resolve"), "resolve host names", "addresses are shown as numbers"),
    NotSupported(("-T", "--threads"), "threads using each socket", "-p shows the processes"),
    NotSupported(("-b", "--bpf"), "socket BPF filters", "drgn-ss does not decode them"),
    NotSupported(("-E", "--events"), "sockets as they are destroyed",
                 "drgn-ss reads kernel memory once, it does not follow events"),
    NotSupported(("-Z", "--context"), "SELinux contexts", "drgn-ss does not read them"),
    NotSupported(("-z", "--contexts"), "SELinux contexts", "drgn-ss does not read them"),
    NotSupported(("-N", "--net"), "a named network namespace",
                 "use --netns (an inode number, a pid or /run/netns/NAME)", True),
    NotSupported(("-K", "--kill"), "close sockets", "drgn-ss reads kernel memory, it never changes it"),
    NotSupported(("-O", "--oneline"), "one line per socket", "drgn-ss prints ss's default layout"),
    NotSupported(("-D", "--diag"), "raw diag records to a file", "drgn-ss reads no netlink diag", True),
    NotSupported(("-F", "--filter"), "a filter read from a file", "give the filter as arguments", True),
    NotSupported(("--tos",), "ToS and priority", "drgn-ss does not show them"),
    NotSupported(("--cgroup",), "cgroup paths", "-e shows each socket's cgroup"),
    NotSupported(("--inet-sockopt",), "inet socket options", "drgn-ss does not show them"),
    NotSupported(("--tipcinfo",), "TIPC socket details", FAMILY),
)


class RefuseOption(argparse.Action):
    """An option of :data:`NOT_SUPPORTED`: given, a :class:`UsageError` that names it."""

    def __init__(self, option_strings: Sequence[str], dest: str, entry: NotSupported,
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs="?" if entry.value else 0, default=argparse.SUPPRESS,
                         help=argparse.SUPPRESS, **kwargs)
        self.entry = entry

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        raise UsageError(self.entry.message(option_string or self.entry.flags[0]))


def add_unsupported(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` ss's options of :data:`NOT_SUPPORTED`, hidden from --help, refused if given."""
    for entry in NOT_SUPPORTED:
        parser.add_argument(*entry.flags, action=RefuseOption, entry=entry)


#: How many times longer a listing takes in pure Python than with the C part. On a 6.1 ELF
#: dump of the bench workload (21,208 sockets), warm: the whole run of -tan / -tanp 2.3-2.6x,
#: the walk, owners and rendering alone 4.0-4.7x (docs/packaging.md, "Without a C compiler").
PURE_PYTHON_SLOWER = "2-5"


def c_part_line() -> str:
    """
    What --version says of the C part (:mod:`drgn_ss._fast`): built; or not built, why (as
    the install recorded it: :func:`~drgn_ss.raw.native_build`), what that costs, and the fix.
    """
    build = native_build()
    if build.loaded:
        return "C part: built" + ("" if native() is not None else " (not used: DRGN_SS_PURE_PYTHON=1)")
    what = "built but does not load" if build.built else "not built"
    reason = f" ({safe_line(build.reason)})" if build.reason else ""  # a compiler's words
    return (f"C part: {what}{reason}: pure Python, {PURE_PYTHON_SLOWER}x slower; install gcc and "
            "python3-dev and reinstall")


class ShowVersion(argparse.Action):
    """
    -V/--version (as ss): ``PROG VERSION (drgn VERSION)``, then :func:`c_part_line`; worked
    out when asked for (argparse's "version" action takes its text when the parser is made).
    """

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        parser._print_message(f"{parser.prog} {__version__} (drgn {drgn.__version__})\n{c_part_line()}\n",
                              sys.stdout)
        parser.exit()


def add_version(parser: argparse.ArgumentParser) -> None:
    """-V/--version: :class:`ShowVersion`."""
    parser.add_argument("-V", "--version", action=ShowVersion,
                        help="print the version (and drgn's), whether the C part was built, and exit")


def help_formatter(prog: str) -> argparse.HelpFormatter:
    """
    argparse's formatter, told the terminal's width: argparse makes one per option and
    asks shutil each time (importing it: 0.1 s of a TCG guest's start-up).
    """
    columns = os.environ.get("COLUMNS", "")
    try:
        width = int(columns) if columns.isdigit() else os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (OSError, AttributeError, ValueError):
        width = 80
    return argparse.HelpFormatter(prog, width=max(width, 40) - 2)


def add_program_options(p: argparse.ArgumentParser) -> None:
    """The options that say which kernel to read (:func:`open_program`): drgn-ss's, drgn-nethogs'."""
    kernel = p.add_mutually_exclusive_group()
    kernel.add_argument("-c", "--core", metavar="VMCORE", help="read a kernel crash dump")
    p.add_argument("-s", "--symbols", metavar="VMLINUX", action="append",
                   help="debug info (the kernel's vmlinux with DWARF); repeatable. Its build ID is "
                   "checked against the kernel's at once; its DWARF is loaded only when needed (a fact "
                   "the facts cache lacks, a crash summary). Not ss's -s: its summary is --summary here")
    kernel.add_argument("--qemu", metavar="SOCKET", help="read a QEMU guest over this QMP socket")


def build_parser(prog_name: str, program_options: bool) -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog=prog_name,
        formatter_class=help_formatter,
        description="List TCP and UDP sockets from kernel memory, as ss(8) prints them.",
        epilog="FILTER: [state NAME | exclude NAME]... [EXPRESSION]; NAME is an ss state "
        "(established, syn-sent, syn-recv, fin-wait-1, fin-wait-2, time-wait, unconnected, "
        "close-wait, last-ack, listening, closing) or group (all, connected, synchronized, "
        "bucket, big). EXPRESSION is ss's: conditions 'src|dst [=] HOST' (10.0.0.1, 10.0.0.0/8, "
        "[::1], [::1]:22, :22, a host name), 'sport|dport OP PORT' (OP: = != < > <= >= or eq neq "
        "lt gt le ge; PORT: 22, :22, a service name), 'dev [=|!=] NAME', joined by and (&), or "
        "(|), not (!) and ( ) as separate words; and/or group from the left, as in ss. Quote it "
        "for the shell: \"sport = :22 or ( dport > :1024 and not dst 10.0.0.0/8 )\". Without -t "
        "or -u both are shown; other socket types are not supported.",
        add_help=False,
    )
    p.add_argument("-h", "--help", action="help", help="show this help and exit")
    p.add_argument("-t", "--tcp", action="store_true", help="TCP sockets")
    p.add_argument("-u", "--udp", action="store_true", help="UDP sockets")
    p.add_argument("-l", "--listening", action="store_true",
                   help="listening (TCP) and unconnected (UDP) sockets only")
    p.add_argument("-a", "--all", action="store_true", help="sockets in every state")
    p.add_argument("-n", "--numeric", action="store_true", help="do not resolve service names")
    p.add_argument("-p", "--processes", action="store_true", help="show the processes using each socket")
    p.add_argument("-o", "--options", action="store_true", help="show timer information")
    p.add_argument("-i", "--info", action="store_true",
                   help="show TCP internals (tcp_info: congestion control, rtt, rto, mss, cwnd, bytes "
                   "and segments, rates...), on a line of its own as ss")
    p.add_argument("-m", "--memory", action="store_true",
                   help="show socket memory use: skmem:(r,rb,t,tb,f,w,o,bl,d), on a line of its own as ss")
    p.add_argument("-e", "--extended", action="store_true",
                   help="show uid, inode, cookie, cgroup, v6only, shutdown (and timers, as -o)")
    # -s is ss's --summary in the scripts and at the drgn prompt; drgn-ss keeps it for
    # --symbols, as drgn has it.
    summary_flags = ["--summary"] if program_options else ["-s", "--summary"]
    p.add_argument(*summary_flags, action="store_true",
                   help="print ss's summary (socket totals per protocol and state, from the kernel's "
                   "sockstat counters); then the listing only if -t or -u or a filter is given, as ss")
    p.add_argument("-4", "--ipv4", action=LastFamily, help="IPv4 sockets only (with -6: the later one)")
    p.add_argument("-6", "--ipv6", action=LastFamily, help="IPv6 sockets only (with -4: the later one)")
    p.add_argument("-H", "--no-header", action="store_true", help="do not print the header line")
    namespaces = p.add_mutually_exclusive_group()
    namespaces.add_argument("--all-netns", action="store_true",
                            help="sockets of every network namespace, each line ending in its namespace: "
                            "netns:(INODE,\"COMMAND\",pid=PID,cgroup:PATH), a process that lives in it "
                            "(the lowest pid; just INODE if none does)")
    namespaces.add_argument("--netns", metavar="NS",
                            help="the sockets of one network namespace: its inode number (as lsns and "
                            "/proc/PID/ns/net show it), a pid, or on the live kernel a namespace file "
                            "(/run/netns/NAME); by default, drgn-ss's own (live) or init_net (a dump)")
    out_format = p.add_mutually_exclusive_group()
    out_format.add_argument("--json", action="store_true",
                            help="print one JSON array of socket objects instead of text, with every "
                            "field the text would show for the same options, typed (fields: docs/usage.md, "
                            "\"JSON output\"; schema: drgn_ss/socket.schema.json)")
    out_format.add_argument("--ndjson", action="store_true",
                            help="as --json, one object per line (streams: for large listings and jq)")
    p.add_argument("--header", action="store_true",
                   help="on a dump, print what it is as '# ' lines on stdout before the listing: its "
                   "release, when it was taken and its uptime; of a crash, the crash summary (release, "
                   "time, panic, task), which otherwise goes to stderr")
    p.add_argument("--stats", action="store_true",
                   help="after the listing, print one JSON line of timings and counts on stderr "
                   "(sockets, open files, seconds spent walking, finding owners and rendering, "
                   "whether debug info had to be loaded, where facts not in the cache came from "
                   "(DWARF or BTF) and the seconds spent working them out, start-up: seconds from "
                   "drgn-ss's start to its first socket read, and from the process's start to "
                   "drgn-ss's start; native: whether the hot loops ran in C, drgn_ss._fast, false "
                   "where it was not built)")
    p.add_argument("--btf", action="store_true",
                   help="work out struct layouts from the kernel's own BTF and symbol addresses from "
                   "its kallsyms, even where debug info is installed (without debug info, this is "
                   "what happens anyway, and drgn-ss says so)")
    p.add_argument("--owners", choices=OWNER_SOURCES, default="auto",
                   help="where -p finds processes: a walk of the kernel's tasks and file tables "
                   "(kernel), or a scan of /proc/PID/fd as ss does (proc: the live local kernel "
                   "only); auto, the default, walks the kernel, which measured faster")
    if program_options:
        add_program_options(p)
    add_version(p)
    add_unsupported(p)
    p.add_argument("filter", nargs="*", metavar="FILTER",
                   help="state and exclude words, then a filter expression (see below)")
    return p


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


def say(prog_name: str, message: str) -> None:
    """
    ``PROG: MESSAGE`` on stderr, as one line free of escape sequences (:func:`safe_line`)
    whatever the message quotes: drgn's errors, and through them a dump's own bytes.
    """
    print(f"{prog_name}: {safe_line(message)}", file=sys.stderr)


def exit_status(prog_name: str, main: Callable[[], int]) -> int:
    """
    Run ``main`` (a command's body) and return its exit status; what it raises for the user
    becomes one line on stderr (:func:`say`): :class:`UsageError` (and a hint to --help)
    exit 2, :class:`Failure` exit 1 (:class:`OutputError`: the output could not be written),
    and a reader that closed the pipe exit 1, quietly.
    """
    try:
        return main()
    except UsageError as e:
        first, *more = str(e).split("\n")  # a bad filter: the message, then the words pointed at
        say(prog_name, first)
        for line in more:
            print(safe_line(line), file=sys.stderr)
        print(f"Try '{prog_name} --help'.", file=sys.stderr)
        return EXIT_USAGE
    except OutputError as e:
        say(prog_name, str(e))
        _drop_stdout()
        return EXIT_ERROR
    except Failure as e:
        say(prog_name, str(e))
        return EXIT_ERROR
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_ERROR


def _main(prog_name: str, argv: Sequence[str], program_options: bool,
          get_program: Callable[[argparse.Namespace], Program], out: TextIO) -> int:
    started = time.perf_counter()

    def main() -> int:
        args = build_parser(prog_name, program_options).parse_args(argv)
        args.prog_name = prog_name
        args.started = started
        selection = _selection(args)  # bad options fail before the kernel is opened
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


def check_kernel(prog: Program) -> None:
    """
    Refuse, as :class:`Failure`, a program that is not a Linux kernel (drgn -p PID), or a
    kernel of another architecture than x86-64, the one drgn-ss reads (a dump whose ELF
    header says ARM or AArch64: drgn's reads of it fail, with BadDataError among others).
    """
    if not prog.flags & ProgramFlags.IS_LINUX_KERNEL:
        raise Failure("this program is not a Linux kernel (give a vmcore, --qemu, or the live kernel)")
    arch = prog.platform.arch if prog.platform is not None else None
    if arch != Architecture.X86_64:
        name = arch.name if arch is not None else "unknown"
        raise Failure(f"this kernel's architecture is {name}: drgn-ss reads x86-64 kernels only")


def _selection(args: argparse.Namespace) -> Selection:
    """The sockets the options select; a bad option or state name is a usage error."""
    states, expression = _parse_filter(args.filter)
    try:
        return build_selection(args.tcp, args.udp, args.ipv4, args.ipv6,
                               SS_ALL if args.all else SS_LISTENING if args.listening else 0,
                               states, expression)
    except FilterError as e:
        raise UsageError(f"bad filter: {e}\n{e.pointer()}") from None
    except SelectionError as e:
        raise UsageError(str(e)) from None


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


def not_run_by_drgn(script: str) -> str:
    """The line a script prints when Python, not drgn, runs it (there is no ``prog``)."""
    return (f"{script}: a drgn script: run it with drgn (drgn scripts/{script} [OPTIONS] for the running "
            f"kernel, drgn -c VMCORE -s VMLINUX scripts/{script} [OPTIONS] for a dump)")


def no_debug_info_message(prog: Program, error: LookupError) -> str:
    """The one line for a fact that is not in the cache, with no debug info to work it out."""
    reason = str(error)
    if not reason.startswith("no debug info"):
        reason = f"no debug info for the kernel ({reason})"
    release = escape_name(kernel_facts(prog).release) or "RELEASE"
    return f"{reason}: install linux-image-{release}-dbg for its release, or pass -s VMLINUX"


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
    t0 = time.perf_counter()
    types_before = facts.types_s  # facts are worked out as the walk first needs them
    try:
        nets, tags = _namespaces(prog, args, errors)
        if args.summary:
            for net in nets:
                if tags is not None:
                    write_output(out, [f"{tags[raw_netns_inum(prog, net)].text().strip()}\n"])
                write_output(out, [format_summary(raw_sockstat(prog, net, errors))])
            if not (args.tcp or args.udp or args.filter):  # as ss: the summary alone
                _warn_partial(args, errors)
                return EXIT_PARTIAL if errors else 0
        owners, owners_by = (socket_owners(prog, args.owners, errors, counts) if args.processes
                             else (None, "ino"))
        t1 = time.perf_counter()
        ifname = raw_ifname_resolver(prog, errors)
        socks = selection.select(raw_inet_socks(
            prog, nets, selection.protos, listening, established, errors,
            inodes=args.extended or (args.processes and owners_by == "ino"), cgroups=args.extended), ifname)
        t2 = time.perf_counter()
        own = raw_own_netns(prog) if args.all_netns else nets[0]
        skmem = raw_skmem(prog, socks, errors) if args.memory else None
        tcp_info = raw_tcp_info(prog, socks, errors) if args.info else None
        fmt = Formatter(args.numeric, (0, 0) if args.numeric else raw_local_port_range(prog, own),
                        ifname, owners, args.extended, args.options, owners_by, tags, skmem, tcp_info)
    except FaultError as e:
        raise Failure(f"could not read kernel memory: {e}") from None
    except ValueError as e:
        raise Failure(str(e)) from None
    if no_summary:  # said once the listing is known to work without it
        say(args.prog_name, no_summary)
    if args.json or args.ndjson:
        chunks = render_json(socks, fmt, lines=args.ndjson)
    else:
        disabled = set()
        if selection.single_proto:
            disabled.add(COL_NETID)
        if selection.single_state:
            disabled.add(COL_STATE)
        chunks = render_sockets(socks, fmt, frozenset(disabled), not args.no_header, _screen_width(out))
    write_output(out, chunks)
    _warn_partial(args, errors)
    if args.stats:
        stats = {"sockets": len(socks), "files": counts.get("files", 0), "walk_s": round(t2 - t1, 6),
                 "owners_s": round(t1 - t0, 6), "render_s": round(time.perf_counter() - t2, 6),
                 "debug_info_loaded": facts.loaded_debug_info,
                 "types": facts.source, "types_s": round(facts.types_s, 6),
                 "startup_s": round(t0 - args.started + facts.types_s - types_before, 6),
                 "interpreter_s": _seconds_since_start(args.started), "native": native_path()}
        print(json.dumps(stats), file=sys.stderr)
    return EXIT_PARTIAL if errors else 0


def native_path() -> bool:
    """
    Whether the hot loops ran in C (:mod:`drgn_ss._fast`, :func:`~drgn_ss.raw.native`):
    False where it was not built or DRGN_SS_PURE_PYTHON=1 asked for the Python paths.
    """
    return native() is not None


def show_crash_summary(prog: Program, prog_name: str, header: TextIO | None) -> str:
    """
    Print the crash summary of a dump of a kernel that panicked: on stderr, or as ``# ``
    lines on ``header`` (--header). Of another dump, --header prints its release, when it
    was taken and its uptime (:func:`~drgn_ss.crash.dump_summary`); stderr has nothing.

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
    if args.netns is not None:
        try:
            return [raw_netns_of(prog, args.netns)], None
        except ValueError as e:
            raise Failure(str(e)) from None
    if not args.all_netns:
        return [raw_own_netns(prog)], None
    nets = raw_netns_list(prog, errors)
    processes = raw_netns_processes(prog, errors)
    tags = {}
    for net in nets:  # raw_netns_list() read each one's inode number
        inum = raw_netns_inum(prog, net)
        tags[inum] = NetnsTag(inum, processes.get(net))
    return nets, tags


def _warn_partial(args: argparse.Namespace, errors: WalkErrors) -> None:
    if errors:
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


def open_core_dump(path: str) -> Program:
    """
    A Program for a kernel core dump. QEMU's kdump-compressed dumps leave utsname.sysname
    empty, so libkdumpfile cannot tell their architecture: give the host's, as
    ``drgn --architecture x86_64`` would.
    """
    prog = Program()
    try:
        prog.set_core_dump(path)
    except Exception as e:  # libkdumpfile errors surface as plain Exception
        if "KDUMP_ATTR_ARCH_NAME" not in str(e):
            raise
        prog = Program(host_platform)
        prog.set_core_dump(path)
    return prog


def elf_problem(path: str) -> str | None:
    """
    Why ``path`` cannot be a vmlinux (no such file, a directory, unreadable, not ELF), told
    cheaply from its first bytes; None if it may be one (drgn checks the rest).
    """
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        return "no such file"
    except IsADirectoryError:
        return "is a directory"
    except PermissionError:
        return "permission denied"
    except OSError as e:
        return e.strerror or str(e)
    return None if magic == b"\x7fELF" else "not an ELF file"


def looks_like_ss_flags(path: str) -> bool:
    """Whether a ``-s`` argument is ss's one-letter options (``-st``: ss's summary, then TCP)."""
    return bool(path) and set(path) <= SS_SHORT_OPTIONS


def check_symbols(paths: Sequence[str]) -> None:
    """
    Refuse, before the kernel is opened, a ``-s`` path that cannot be a vmlinux, saying why
    (drgn would say only that it does not match the kernel); ss's ``-s`` read as drgn's is
    a usage error that says which is which.
    """
    for path in paths:
        reason = elf_problem(path)
        if reason is None:
            continue
        if reason == "no such file" and looks_like_ss_flags(path):
            raise UsageError(f"-s {path}: no such file: in drgn-ss, -s names the vmlinux (as in drgn); "
                             "ss's summary is --summary")
        raise Failure(f"-s {path}: {reason}")


def open_program(args: argparse.Namespace) -> Program:
    """Open the kernel ``drgn-ss`` reads: a dump, a QEMU guest or the live kernel."""
    check_symbols(args.symbols or [])
    prog = Program()
    try:
        if args.core:
            prog = open_core_dump(args.core)
            use_core_file(prog, args.core)
        elif args.qemu:
            set_qemu(prog, args.qemu)
        else:
            if not os.path.exists("/proc/kcore"):
                raise Failure("no /proc/kcore on this machine: the live kernel cannot be read "
                              "(give -c VMCORE or --qemu SOCKET)")
            if os.geteuid() != 0:
                raise Failure("reading the live kernel needs root (/proc/kcore)")
            prog.set_kernel()
    except Failure:
        raise
    except PermissionError as e:
        raise Failure(f"permission denied: {e.filename or e}") from None
    except FileNotFoundError as e:
        raise Failure(f"no such file: {e.filename}") from None
    except (OSError, ValueError) as e:
        raise Failure(f"cannot open {args.core or args.qemu or 'the live kernel'}: {e}") from None
    except Exception as e:  # libkdumpfile errors surface as plain Exception
        raise Failure(f"cannot open {args.core or args.qemu}: {e}") from None
    if not prog.flags & ProgramFlags.IS_LINUX_KERNEL:
        raise Failure(f"{args.core} is not a Linux kernel dump")

    def load_debug_info() -> None:
        try:
            prog.load_debug_info(args.symbols or [], main=True)
        except MissingDebugInfoError:
            release = _release(prog)
            if args.symbols:
                ours = escape_name(vmcoreinfo(prog).get("BUILD-ID", "unknown"))
                own = kernels_vmlinux(prog, args.symbols)
                if own is not None:  # the build's own file, stripped of its DWARF
                    raise Failure(f"{own} is the vmlinux of kernel {release} (build ID {ours}) but has "
                                  f"no debug info: give the one with DWARF (linux-image-{release}-dbg)"
                                  ) from None
                theirs = ", ".join(f"{path} (build ID {elf_build_id(path) or 'unknown'})"
                                   for path in args.symbols)
                raise Failure(
                    f"{theirs} does not match kernel {release} (build ID {ours}): "
                    f"give the vmlinux of that exact build (linux-image-{release}-dbg)"
                ) from None
            raise NoDebugInfo(f"no debug info for kernel {release}") from None
        except MemoryError:
            # drgn walks the kernel's module list as it loads debug info: a damaged one (a
            # garbage count) ends in a MemoryError there, before any socket is read.
            raise Failure("could not load debug info: the dump's list of kernel modules is damaged "
                          "(drgn ran out of memory walking it)") from None

    # Debug info is loaded only when something is not in the per-build facts cache...
    set_debug_info_loader(prog, load_debug_info)
    # ...or when asked for by name, now (drgn checks that it matches the kernel), unless its
    # build ID says it is this kernel's and the cache has the facts its DWARF gives.
    if args.symbols and not (kernels_vmlinux(prog, args.symbols) is not None
                             and kernel_facts(prog).defer_debug_info()):
        kernel_facts(prog).need_debug_info()
    return prog


def kernels_vmlinux(prog: Program, paths: Sequence[str]) -> str | None:
    """
    The ``-s`` file that is the vmlinux of ``prog``'s kernel build, told cheaply from build
    IDs: its GNU build ID note (:func:`~drgn_ss.raw.elf_build_id`) is the kernel's
    (VMCOREINFO's ``BUILD-ID``, of a dump or of the running kernel). None if no file's is,
    or the kernel's cannot be read (a damaged dump): then drgn loads the files and checks
    them itself.
    """
    build_id = kernel_facts(prog).build_id
    if build_id:
        for path in paths:
            if elf_build_id(path) == build_id:
                return path
    return None


def _release(prog: Program) -> str:
    """The kernel's release for a message, escaped (:func:`escape_name`): it is the dump's."""
    try:
        return escape_name(prog["UTS_RELEASE"].string_().decode(errors="surrogateescape"))
    except Exception as e:
        if not is_damage(e):
            raise
    release = vmcoreinfo(prog).get("OSRELEASE")
    if release:
        return escape_name(release)
    return os.uname().release if is_local_live(prog) else "RELEASE"


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
