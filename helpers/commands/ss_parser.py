"""ss's command line for drgn-ss: its options, ss's table and family options, and those refused.

:func:`build_parser` makes the parser of ``drgn-ss``, ``scripts/ss.py`` and ``%ss``;
:data:`NOT_SUPPORTED` lists ss's options that do not apply to kernel memory (or that
drgn-ss does not have yet), each refused in one line.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NamedTuple

from drgn_ss.commands.common import ArgumentParser, UsageError, add_version, help_formatter
from drgn_ss.commands.fleet import add_fleet_options
from drgn_ss.commands.program import add_program_options
from drgn_ss.owners import OWNER_SOURCES

__all__ = [
    "FAMILY", "NOT_SUPPORTED", "NotSupported", "RefuseOption", "TableOption", "add_unsupported",
    "build_parser",
]


class TableOption(argparse.Action):
    """
    An option naming socket tables or families (-t -u -x -4 -6 -f -A...): appended, in the
    order given, to ``tables`` as (kind, value) for
    :func:`~drgn_ss.selection.tables.socket_tables`, which combines them as ss does.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, kind: str, value: str | None = None,
                 **kwargs: Any) -> None:
        kwargs["default"] = []  # copied before it is added to: never changed
        super().__init__(option_strings, "tables", nargs=0 if value is not None else None, **kwargs)
        self.kind, self.value = kind, value

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        options = list(getattr(namespace, "tables", None) or [])
        options.append((self.kind, self.value if self.value is not None else values))
        namespace.tables = options


#: Socket families ss lists and drgn-ss does not yet: the reason they give.
FAMILY = "drgn-ss lists TCP, UDP, MPTCP, SCTP, raw, unix, packet, netlink and vsock sockets"


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
    NotSupported(("-d", "--dccp"), "DCCP sockets"),
    NotSupported(("--tipc",), "TIPC sockets"),
    NotSupported(("--xdp",), "XDP sockets"),
    NotSupported(("-E", "--events"), "sockets as they are destroyed",
                 "drgn-ss reads kernel memory once, it does not follow events"),
    NotSupported(("-Z", "--context"), "SELinux contexts", "drgn-ss does not read them"),
    NotSupported(("-z", "--contexts"), "SELinux contexts", "drgn-ss does not read them"),
    NotSupported(("-K", "--kill"), "close sockets", "drgn-ss reads kernel memory, it never changes it"),
    NotSupported(("-D", "--diag"), "raw diag records to a file", "drgn-ss reads no netlink diag", True),
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


def build_parser(prog_name: str, program_options: bool) -> argparse.ArgumentParser:
    """
    The parser of ``drgn-ss`` (``program_options``: it opens the kernel itself, ``-c``,
    ``-s``, ``--qemu``) and of ``scripts/ss.py`` and ``%ss`` (drgn opened it: ``-s`` is
    ss's --summary there).
    """
    p = ArgumentParser(
        prog=prog_name,
        formatter_class=help_formatter,
        description="List sockets (TCP, UDP, raw, unix, packet, netlink, MPTCP, SCTP, vsock) from kernel "
        "memory, as ss(8) prints them.",
        epilog="FILTER: [state NAME | exclude NAME]... [EXPRESSION]; NAME is an ss state "
        "(established, syn-sent, syn-recv, fin-wait-1, fin-wait-2, time-wait, unconnected, "
        "close-wait, last-ack, listening, closing) or group (all, connected, synchronized, "
        "bucket, big). EXPRESSION is ss's: conditions 'src|dst [=] HOST' (10.0.0.1, 10.0.0.0/8, "
        "[::1], [::1]:22, :22, a host name), 'sport|dport OP PORT' (OP: = != < > <= >= or eq neq "
        "lt gt le ge; PORT: 22, :22, a service name), 'dev [=|!=] NAME', joined by and (&), or "
        "(|), not (!) and ( ) as separate words; and/or group from the left, as in ss. Quote it "
        "for the shell: \"sport = :22 or ( dport > :1024 and not dst 10.0.0.0/8 )\". Of unix "
        "sockets, src and dst match the path name (a glob: src /run/*); dev matches packet sockets' "
        "interface too. Without a family option (-t, -u, -w, -x, -0, -M, -S, --vsock, -f, -A) "
        "every family is listed, in ss's order.",
        add_help=False,
    )
    _add_ss_options(p, program_options)
    _add_own_options(p)
    if program_options:
        add_program_options(p)
    add_version(p)
    add_unsupported(p)
    p.add_argument("filter", nargs="*", metavar="FILTER",
                   help="state and exclude words, then a filter expression (see below)")
    return p


def _add_table_options(p: argparse.ArgumentParser) -> None:
    """ss's options that choose socket tables and families."""
    p.add_argument("-t", "--tcp", action=TableOption, kind="table", value="tcp", help="TCP sockets")
    p.add_argument("-u", "--udp", action=TableOption, kind="table", value="udp", help="UDP sockets")
    p.add_argument("-M", "--mptcp", action=TableOption, kind="table", value="mptcp", help="MPTCP sockets")
    p.add_argument("-S", "--sctp", action=TableOption, kind="table", value="sctp", help="SCTP sockets")
    p.add_argument("-w", "--raw", action=TableOption, kind="table", value="raw", help="raw sockets")
    p.add_argument("-0", "--packet", action=TableOption, kind="family", value="link",
                   help="packet sockets (p_raw, p_dgr)")
    p.add_argument("--vsock", action=TableOption, kind="family", value="vsock",
                   help="vsock sockets (v_str, v_dgr)")
    p.add_argument("-x", "--unix", action=TableOption, kind="family", value="unix",
                   help="unix sockets (u_str, u_dgr, u_seq)")
    p.add_argument("-f", "--family", action=TableOption, kind="family", metavar="FAMILY",
                   help="sockets of a family: unix, inet, inet6, link, netlink, vsock, tipc, xdp")
    p.add_argument("-A", "--query", "--socket", action=TableOption, kind="query", metavar="QUERY",
                   help="socket tables, comma-separated (each may start with !): all, inet, tcp, udp, "
                   "raw, mptcp, sctp, dccp, unix, unix_stream (u_str), unix_dgram (u_dgr), "
                   "unix_seqpacket (u_seq), packet, packet_raw (p_raw), packet_dgram (p_dgr), netlink, "
                   "vsock, vsock_stream (v_str), vsock_dgram (v_dgr), tipc, xdp")


def _add_ss_options(p: argparse.ArgumentParser, program_options: bool) -> None:
    """The options ss has, as ss names them (``-s`` is drgn's --symbols where drgn-ss opens the program)."""
    p.add_argument("-h", "--help", action="help", help="show this help and exit")
    _add_table_options(p)
    p.add_argument("-l", "--listening", action="store_true",
                   help="listening (TCP) and unconnected (UDP) sockets only")
    p.add_argument("-a", "--all", action="store_true", help="sockets in every state")
    p.add_argument("-n", "--numeric", action="store_true", help="do not resolve service names")
    p.add_argument("-p", "--processes", action="store_true", help="show the processes using each socket")
    p.add_argument("-T", "--threads", action="store_true",
                   help="show the threads using each socket, each with its tid and its own command name")
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
    p.add_argument("-4", "--ipv4", action=TableOption, kind="family", value="inet",
                   help="IPv4 sockets only (with -6: the later one)")
    p.add_argument("-6", "--ipv6", action=TableOption, kind="family", value="inet6",
                   help="IPv6 sockets only (with -4: the later one)")
    p.add_argument("-H", "--no-header", action="store_true", help="do not print the header line")
    p.add_argument("-r", "--resolve", action="store_true",
                   help="show host names for addresses, as this host's resolver names them (as ss)")
    p.add_argument("-F", "--filter", metavar="FILE", dest="filter_file",
                   help="read the filter expression from FILE (- for stdin), after any on the command "
                   "line; lines starting with # are skipped, as ss reads them")
    p.add_argument("-N", "--net", metavar="NAME", dest="named_netns",
                   help="the sockets of the network namespace ip-netns calls NAME (/run/netns/NAME): "
                   "on the live kernel only")
    p.add_argument("--cgroup", action="store_true", help="show each TCP, UDP and raw socket's cgroup path")
    p.add_argument("--tos", action="store_true",
                   help="show each inet socket's ToS, IPv6 traffic class and class id (or priority)")
    p.add_argument("--inet-sockopt", action="store_true", dest="inet_sockopt",
                   help="show each inet socket's options (recverr, freebind, transparent...)")
    p.add_argument("-b", "--bpf", action="store_true",
                   help="show the classic BPF filter attached to each packet socket")
    p.add_argument("-O", "--oneline", action="store_true",
                   help="print on each socket's own line what ss puts on lines of their own "
                   "(-m, -i, --inet-sockopt, -b, packet sockets' -e)")


def _add_own_options(p: argparse.ArgumentParser) -> None:
    """drgn-ss's own options: namespaces, JSON, the dump header, stats, BTF, where owners come from."""
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
    p.add_argument("--peers", action="store_true",
                   help="with -p, show the processes holding each unix socket's peer as "
                   "peer:((\"COMMAND\",pid=PID,fd=FD),...) (not in ss)")
    _add_who_options(p)
    _add_whats_wrong_options(p)
    add_fleet_options(p)
    p.add_argument("--owners", choices=OWNER_SOURCES, default="auto",
                   help="where -p finds processes: a walk of the kernel's tasks and file tables "
                   "(kernel), or a scan of /proc/PID/fd as ss does (proc: the live local kernel "
                   "only); auto, the default, walks the kernel, which measured faster")


def _add_who_options(p: argparse.ArgumentParser) -> None:
    """Who holds a socket, beyond ss's -p: the kernel, containers, crash's net -s and net -R."""
    p.add_argument("--kernel-users", action="store_true", dest="kernel_users",
                   help="with -p, name the kernel subsystem using each socket no process holds, after "
                   "the users: kernel:(NAME[,DETAIL]) (vxlan, geneve, fou, nfsd, sunrpc, nvme-tcp...), "
                   "from its callbacks and sk_user_data; kernel:(?,data_ready=SYMBOL) if unknown")
    p.add_argument("--containers", action="store_true",
                   help="add to each process in users:(...) and to --all-netns's tag what it runs in, "
                   "from its cgroup: container:(RUNTIME,ID12[,pod=POD_UID]) (docker, containerd, crio, "
                   "podman, lxc), pod:(UID,qos=QOS), or unit:NAME (a systemd service, scope or session)")
    p.add_argument("--addresses", action="store_true",
                   help="add each socket's kernel addresses: kaddr:(sock=0x...,socket=0x...,file=0x...), "
                   "as crash's net -s shows them (0 where it has none)")
    p.add_argument("--pid", type=_pid, action="append", metavar="PID",
                   help="the sockets of every family process PID holds (repeatable), one line per file "
                   "descriptor, in fd order, as crash's net -s PID; of the namespace listed (with "
                   "--all-netns: of every namespace)")
    p.add_argument("--holders", metavar="ADDRESS",
                   help="the socket whose struct sock, struct socket, struct file or inode (ino:INODE) "
                   "this is, in any namespace, with every thread and fd holding it (crash's net -R)")


def _add_whats_wrong_options(p: argparse.ArgumentParser) -> None:
    """What is wrong, beyond what ss shows: listeners' queues, sockets' ages, the triage report."""
    p.add_argument("--queues", action="store_true",
                   help="with -l or -a, show each TCP and unix listener's queues as they are in memory: "
                   "accept:(LEN/MAX,oldest=AGE) (connections waiting for accept(), the oldest's time "
                   "since it was established), syn:(LEN,oldest=AGE,retrans=N) (requests in SYN-RECV: "
                   "time since the SYN, the most SYN-ACKs one has had resent), drops:N (SYNs and "
                   "ACKs the listener dropped)")
    p.add_argument("--ages", action="store_true",
                   help="show each connected TCP socket's ages: age:(last_recv=AGE,last_send=AGE,last_ack=AGE"
                   "[,oldest_unread=AGE][,oldest_unacked=AGE]): the time since it last received data, sent "
                   "data and had an ACK, and the age of the oldest byte waiting to be read (where the "
                   "kernel stamped packets on arrival) and of the oldest segment waiting for its ACK (since "
                   "it was last sent)")
    p.add_argument("--report", action="store_true",
                   help="instead of a listing, a triage report of the namespace (every one with "
                   "--all-netns): totals by family and state, per process, CLOSE-WAIT with ages and "
                   "owners, orphans and TIME-WAIT against their limits, local ports per destination, "
                   "memory against tcp_mem and udp_mem, listeners' queues and drops, the largest "
                   "queues, retransmits, and a warning for each threshold crossed; --json for a machine")
    p.add_argument("--warn-at", action="append", metavar="NAME=VALUE", dest="warn_at",
                   help="with --report, when to warn (repeatable): close-wait-age=SECONDS (default 60), "
                   "orphans=PERCENT, time-wait=PERCENT, port-use=PERCENT of their limits (default 80)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="with --queues, each waiting connection and request on a line of its own under "
                   "its listener: accept|syn PEER age=AGE [retrans=N]")


def _pid(text: str) -> int:
    """--pid's value: a process id."""
    if not text.isdigit() or not 0 < int(text) < 1 << 31:
        raise argparse.ArgumentTypeError(f"not a process id: {text!r}")
    return int(text)

