"""--report against the sockets the workload made with known numbers in a namespace of its own
(tests/kernel/listen_queues.py, tests/kernel/report_states.py): CLOSE-WAIT count and ages,
TIME-WAIT per peer and against tcp_max_tw_buckets, local ports per destination, orphans,
memory against tcp_mem, the listen counters against /proc/net/netstat and sockstat, and
exactly one warning for each threshold the workload crossed; on every kernel and in every mode.

The guest the outside modes read lowered the host-wide limits (tcp_max_orphans, tcp_mem);
the guest the live tests run in did not (it runs every other test too): there the test
lowers them around its own runs and puts them back.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from typing import Any

import drgn
import pytest
from drgn_ss.commands.ss import run

from tests.kernel.test_queues import kernel_clock

#: The warnings' kinds, by how their lines start.
KINDS = {"accept queue full:": "accept", "orphaned TCP sockets:": "orphans",
         "TIME-WAIT sockets:": "time_wait", "TCP under memory pressure": "tcp_memory",
         "TCP over its pressure mark": "tcp_memory", "UDP ": "udp_memory", "local ports to ": "port_use"}
KIND_RE = re.compile(r"^\d+ CLOSE-WAIT older than ")
IN_GUEST = os.environ.get("DRGN_SS_TARGET") == "live"
#: The kernel's clock (seconds) just before and after the last JSON report was made.
CLOCK = [0.0, 0.0]
#: How far an age may be from the workload's own timing (as tests/kernel/test_queues.py's).
EARLY_MS, LATE_MS = 50, 2000


def ours(prog: drgn.Program, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    capsys.readouterr()
    code = run(prog, argv, out=out)
    return code, out.getvalue(), capsys.readouterr().err


def _truth(workload: dict[str, Any]) -> dict[str, Any]:
    truth = workload.get("listen_queues")
    assert truth and "failed" not in truth, f"no report states made in this guest: {truth}"
    return truth


def _families_left_out(err: str) -> bool:
    """Exit 3 for families whose module's types cannot be had (5.10 without debug info): said, and all."""
    lines = [line for line in err.splitlines()  # drgn-ss's own warnings (not drgn's, nor the cache's)
             if re.match(r"[\w.-]+: warning: ", line) and "cannot write the facts cache" not in line]
    return bool(lines) and all(" sockets are not listed: no type information" in line for line in lines)


def _kind(line: str) -> str:
    if KIND_RE.match(line):
        return "close_wait"
    return next((kind for start, kind in KINDS.items() if line.startswith(start)), f"unknown: {line}")


@pytest.fixture
def lowered(workload: dict[str, Any]) -> Iterator[bool]:
    """
    Whether the host-wide limits are lowered: the outside modes' guest did it; in the guest,
    lower them now (and put them back after).
    """
    truth = _truth(workload)
    if not IN_GUEST:
        yield bool(truth.get("lowered"))
        return
    from tests.kernel.report_states import lower_host_limits, open_host_limits, restore_host_limits

    before = lower_host_limits(open_host_limits())
    try:
        yield True
    finally:
        restore_host_limits(before)


def _report(prog: drgn.Program, workload: dict[str, Any], capsys: pytest.CaptureFixture[str],
            *extra: str) -> tuple[dict[str, Any], str]:
    argv = ["--netns", str(_truth(workload)["netns_inode"]), "--report", *extra]
    code, text, err = ours(prog, argv, capsys)
    CLOCK[0] = kernel_clock(prog)
    code_j, out_j, err_j = ours(prog, [*argv, "--json"], capsys)
    CLOCK[1] = kernel_clock(prog)
    if workload.get("dump_level", 0) & 8 and {code, code_j} & {1, 3}:  # 1: --netns's namespace list
        pytest.skip(f"a filtered dump lost pages the report needs: {(err or err_j).splitlines()[-1]}")
    assert code == code_j and (code == 0 or (code == 3 and _families_left_out(err))), err + err_j
    report = json.loads(out_j)
    # The text's warnings are the JSON's, in the same order (on a running kernel, ages move between the runs).
    section = [line.strip() for line in text.split("\nWarnings:", 1)[1].splitlines()[1:]]
    if prog.flags & drgn.ProgramFlags.IS_LIVE:  # what time can change between the two runs aside
        def steady(lines: list[str]) -> list[str]:
            return [k for k in map(_kind, lines) if k not in ("close_wait", "time_wait", "port_use")]
        assert steady(section) == steady(report["warnings"]), text
    else:
        assert section == report["warnings"], text
    return report, text


def test_report_counts_what_the_workload_made(prog: drgn.Program, workload: dict[str, Any],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    truth = _truth(workload)
    made = truth["report"]
    report, _text = _report(prog, workload, capsys)
    assert report["netns"] == [truth["netns_inode"]]
    # CLOSE-WAIT: the count, each one's age since its peer's FIN, its holder.
    cw = report["close_wait"]
    assert cw["count"] == len(made["close_wait"]["sockets"])
    assert cw["by_process"] == [{"pid": truth["pid"], "command": "ss-queues", "count": cw["count"]}]
    peers = {f"127.0.0.1:{c['port']}": c for c in made["close_wait"]["sockets"]}
    assert {o["peer"] for o in cw["oldest"]} == set(peers)
    for o in cw["oldest"]:
        assert o["local"] == f"127.0.0.1:{made['close_wait']['port']}"
        assert o["owners"][0]["pid"] == truth["pid"]
        # Since the client's FIN: after its shutdown() began, before its end saw the EOF.
        made_at = peers[o["peer"]]
        low = (CLOCK[0] - made_at["after"]) * 1000 - EARLY_MS
        high = (CLOCK[1] - made_at["before"]) * 1000 + LATE_MS
        assert low <= o["age_ms"] <= high, (o, low, high)
    ages = [o["age_ms"] for o in cw["oldest"]]
    assert ages == sorted(ages, reverse=True)
    # TIME-WAIT: every one to one peer, from the namespace's lowered port range (or none, once
    # they have expired).
    tw = report["time_wait"]
    tw_peer = f"127.0.0.1:{made['time_wait']['port']}"
    alive = _time_waits(made)
    assert tw["max"] == made["time_wait"]["max"]
    if alive is not None:
        assert tw["count"] == report["totals"]["summary"][0]["tcp_tws"] == alive, tw
        by_peer = [p for p in tw["by_peer"] if p["peer"] == tw_peer]
        use = [u for u in tw["port_use"] if u["peer"] == tw_peer]
        assert by_peer == ([{"peer": tw_peer, "count": alive}] if alive else []), tw
        assert use == ([{"peer": tw_peer, "netns": truth["netns_inode"], "in_use": alive,
                         "range": made["time_wait"]["range"]}] if alive else []), tw["port_use"]
    # The listen counters are /proc/net/netstat's in the namespace; the full listener is first.
    counters = report["listeners"]["counters"][0]
    assert (counters["listen_overflows"], counters["listen_drops"]) == (
        truth["netstat"]["ListenOverflows"], truth["netstat"]["ListenDrops"])
    first = report["listeners"]["sockets"][0]
    assert first["local"] == f"127.0.0.1:{truth['full']['port']}"
    assert first["accept_len"] >= first["accept_max"]
    # The holder: every socket it holds, each state.
    holder = next(p for p in report["processes"] if p["pid"] == truth["pid"])
    assert holder["command"] == "ss-queues" and holder["sockets"] == truth["sockets"], holder
    assert holder["states"]["tcp:CLOSE-WAIT"] == cw["count"]


def test_orphans_and_memory_against_their_limits(prog: drgn.Program, workload: dict[str, Any],
                                                 lowered: bool, capsys: pytest.CaptureFixture[str]) -> None:
    """Orphans and TCP memory as sockstat counts them, against the limits as the sysctls say."""
    truth = _truth(workload)
    before = _sockstat(truth)
    report, _text = _report(prog, workload, capsys)
    after = _sockstat(truth)
    orphans, tcp = report["orphans"], report["memory"]["tcp"]
    # Orphans end when their peers stop answering; in the dump they are what the workload saw.
    seen = sorted((before["orphan"], after["orphan"]))
    assert seen[0] <= orphans["count"] <= seen[1], (orphans, before, after)
    limits = _limits(truth)
    assert orphans["max"] == limits["tcp_max_orphans"][0]
    assert [tcp["min"], tcp["pressure"], tcp["max"]] == limits["tcp_mem"], tcp
    assert [report["memory"]["udp"][k] for k in ("min", "pressure", "max")] == limits["udp_mem"]
    low, high = sorted((before["mem"], after["mem"]))
    assert low * 0.8 - 16 <= tcp["allocated"] <= high * 1.25 + 16, (tcp, before, after)
    if lowered:
        assert tcp["under_pressure"] is True
    kinds = [_kind(w) for w in report["warnings"]]
    assert ("orphans" in kinds) == (orphans["count"] >= 0.8 * orphans["max"])
    assert ("tcp_memory" in kinds) == bool(tcp["under_pressure"] or tcp["allocated"] >= tcp["pressure"])


def test_one_warning_per_threshold_crossed(prog: drgn.Program, workload: dict[str, Any], lowered: bool,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The full accept queue, TIME-WAIT at 90% of its limit, one destination at 90% of the port
    range; orphans and TCP memory where the limits were lowered; nothing else."""
    truth = _truth(workload)
    report, _text = _report(prog, workload, capsys)
    alive = _time_waits(truth["report"])
    if alive is None:
        pytest.skip("the TIME-WAIT sockets were expiring as the report was made")
    kinds = sorted(_kind(w) for w in report["warnings"])
    expected = ["accept"] + (["port_use", "time_wait"] if alive else [])
    if any(o["age_ms"] > 60_000 for o in report["close_wait"]["oldest"]):  # on a slow guest, in time
        expected += ["close_wait"]
    if lowered:
        expected += ["tcp_memory"]
        if report["orphans"]["count"] >= 0.8 * report["orphans"]["max"]:  # as long as their peers answer
            expected += ["orphans"]
    assert kinds == sorted(expected), report["warnings"]
    holder = f'"ss-queues"(pid={truth["pid"]})'
    by_kind = {_kind(w): w for w in report["warnings"]}
    assert by_kind["accept"].startswith(f"accept queue full: 127.0.0.1:{truth['full']['port']} {holder}:")
    if not alive:
        return
    tw = truth["report"]["time_wait"]
    low, high = tw["range"]
    assert by_kind["port_use"].startswith(f"local ports to 127.0.0.1:{tw['port']}: {alive} of "
                                          f"ip_local_port_range {low}-{high} in use"), by_kind["port_use"]
    assert f"TIME-WAIT sockets: {alive} of tcp_max_tw_buckets {tw['max']}" in by_kind["time_wait"]


def test_close_wait_threshold(prog: drgn.Program, workload: dict[str, Any],
                              capsys: pytest.CaptureFixture[str]) -> None:
    """Under --warn-at close-wait-age=0.001 every CLOSE-WAIT is old: one warning names them all."""
    truth = _truth(workload)
    report, _text = _report(prog, workload, capsys, "--warn-at", "close-wait-age=0.001")
    old = [w for w in report["warnings"] if _kind(w) == "close_wait"]
    count = len(truth["report"]["close_wait"]["sockets"])
    assert len(old) == 1 and old[0].startswith(f"{count} CLOSE-WAIT older than 1ms"), old
    assert old[0].count(f'"ss-queues"(pid={truth["pid"]})') == count


@pytest.mark.parametrize("argv, message", [
    (["--report", "-t"], "the report is of every socket of the namespaces listed"),
    (["--warn-at", "orphans=50"], "--warn-at sets when the report warns: give --report too"),
    (["--report", "--warn-at", "orphans=150"], "orphans takes percent"),
    (["--report", "--warn-at", "nothing=1"], "no such threshold"),
])
def test_report_option_errors(prog: drgn.Program, capsys: pytest.CaptureFixture[str], argv: list[str],
                              message: str) -> None:
    code, out, err = ours(prog, argv, capsys)
    assert code == 2 and not out and message in err, err


def _time_waits(made: dict[str, Any]) -> int | None:
    """
    How many of the workload's TIME-WAIT sockets the kernel holds at CLOCK (the last report's
    runs): all of them until 60 s after they were made (TCP_TIMEWAIT_LEN, less a margin for
    the timer's slack and the runs' own time), none from 70 s; None between.
    """
    age = CLOCK[0] - made["time_wait"]["at"]
    if CLOCK[1] - made["time_wait"]["at"] < 55:
        return len(made["time_wait"]["local_ports"])
    return 0 if age > 70 else None


def _sockstat(truth: dict[str, Any]) -> dict[str, int]:
    """/proc/net/sockstat's TCP line in the namespace: now in the guest, else as the workload saw it."""
    if not IN_GUEST:
        return dict(truth["sockstat"])
    with open(f"/proc/{truth['pid']}/net/sockstat") as f:
        words = next(line for line in f if line.startswith("TCP:")).split()[1:]
    return {name: int(value) for name, value in zip(words[::2], words[1::2])}


def _limits(truth: dict[str, Any]) -> dict[str, list[int]]:
    """The host-wide sysctls: now in the guest, else as the workload left them."""
    if not IN_GUEST:
        return dict(truth["sysctls"])
    out = {}
    for name in ("tcp_mem", "udp_mem", "tcp_max_orphans"):
        with open(f"/proc/sys/net/ipv4/{name}") as f:
            out[name] = [int(word) for word in f.read().split()]
    return out


def test_report_under_drgn_and_at_its_prompt(prog: drgn.Program, workload: dict[str, Any]) -> None:
    """scripts/report.py as a user runs it (live), and %ss --report at drgn's prompt (every mode)."""
    from contextlib import redirect_stdout

    import drgn_ss.commands.plugin  # noqa: F401
    from drgn.commands import run_command

    truth = _truth(workload)
    with redirect_stdout(io.StringIO()) as out:
        status = run_command(prog, f"ss --report --netns {truth['netns_inode']} --json")
    if status in (1, 3) and workload.get("dump_level", 0) & 8:
        pytest.skip("a filtered dump lost pages the report needs")
    # (3: a family without types, 5.10 without debug info: test_report_counts... says which)
    assert status in (0, 3) and "accept queue full: " in " ".join(json.loads(out.getvalue())["warnings"])
    if not IN_GUEST:
        return
    import subprocess

    script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "report.py")
    proc = subprocess.run(["drgn", "--main-symbols", script, "--netns", str(truth["netns_inode"])],
                          capture_output=True, text=True)
    assert proc.returncode == 0 or (proc.returncode == 3 and _families_left_out(proc.stderr)), proc.stderr
    count = len(truth["report"]["close_wait"]["sockets"])
    assert f"\nCLOSE-WAIT: {count}\n" in proc.stdout and "accept queue full: 127.0.0.1:" in proc.stdout


def test_report_per_container(prog: drgn.Program, workload: dict[str, Any],
                              capsys: pytest.CaptureFixture[str]) -> None:
    """--containers --all-netns: the container crun started is a group of its own, with its process."""
    truth = workload.get("container")
    if not truth or "skipped" in truth:
        pytest.skip(f"no OCI container in this guest: {truth and truth.get('skipped')}")
    code, out, err = ours(prog, ["--report", "--all-netns", "--containers", "--json"], capsys)
    if code in (1, 3) and workload.get("dump_level", 0) & 8:
        pytest.skip("a filtered dump lost pages the report needs")
    assert code == 0 or (code == 3 and _families_left_out(err)), err
    report = json.loads(out)
    mine = [c for c in report["containers"] if c["container"]["id"] == truth["id"]]
    # Its process, and any other in its cgroup (tests/container_paths.py has a layout of that id).
    assert len(mine) == 1 and truth["pid"] in mine[0]["pids"], mine
    members = [p for p in report["processes"] if p["pid"] in mine[0]["pids"]]
    assert all(p["container"]["id"] == truth["id"] for p in members)
    assert mine[0]["sockets"] == sum(p["sockets"] for p in members) >= 1, (mine, members)
