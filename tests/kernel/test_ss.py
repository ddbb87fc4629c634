"""drgn-ss prints what ss prints, for the same sockets, on every kernel and in every mode.

The expected output is ss's own, run in the guest by tests/kernel/workload.py
just before the tests (live) or the dump (elf, kdump, qemu).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import drgn
import pytest
from drgn_ss.commands.ss import _selection, run
from drgn_ss.commands.ss_parser import build_parser
from drgn_ss.kernel.damage import WalkErrors
from drgn_ss.kernel.native import native
from drgn_ss.kernel.program import vmcoreinfo
from drgn_ss.namespaces import netns_list
from drgn_ss.output.text import STATE_NAMES
from drgn_ss.owners import kernel_owners, proc_owners
from drgn_ss.sockets.inet import inet_sockets
from drgn_ss.sockets.mptcp import mptcp_sockets
from drgn_ss.sockets.unix import unix_sockets

from tests.json_text import schema_validator, text_line
from tests.kernel import reference
from tests.kernel.conftest import Target
from tests.kernel.workload import (
    EVERY_MODE_SETS,
    EVERY_SET_MODES,
    FILTER_SETS,
    HOSTILE_NAME,
    HOSTILE_PORT,
    HOSTILE_SHOWN,
    OPTION_SETS,
    as_ss7,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMER_RE = re.compile(r"timer:\((\w+),[^,]*,")


#: skmem's drop count: it grows on a connection that keeps probing a zero window (the
#: workload's 7001 pair) between ss's run and ours. assert_counters_grow() checks it apart.
DROPS_RE = re.compile(r"(skmem:\([^)]*,d)(\d+)\)")
#: -i's times since the last send, receive and ACK, and the busy times: they grow between
#: ss's run and ours (lastack restarts at each ACK: masked only).
ELAPSED_RE = re.compile(r"\b(lastsnd|lastrcv|lastack|busy|rwnd_limited|sndbuf_limited):(\d+)")
#: ... and the share of the busy time those are: 99.9% for ss, 100.0% a little later.
SHARE_RE = re.compile(r"\(\d+\.\d%\)")
#: The zero-window pair (port 7001) is not idle: its probes move these.
PROBING_RE = re.compile(r"\b(backoff|segs_out|segs_in):(\d+)")
#: On the probing pair, what its zero-window probes leave alone; the rest of -i is masked
#: (each probe's ACK is an RTT sample: rtt, rto, rates...).
PROBE_MOVED_RE = re.compile(r"\b(\w+):([\d./]+)")
PROBE_STILL = {"wscale", "mss", "pmtu", "rcvmss", "advmss", "cwnd", "bytes_sent", "bytes_acked",
               "bytes_received", "data_segs_out", "data_segs_in", "rcv_space", "rcv_ssthresh", "notsent"}
RATE_RE = re.compile(r"\b(send|pacing_rate|delivery_rate) \S+bps")
#: Counters checked to be at least ss's: (regex, value group).
GROWING = ((DROPS_RE, 2), (ELAPSED_RE, 2), (PROBING_RE, 2))


#: When the workload's TIME-WAIT socket was made (the kernel's seconds since boot, set by
#: conftest's workload fixture), and the kernel's seconds since boot now: this machine's
#: clock on a running kernel, the guest's or the dump's own (its jiffies) otherwise. A dump
#: may be taken a minute after the workload's ss snapshots (the matrix reads the guest over
#: QMP and dumps it before it panics it).
TIME_WAIT_AT: list[float | None] = [None]
UPTIME: list[Callable[[], float]] = [lambda: time.clock_gettime(time.CLOCK_BOOTTIME)]
#: TCP_TIMEWAIT_LEN is 60 s: from this age on, the TIME-WAIT socket may be gone from a listing
#: made before the comparison, or from ss's, so neither side is held to it.
TIME_WAIT_SURE_S = 55


def time_wait_gone() -> bool:
    """Whether the workload's TIME-WAIT socket may have expired (55 s on, in the kernel's time)."""
    made = TIME_WAIT_AT[0]
    return made is not None and UPTIME[0]() - made >= TIME_WAIT_SURE_S


def _time_wait_line(line: str) -> bool:
    """A line (whitespace collapsed) of the workload's TIME-WAIT socket: 127.0.0.1 to port 22."""
    return ("TIME-WAIT " in line or "timer:(timewait" in line) and (":22 " in line or line.endswith(":22")
                                                                    or ":ssh" in line)


#: The sock_diag netlink sockets (NETLINK_SOCK_DIAG, 4): ss's own, and the kernel's, whose
#: queue holds ss's reply while it runs. Neither is there when ss is not.
SOCK_DIAG_RE = re.compile(r"(nl )?UNCONN \d+ \d+ (tcpdiag|4):")


#: -i's ULP information (an MPTCP subflow's tcp-ulp-mptcp ...), which drgn-ss does not show
#: (docs/limitations.md): the rest of -i's text is compared.
ULP_RE = re.compile(r" tcp-ulp-\S+.*$")


def _without_sock_diag(text: str) -> str:
    """The text without sock_diag's netlink sockets (SOCK_DIAG_RE)."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not SOCK_DIAG_RE.match(" ".join(line.split())))


def normalize(text: str) -> list[str]:
    """
    Whitespace collapsed; sock_diag's netlink sockets left out (SOCK_DIAG_RE); what moves
    between ss's run and ours masked: timer durations,
    skmem's drop counts, -i's elapsed times, and the zero-window pair's probe counters. The
    line ss puts -m and -i on (after "\\n\\t") is kept with its socket's line.
    """
    out = []
    gone = time_wait_gone()
    for line in text.replace("\n\t", " <tab> ").splitlines():
        if gone and _time_wait_line(" ".join(line.split())):
            continue
        if SOCK_DIAG_RE.match(" ".join(line.split())):
            continue
        line = ULP_RE.sub("", line)
        line = TIMER_RE.sub(r"timer:(\1,*,", " ".join(line.split()))
        line = ELAPSED_RE.sub(r"\1:*", DROPS_RE.sub(r"\1*)", line))
        line = SHARE_RE.sub("(*%)", line)
        if ":7001 " in line and " <tab> " in line:  # the probing pair: only what probes do not move
            head, tail = line.split(" <tab> ", 1)
            tail = PROBE_MOVED_RE.sub(_mask_probed, RATE_RE.sub(r"\1 *bps", tail))
            # Each probe's ACK restarts lastack: 0 in the jiffy it came in, which ss leaves out.
            tail = tail.replace(" lastack:*", "")
            line = f"{head} <tab> {tail}"
        out.append(line)
    return out


def assert_same_lines(got: str, expected: str) -> None:
    """normalize(got) == normalize(expected), failing with a diff of just the lines that differ."""
    import difflib

    mine, theirs = normalize(got), normalize(expected)
    diff = [line for line in difflib.unified_diff(theirs, mine, "ss", "drgn-ss", n=0, lineterm="")
            if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert mine == theirs, "\n".join(diff)


def _mask_probed(m: re.Match[str]) -> str:
    return m.group(0) if m.group(1) in PROBE_STILL else f"{m.group(1)}:*"


def assert_counters_grow(got: str, expected: str) -> None:
    """What normalize() masks as growing is at least what ss saw before (lastack aside)."""
    for regex, group in GROWING:
        def values(text: str) -> list[tuple[str, int]]:
            return [(m.group(1), int(m.group(group))) for m in regex.finditer(text)  # noqa: B023
                    if m.group(1) != "lastack"]

        mine, theirs = values(_without_sock_diag(got)), values(_without_sock_diag(expected))
        assert [k for k, _ in mine] == [k for k, _ in theirs], (mine, theirs)
        assert all(a >= b for (_, a), (_, b) in zip(mine, theirs)), (mine, theirs)


USERS_RE = re.compile(r" ?users:\((.*?\))\)")


#: A bound interface in an address ("127.0.0.1%lo:"): ss's "%if<index>" where its name is unknown.
IFNAME_RE = re.compile(r"%[^ :]+:")


def assert_partial_said(err: str) -> None:
    """
    A listing that is partial because a dump lacks pages says so: what it could not read, or
    which family it left out (a module's BTF on such pages), naming the excluded page.
    """
    said = "partial listing: could not read" in err or "sockets are not listed: " in err
    assert said and "Excluded page" in err, err


#: A packet socket's local address ("[2054]:lo", "*:eth0"): its interface shown by index
#: ("if3"), as ss shows one it cannot name, where the interface list could not be read.
PACKET_IF_RE = re.compile(r"^(p_raw|p_dgr)( \S+ \d+ \d+ \S*):\S+")


def _partial_key(line: str, no_names: bool) -> str:
    key = USERS_RE.sub("", line)
    if no_names:
        key = PACKET_IF_RE.sub(r"\1\2:*", IFNAME_RE.sub("%*:", key))
    return key


#: The cells every line has before its details: State, Recv-Q, Send-Q, Local and Peer (and
#: Netid first, where the listing shows it).
CORE_CELLS = 5


def _core_cells(cells: list[str]) -> int:
    return CORE_CELLS + (cells[0] not in STATE_NAMES)


def _details_cut(key: str, truth: dict[str, set[str]]) -> str | None:
    """
    The line of ``truth`` that ``key`` is with some of its details left out, if any: the same
    first cells (state, queues, addresses), then some of ss's details in ss's order (``--tos``'s,
    the line ss puts after "\\n\\t": a filter, ``-i``'s TCP info, ``--inet-sockopt``'s): what
    a partial listing prints of a socket whose details it could not all read.
    """
    mine = key.split()
    for line in truth:
        theirs = line.split()
        core = _core_cells(theirs)
        if mine[:core] != theirs[:core] or len(mine) >= len(theirs):
            continue
        rest = iter(theirs[core:])
        if all(token in rest for token in mine[core:]):  # in order: a subsequence
            return line
    return None


def assert_partial_is_true(got: str, expected: str, err: str = "") -> None:
    """
    A partial listing (exit 3) may miss sockets, and owners of tasks it could not read, but
    every line must be one of ss's once users are set aside, and every user it names must
    be one ss named on that line. Where it says it could not read an interface list, a bound
    interface may show as ss shows one it cannot name, ``%if<index>`` (``if<index>`` for a
    packet socket). Where it says it could not read some sockets, a line may lack some of its
    details (:func:`_details_cut`), never its state, queues or addresses.
    """
    no_names = "interface lists" in err
    truth: dict[str, set[str]] = {}
    for line in normalize(expected):
        users = USERS_RE.search(line)
        truth.setdefault(_partial_key(line, no_names), set()).update(
            re.findall(r'\("[^"]*",pid=\d+,fd=\d+\)', users.group(1) if users else ""))
    for line in normalize(got):
        key = _partial_key(line, no_names)
        if key not in truth and " sockets" in err:
            key = _details_cut(key, truth) or key
        assert key in truth, f"{line!r} is not one of ss's lines"
        users = USERS_RE.search(line)
        named = set(re.findall(r'\("[^"]*",pid=\d+,fd=\d+\)', users.group(1) if users else ""))
        assert named <= truth[key], line


def ours(prog: drgn.Program, opts: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    capsys.readouterr()
    code = run(prog, ["-H", *opts.split()], out=out)
    return code, out.getvalue(), capsys.readouterr().err


@pytest.mark.parametrize("opts", OPTION_SETS + FILTER_SETS)
def test_same_lines_as_ss(prog: drgn.Program, workload: dict[str, Any], opts: str,
                          capsys: pytest.CaptureFixture[str]) -> None:
    mode = os.environ.get("DRGN_SS_MODE")
    if mode is not None and mode not in EVERY_SET_MODES and opts not in EVERY_MODE_SETS:
        pytest.skip(f"how drgn-ss prints it is compared in the {' and '.join(EVERY_SET_MODES)} modes")
    expected = workload["ss"][opts]
    # A family this kernel has not (MPTCP in 5.10): ss lists nothing, and drgn-ss must not either.
    absent = "-M" in opts.split()[0] and "t" not in opts.split()[0] and not workload.get("mptcp", True)
    assert expected.strip() or absent, f"ss -H {opts} printed nothing: the workload is not running"
    code, got, err = ours(prog, opts, capsys)
    if code == 3 and "sockets are not listed: " in err and "before 5.11" in err:
        # A family built as a module, without the module's debug info (the btf mode) on a
        # kernel that keeps no BTF for its modules (5.10): said in one line, the rest listed.
        assert os.environ.get("DRGN_SS_NO_DEBUG_INFO") == "1", err
        pytest.skip(err.strip())
    if code == 3 and workload.get("dump_level", 0) & 8:
        # makedumpfile's "user pages" filter (level 8) can drop kernel pages (1.7.2 does not
        # know 6.10+'s slab page type): then the listing must be partial and say so, and
        # every line it prints must be one ss printed.
        assert_partial_said(err)
        assert_partial_is_true(got, expected, err)
        return
    assert code == 0, err
    assert_same_lines(got, expected)
    assert_counters_grow(got, expected)


@pytest.mark.parametrize("opts", ["-tanp", "-xanp", "-tlnT", "-tlnpT sport = :7007"])
def test_proc_owners_as_ss(prog: drgn.Program, target: Target, workload: dict[str, Any], opts: str,
                           capsys: pytest.CaptureFixture[str]) -> None:
    """``--owners proc`` (a scan of /proc as ss makes it, -T's threads too) names what ss names."""
    if target.kind != "live":
        pytest.skip("/proc is the running guest's")
    code, got, err = ours(prog, f"--owners proc {opts}", capsys)
    assert code == 0, err
    assert_same_lines(got, workload["ss"][opts])


@pytest.mark.parametrize("owners", ["kernel", "proc"])
def test_hostile_process_name(prog: drgn.Program, target: Target, workload: dict[str, Any], owners: str,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """
    A process named with a newline, an escape sequence, a double quote, a non-ASCII
    character and a ")": its socket's line stays one line and shows the name as ss 7.0
    does (controls ".", bytes past ASCII "?", cut at the ")"); nothing in the output can
    move a terminal's cursor.
    """
    if owners == "proc" and target.kind != "live":
        pytest.skip("/proc is the running guest's")
    code, got, err = ours(prog, f"-tlnp --owners {owners}", capsys)
    assert code in (0, 3), err
    assert all(ch.isprintable() for line in got.splitlines() for ch in line), "a control character"
    mine = [line for line in got.splitlines() if f":{HOSTILE_PORT} " in line]
    if code == 3 and (not mine or "users:(" not in mine[0]):  # see test_same_lines_as_ss
        assert workload.get("dump_level", 0) & 8, err
        pytest.skip("partial listing: the socket's or the process's page is not in this dump")
    assert len(mine) == 1, got
    users = re.escape(f'users:(("{HOSTILE_SHOWN}",pid={workload["hostile_pid"]},fd=') + r"\d+\)\)$"
    assert re.search(users, mine[0].rstrip()), mine[0]
    expected = [line for line in workload["ss"]["-nlpt"].splitlines() if f":{HOSTILE_PORT} " in line]
    assert normalize(mine[0]) == normalize(expected[0])
    # JSON: the name as the kernel has it, escaped by the encoder, in plain ASCII.
    code, got, err = ours(prog, f"--ndjson -tlnp --owners {owners}", capsys)
    assert code in (0, 3), err
    assert got.isascii() and all(ch.isprintable() for line in got.splitlines() for ch in line)
    mine_json = [json.loads(line) for line in got.splitlines() if f'"local_port":{HOSTILE_PORT},' in line]
    assert len(mine_json) == 1, got
    assert [(o["command"], o["pid"]) for o in mine_json[0]["owners"]] == [
        (HOSTILE_NAME.decode(), workload["hostile_pid"])]


#: Option sets whose JSON is checked against ss's text: every field the objects carry.
JSON_OPTION_SETS = ("-tanp", "-uanp", "-tlne", "-uanpe", "-tano", "-tlp", "-tan state bucket", "-tanm",
                    "-uanm", "-tanmi", "-tanoi", "-xane", "-xanm", "-uan --tos --inet-sockopt", "-tlnT",
                    "-wanp", "-0anp", "-f netlink -an", "-Manp", "-Sanp", "--vsock -an")


@pytest.mark.parametrize("opts", JSON_OPTION_SETS)
def test_json_same_sockets_as_ss(prog: drgn.Program, workload: dict[str, Any], opts: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """
    ``--json`` validates against the schema, and each object, rebuilt into a text line from
    its fields alone, is a line ss printed: the same sockets as the text, nothing lost.
    ``--ndjson`` gives the same objects, one per line.
    """
    code, got, err = ours(prog, f"--json {opts}", capsys)
    objects = json.loads(got)
    validator = schema_validator()
    for obj in objects:
        validator.validate(obj)
    selection = _selection(build_parser("ss", False).parse_args(opts.split()))
    lines = [text_line(obj, not selection.single_proto, not selection.single_state) for obj in objects]
    expected = workload["ss"][opts]
    if code == 3 and workload.get("dump_level", 0) & 8:  # see test_same_lines_as_ss
        assert_partial_said(err)
        assert_partial_is_true("\n".join(lines), expected, err)
        return
    assert code == 0, err
    assert_same_lines("\n".join(lines), expected)
    code, got, err = ours(prog, f"--ndjson {opts}", capsys)
    assert code == 0, err
    again = [_still(json.loads(line)) for line in got.splitlines()]
    if time_wait_gone():  # it may have expired between the two runs
        again, objects = ([o for o in objs if not (o["state"] == "TIME-WAIT" and 22 in (o["local_port"],
                                                                                       o["peer_port"]))]
                          for objs in (again, objects))
    assert again == list(map(_still, objects))


def _still(obj: dict[str, Any]) -> dict[str, Any]:
    """
    A socket's object less what moves on a running kernel between two runs: timers, -i's
    elapsed times, and the zero-window pair's probe counters and drops (see normalize()).
    """
    if obj.get("timer"):
        obj["timer"]["expires_ms"] = None
    probing = 7001 in (obj["local_port"], obj["peer_port"])
    if obj.get("tcp_info"):
        for key in ("last_data_sent", "last_data_recv", "last_ack_recv", "busy_time", "rwnd_limited",
                    "sndbuf_limited", *(("backoff", "segs_out", "segs_in") if probing else ())):
            obj["tcp_info"][key] = None
    if obj.get("skmem"):
        obj["skmem"]["drops"] = None
    return obj


SUMMARY_NUMBERS = re.compile(r"-?\d+")


def test_summary_same_as_ss(prog: drgn.Program, target: Target, workload: dict[str, Any],
                            capsys: pytest.CaptureFixture[str]) -> None:
    """
    ``-s`` prints ss's summary text with the kernel's counters. On a running kernel the
    counters move (our own run opens files, not sockets; TIME-WAITs expire): each number
    must lie between ss's before and after ours, which are taken side by side. On a dump,
    ss's summary from just before the dump.
    """
    if target.kind == "live":
        before = subprocess.run(["ss", "-s"], capture_output=True, text=True, check=True).stdout
    code, got, err = ours(prog, "-s", capsys)
    if code == 3:  # counters in pages a filtered dump lost: shown as "?", and said
        assert workload.get("dump_level", 0) & 8 and "summary counters" in err, err
        assert "?" in got
    else:
        assert code == 0, err
    after = (subprocess.run(["ss", "-s"], capture_output=True, text=True, check=True).stdout
             if target.kind == "live" else workload["ss_summary"])
    if target.kind != "live":
        before = after
    assert "TCP:   " in after and workload["netns"]  # a summary of the workload's namespace, not empty
    # The same text around the numbers (their padding aside).
    def words(text: str) -> str:
        return SUMMARY_NUMBERS.sub("N", " ".join(text.split()).replace("?", "0"))

    assert words(got) == words(after)
    mine = re.findall(r"-?\d+|\?", got)
    # A dump taken a minute after ss's summary: the workload's TIME-WAIT socket may be gone.
    expired = int(target.kind != "live" and time_wait_gone())
    for value, low, high in zip(mine, *(map(int, SUMMARY_NUMBERS.findall(t)) for t in (before, after))):
        assert value == "?" or min(low, high) - expired <= int(value) <= max(low, high), (got, before, after)
    assert mine[0] == "?" or int(mine[0]) > 0


def test_workload_covers_the_socket_kinds(workload: dict[str, Any]) -> None:
    """The comparisons above are only as good as the workload: check it has every kind."""
    text = workload["ss"]["-tanp"] + workload["ss"]["-uanp"] + workload["ss"]["-tlne"]
    for needle in ("TIME-WAIT", "FIN-WAIT-2", "CLOSE-WAIT", "ESTAB", "LISTEN", "UNCONN",
                   "[::ffff:127.0.0.1]", "%lo:", "[::]:80", "*:8080", "v6only:1",
                   '"ss-forked"', '"ss-reuse"', "cgroup:/drgn-ss/inner"):
        assert needle in text, needle
    assert re.search(r" cgroup:/(\s|$)", text, re.M), "no socket in the root cgroup"
    assert any(int(line.split()[2]) > 0 for line in workload["ss"]["-tanp"].splitlines()), "no Send-Q"
    assert ":22 " not in workload["ss"]["-nlpt"].replace("0.0.0.0:22 ", ""), "other netns leaked"


def test_kernel_walk_owners_equal_proc_owners(prog: drgn.Program, target: Target,
                                              workload: dict[str, Any]) -> None:
    """
    The owners of the namespace's sockets, as tests/kernel/reference.py finds them (drgn's
    helpers: every process in the pid table, its open files), and as drgn-ss's raw walk
    does, against those that /proc showed (now, or the workload's before the dump).
    """
    errors = WalkErrors()
    net = prog["init_net"].address_of_().value_()
    socks = inet_sockets(prog, net, errors=errors)
    # MPTCP's subflows share their MPTCP socket's inode: /proc gives them its holders, which
    # drgn-ss gives them through the MPTCP socket (owners.subflow_owners), not this walk.
    shared = {s.ino for s in mptcp_sockets(prog, net, errors=errors)}
    inodes = {s.ino for s in socks if s.ino and s.ino not in shared}
    walked = {ino: owners for ino, owners in reference.owners(prog, errors).items() if ino in inodes}
    if target.kind == "live":
        scanned = {ino: [(o.comm, o.pid, o.fd) for o in owners]
                   for ino, owners in proc_owners().items() if ino in inodes}
    else:
        scanned = {int(ino): [tuple(o) for o in owners]
                   for ino, owners in workload["proc_owners"].items() if int(ino) in inodes}
    if errors and workload.get("dump_level", 0) & 8:  # see test_same_lines_as_ss
        assert "Excluded page" in errors.first
        pairs = {(ino, o) for ino, owners in scanned.items() for o in owners}
        assert {(ino, o) for ino, owners in walked.items() for o in owners} <= pairs
        return
    assert not errors, errors.describe()
    assert len(walked) >= 20
    assert walked == scanned
    # The raw walk (what drgn-ss uses) finds the same, keyed by struct sock address.
    inode_of = {s.address: s.ino for s in socks if s.socket}
    raw = {inode_of[sock]: [(o.comm, o.pid, o.fd) for o in owners]
           for sock, owners in kernel_owners(prog, errors).items() if inode_of.get(sock) in inodes}
    assert not errors, errors.describe()
    assert raw == scanned


def test_native_owners_equal_python_owners(prog: drgn.Program, workload: dict[str, Any],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """
    drgn_ss._fast.socket_holders (C) finds what the Python raw walk finds, in ss's order: as a
    dict, and as a HolderMap (compact), the same mapping.
    """
    fast = native()
    if fast is None:
        pytest.skip("drgn_ss._fast is not built")
    c_errors, c_counts = WalkErrors(), dict[str, int]()
    c = kernel_owners(prog, c_errors, c_counts)
    map_errors, map_counts = WalkErrors(), dict[str, int]()
    held = kernel_owners(prog, map_errors, map_counts, compact=True)
    assert isinstance(held, fast.HolderMap)
    monkeypatch.setenv("DRGN_SS_PURE_PYTHON", "1")
    py_errors, py_counts = WalkErrors(), dict[str, int]()
    py = kernel_owners(prog, py_errors, py_counts)
    if py_errors and workload.get("dump_level", 0) & 8:
        pytest.skip(f"tasks partly missing from this dump: {py_errors.describe()}")
    assert (c_errors, c_counts) == (py_errors, py_counts) == (map_errors, map_counts)
    assert len(py) >= 20 and c == py
    assert len(held) == len(py) and list(held) == sorted(py) and held.keys() == py.keys()
    assert dict(held.items()) == py and held.values() == [py[k] for k in sorted(py)]
    assert all(held[k] == v and held.get(k) == v and k in held for k, v in py.items())
    assert 1 not in held and held.get(1) is None and held.get(1, ()) == ()


def test_native_unix_walk_equals_python(prog: drgn.Program, target: Target, workload: dict[str, Any],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """drgn_ss._fast.walk_unix (C) decodes what the Python walk decodes, every namespace's."""
    if native() is None:
        pytest.skip("drgn_ss._fast is not built")
    if target.kind != "core":
        pytest.skip("a running kernel moves between the two walks")
    nets = netns_list(prog)
    c_errors = WalkErrors()
    c = unix_sockets(prog, nets, c_errors)
    monkeypatch.setenv("DRGN_SS_PURE_PYTHON", "1")
    py_errors = WalkErrors()
    py = unix_sockets(prog, nets, py_errors)
    if py_errors and workload.get("dump_level", 0) & 8:
        pytest.skip(f"sockets partly missing from this dump: {py_errors.describe()}")
    assert c_errors == py_errors
    assert len(py) >= 20 and c == py


@pytest.mark.parametrize(("script", "opts"), [("ss_nlpt.py", "-nlpt"), ("ss.py", "-tanp")])
def test_scripts_under_drgn(target: Target, workload: dict[str, Any], script: str, opts: str) -> None:
    """The scripts themselves, as a user runs them: `drgn scripts/X.py` beside ss."""
    if target.kind != "live":
        pytest.skip("runs drgn on the live kernel")
    args = [] if script == "ss_nlpt.py" else opts.split()
    proc = subprocess.run(["drgn", "--main-symbols", os.path.join(REPO, "scripts", script), *args],
                          capture_output=True, text=True)
    expected = as_ss7(subprocess.run(["ss", *opts.split()], capture_output=True, text=True).stdout)
    assert proc.returncode == 0, proc.stderr
    if script == "ss_nlpt.py":
        assert proc.stdout == expected  # byte for byte, header and padding included
    else:
        assert normalize(proc.stdout) == normalize(expected)


def _on_pty(columns: int, write: Any) -> str:
    """Run ``write(file)`` with a terminal of ``columns`` as the file; return what it printed."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR  # keep "\n" as ss wrote it
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    with os.fdopen(slave, "w", closefd=True) as f:
        write(f)
    import select

    # Until EIO (the writer's side is closed and all is read): a read returns what the tty
    # layer has moved so far, which on a busy emulated guest is not yet all of it.
    chunks = []
    while select.select([master], [], [], 10)[0]:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return b"".join(chunks).decode()


@pytest.mark.parametrize("columns", [80, 150])
def test_terminal_layout_same_as_ss(prog: drgn.Program, target: Target, workload: dict[str, Any],
                                    columns: int) -> None:
    """On a terminal ss spreads its columns over the width: so do we, byte for byte."""
    if target.kind != "live":
        pytest.skip("needs ss on the same kernel")
    opts = ["-tlnp"]
    expected = as_ss7(_on_pty(columns, lambda f: subprocess.run(["ss", *opts], stdout=f, check=True)))
    got = _on_pty(columns, lambda f: run(prog, opts, out=f))
    assert len(expected.splitlines()) > 5
    assert got == expected


def test_drgn_ss_command_on_the_dump(target: Target, prog: drgn.Program, workload: dict[str, Any],
                                    tmp_path: Any) -> None:
    """
    The installed command, opening the dump itself: first with an empty facts cache and no
    debug info (6.0+: it says so and reads the kernel's BTF and kallsyms; before: one line
    naming the package), then with -s VMLINUX (it loads DWARF and fills the cache), then
    without -s again: same listing, and no debug info loaded.
    """
    if target.kind != "core":
        pytest.skip("opens a dump file")
    assert target.path and target.vmlinux
    drgn_ss = os.path.join(os.path.dirname(sys.executable), "drgn-ss")
    env = {**os.environ, "DEBUGINFOD_URLS": "", "DRGN_SS_CACHE": str(tmp_path)}
    release = workload["release"]
    p = subprocess.run([drgn_ss, "-c", target.path, "-t"], capture_output=True, text=True, env={
        **env, "DRGN_SS_CACHE": str(tmp_path / "nodebug")})
    if "SYMBOL(kallsyms_names)" in vmcoreinfo(prog):  # 6.0+: the kernel's own BTF and kallsyms
        assert p.returncode in (0, 3) and p.stdout, p.stderr
        assert p.stderr.startswith(f"drgn-ss: no debug info for kernel {release}: reading the "
                                   "kernel's BTF and kallsyms instead\n")
    else:
        assert p.returncode == 1 and not p.stdout
        *summary, error = p.stderr.splitlines()
        assert error == (f"drgn-ss: no debug info for kernel {release}, and no BTF to use instead "
                         "(no kallsyms: VMCOREINFO locates them from Linux 6.0 on): install "
                         f"linux-image-{release}-dbg for its release, or pass -s VMLINUX")
        # A crash dump's summary comes first: what can be read without any types (the release).
        assert summary == ([f"drgn-ss: crash dump of Linux {release}",
                            f"drgn-ss: no panic message or crashing task: no debug info for kernel {release} "
                            "(give -s VMLINUX)"] if "dump_level" in workload else []), p.stderr
    listings = []
    for symbols in (["-s", target.vmlinux], []):
        p = subprocess.run([drgn_ss, "-c", target.path, *symbols, "-H", "-tanp", "--stats"],
                           capture_output=True, text=True, env=env)
        *warnings, stats_line = p.stderr.splitlines()
        stats = json.loads(stats_line)
        assert stats["debug_info_loaded"] == bool(symbols)
        assert stats["sockets"] == len(p.stdout.splitlines())
        if p.returncode == 3 and workload.get("dump_level", 0) & 8:  # see test_same_lines_as_ss
            assert "Excluded page" in p.stderr
            assert_partial_is_true(p.stdout, workload["ss"]["-tanp"], p.stderr)
        else:
            assert p.returncode == 0, p.stderr
            assert normalize(p.stdout) == normalize(workload["ss"]["-tanp"])
        listings.append(p.stdout)
    assert listings[0] == listings[1]


def test_symbols_on_a_warm_cache_load_no_dwarf(target: Target, prog: drgn.Program, tmp_path: Any) -> None:
    """
    -s VMLINUX on a warm facts cache: the file's build ID is checked against the dump's and its
    DWARF is not loaded (--stats), but for the crash summary of a dump of a panic, which reads
    drgn Objects; the output (with --header's line of a dump that did not panic) is that of
    the run without -s and of the first run, which loaded DWARF. A vmlinux of another build
    still fails at once, in one line.
    """
    import glob

    from drgn_ss.kernel.crash import panicked
    from drgn_ss.kernel.images import elf_build_id

    if target.kind != "core":
        pytest.skip("opens a dump file")
    assert target.path and target.vmlinux
    drgn_ss = os.path.join(os.path.dirname(sys.executable), "drgn-ss")
    env = {**os.environ, "DEBUGINFOD_URLS": "", "DRGN_SS_CACHE": str(tmp_path)}
    crashed = bool(panicked(prog))
    options = ["-H" if crashed else "--header", "-tanpeo", "--stats"]

    def drgn_ss_run(*args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        p = subprocess.run([drgn_ss, "-c", target.path or "", *args, *options], capture_output=True,
                           text=True, env=env, timeout=300)
        assert p.returncode in (0, 3) and "Traceback" not in p.stderr, p.stderr
        return p, json.loads(p.stderr.splitlines()[-1])

    cold, cold_stats = drgn_ss_run("-s", target.vmlinux)
    assert cold_stats["debug_info_loaded"] and cold_stats["types"] == "DWARF", cold_stats
    warm, warm_stats = drgn_ss_run("-s", target.vmlinux)
    assert warm_stats["debug_info_loaded"] == crashed, warm_stats
    if not crashed:
        assert warm_stats["types"] is None, warm_stats  # every fact from the cache
        assert warm.stdout.startswith("# dump of Linux "), warm.stdout[:200]
    bare, bare_stats = drgn_ss_run()
    assert not bare_stats["debug_info_loaded"], bare_stats
    assert (warm.returncode, warm.stdout) == (bare.returncode, bare.stdout) == (cold.returncode, cold.stdout)

    kernels = os.path.dirname(os.path.dirname(target.vmlinux))  # vmtests: KERNEL/vmlinux, side by side
    others = sorted(v for v in glob.glob(os.path.join(kernels, "*", "vmlinux"))
                    if elf_build_id(v) != elf_build_id(target.vmlinux))
    if not others:
        pytest.skip("no other kernel's vmlinux at hand (vmtests fetches the matrix's one by one)")
    p = subprocess.run([drgn_ss, "-c", target.path, "-s", others[0], "-tan"], capture_output=True, text=True,
                       env=env, timeout=300)
    assert (p.returncode, p.stdout) == (1, ""), p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith(
        f"drgn-ss: {others[0]} (build ID {elf_build_id(others[0])}) does not match kernel "), p.stderr


def test_peers_are_the_holders_ss_shows_for_the_peer_inode(prog: drgn.Program, workload: dict[str, Any],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """
    ``--peers``: each unix socket's ``peer:(...)`` is the ``users:(...)`` ss shows on the line
    of the socket whose inode is that socket's peer inode; none where the peer is not listed
    (a connection not accepted yet) or held by no process.
    """
    code, got, err = ours(prog, "-xanp --peers", capsys)
    if code == 3 and workload.get("dump_level", 0) & 8:
        pytest.skip("partial listing: see test_same_lines_as_ss")
    assert code == 0, err
    users = {}
    for line in workload["ss"]["-anp"].splitlines():  # NETID STATE RQ WQ NAME INODE * PEER
        words = line.split()
        if words[0] in ("u_str", "u_dgr", "u_seq"):
            users[words[5]] = line.split(" users:", 1)[1] if " users:" in line else None
    checked = 0
    for line in got.splitlines():
        words = line.split()
        peer_ino = words[7]
        mine = line.split(" peer:", 1)[1] if " peer:" in line else None
        expected = users.get(peer_ino) if peer_ino != "0" else None
        assert mine == expected, (line, expected)
        checked += mine is not None
    assert checked >= 4, got  # the workload's connected pairs, each side's peer held


def test_every_family_from_a_dump_as_ss(target: Target, workload: dict[str, Any], tmp_path: Any) -> None:
    """
    ``drgn-ss -c DUMP -s VMLINUX [-s MODULE.ko...] -anp``: every family, as ss listed them in
    the guest (the modules' debug files given as drgn takes them, with ``-s``).
    """
    if target.kind != "core":
        pytest.skip("opens a dump file")
    assert target.path and target.vmlinux
    drgn_ss = os.path.join(os.path.dirname(sys.executable), "drgn-ss")
    modules = [path for path in os.environ.get("DRGN_SS_MODULE_DEBUG", "").split(":") if path]
    symbols = [arg for path in [target.vmlinux, *modules] for arg in ("-s", path)]
    p = subprocess.run([drgn_ss, "-c", target.path, *symbols, "-H", "-anp"], capture_output=True, text=True,
                       env={**os.environ, "DEBUGINFOD_URLS": "", "DRGN_SS_CACHE": str(tmp_path)})
    if p.returncode == 3 and workload.get("dump_level", 0) & 8:  # see test_same_lines_as_ss
        assert "Excluded page" in p.stderr, p.stderr
        assert_partial_is_true(p.stdout, workload["ss"]["-anp"], p.stderr)
        return
    assert p.returncode == 0, p.stderr
    assert_same_lines(p.stdout, workload["ss"]["-anp"])
