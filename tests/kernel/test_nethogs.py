"""scripts/nethogs.py: per-process traffic from the kernel's counters, against known volumes."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import drgn
import pytest
from drgn_ss.commands import ss
from drgn_ss.commands.common import EXIT_PARTIAL
from drgn_ss.commands.nethogs import run
from drgn_ss.kernel.crash import TIME_FORMAT, crash_time

from tests.kernel.churn import Churn
from tests.kernel.conftest import Target
from tests.kernel.workload import NETNS_NAMES

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.path.join(HERE, "traffic_gen.py")
MiB = 1 << 20


def _nethogs(prog: drgn.Program, args: list[str], generator: subprocess.Popen[str], lead: float
             ) -> tuple[int, list[dict[str, Any]], str]:
    """Run nethogs in a thread; ``lead`` seconds in, tell the generator to start sending."""
    out, err = io.StringIO(), io.StringIO()
    result: list[int] = []

    def target() -> None:
        saved = sys.stderr
        sys.stderr = err
        try:
            result.append(run(prog, args, out=out))
        finally:
            sys.stderr = saved

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(lead)
    assert generator.stdin
    generator.stdin.write("go\n")
    generator.stdin.flush()
    thread.join(300)
    assert not thread.is_alive(), "nethogs did not stop"
    return result[0], [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def _start(plan: list[str]) -> tuple[subprocess.Popen[str], list[int]]:
    gen = subprocess.Popen([sys.executable, GEN, *plan], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           text=True)
    assert gen.stdout
    ready = gen.stdout.readline().split()
    assert ready[:1] == ["READY"], ready
    return gen, [int(pid) for pid in ready[2:]]


def _stop(proc: subprocess.Popen[str]) -> dict[str, float]:
    """Stop the generator; return the seconds each sender that finished really took."""
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.stdout
    done = re.findall(r"^DONE (\S+) ([0-9.]+)$", proc.stdout.read(), re.MULTILINE)
    proc.wait(30)
    return {name: float(seconds) for name, seconds in done}


def _by_pid(sample: dict[str, Any], pid: int) -> dict[str, Any]:
    return next(p for p in sample["processes"] if p["pid"] == pid)


def _steady_rates(samples: list[dict[str, Any]], pid: int, key: str) -> list[float]:
    """A process's rates while it sent: the samples between its first and last busy one."""
    rates = [_by_pid(s, pid)[key] for s in samples]
    busy = [i for i, r in enumerate(rates) if r and r > 0]
    return rates[busy[0] + 1 : busy[-1]] if len(busy) > 2 else []


def _steady_mean_rate(samples: list[dict[str, Any]], pid: int, key: str) -> float:
    """
    A process's rate over the samples between its first and last busy one, each weighed by
    its interval: a sender delayed in one interval (a loaded emulated guest) catches up in
    the next, and its rate over them is its pace.
    """
    rates = [_by_pid(s, pid)[key] for s in samples]
    busy = [i for i, r in enumerate(rates) if r and r > 0]
    inside = range(busy[0] + 1, busy[-1]) if len(busy) > 2 else range(0)
    seconds = sum(samples[i]["rate_s"] for i in inside)
    return sum(rates[i] * samples[i]["rate_s"] for i in inside) / seconds if seconds else 0.0


def test_generator_volumes_and_rates(prog: drgn.Program, target: Target) -> None:
    """
    Three senders over loopback (40 MiB and 4 MiB over 10 s each, one idle) to a sink: each
    process's total within 2% of what it sent (the sink's, of all of it), and each sender's
    rate while it sent within 10% of its pace (weighed by interval: a sender delayed in one
    interval of a loaded emulated guest catches up in the next), each sample's within 25%.
    """
    if target.kind != "live":
        pytest.skip("samples a running kernel")
    gen, (big, small, idle) = _start([f"tg-big:{40 * MiB}:10", f"tg-small:{4 * MiB}:10", "tg-idle:0:1"])
    took: dict[str, float] = {}
    try:
        code, samples, err = _nethogs(prog, ["--json", "--interval", "1", "--count", "14"], gen, 1.5)
    finally:
        took = _stop(gen)
    assert code == 0 or (code == EXIT_PARTIAL and "warning: could not read" in err), err
    assert len(samples) == 14 and all(s["interval_s"] > 0 for s in samples)
    last = samples[-1]
    sink = next(p for p in last["processes"] if p["comm"] == "tg-sink")
    for pid, name, volume in ((big, "tg-big", 40 * MiB), (small, "tg-small", 4 * MiB)):
        row = _by_pid(last, pid)
        assert row["tcp"] == 1 and abs(row["sent"] - volume) <= 0.02 * volume, row
        rates = _steady_rates(samples, pid, "sent_rate")
        assert len(rates) >= 5, [_by_pid(s, pid)["sent_rate"] for s in samples]
        assert name in took, took
        pace = volume / took[name]  # 10 s, or more where the loaded guest starved the sender
        assert _steady_mean_rate(samples, pid, "sent_rate") == pytest.approx(pace, rel=0.1), (rates, took)
        assert all(abs(r - pace) <= 0.25 * pace for r in rates), (rates, took)
    assert _by_pid(last, idle)["sent"] < 1024
    assert abs(sink["received"] - 44 * MiB) <= 0.02 * 44 * MiB, sink
    assert sink["tcp"] == 3


def test_churn_keeps_the_interval(prog: drgn.Program, target: Target, tmp_path: Any) -> None:
    """
    Hundreds of short connections per second from several processes while sampling: every
    interval within 20% of the asked one, no failure, and a steady sender measured right
    (its rate, its total) all the same.
    """
    if target.kind != "live":
        pytest.skip("samples a running kernel")
    churn = Churn(str(tmp_path), tcp_clients=3)
    took: dict[str, float] = {}
    try:
        gen, (steady,) = _start([f"tg-steady:{20 * MiB}:10"])
        try:
            code, samples, err = _nethogs(prog, ["--json", "--interval", "1", "--count", "16", "--verbose"],
                                          gen, 1.5)
        finally:
            took = _stop(gen)
    finally:
        churn.stop()
    # a socket freed under the walk is skipped and said (exit 3, the documented partial code)
    assert code == 0 or (code == EXIT_PARTIAL and "warning: could not read" in err), err
    intervals = [s["interval_s"] for s in samples]
    # The interval is kept unless the sample before it (and its output) took longer (the
    # emulated guest is slow under churn, and new connections need a walk of the tasks for
    # their owners): then the next sample starts at once, without sleeping, and the schedule
    # slips instead of catching up with samples back to back.
    sleeps = [json.loads(line)["sleep_s"] for line in err.splitlines() if line.startswith('{"sockets"')]
    assert len(sleeps) == len(intervals) + 1, err
    assert all(i >= 0.8 for i in intervals), intervals
    assert all(i <= 1.2 or slept <= 0 for i, slept in zip(intervals, sleeps)), (intervals, sleeps)
    opened_per_s = sum(s["tcp_opened"] for s in samples) / sum(intervals)
    print(f"churn: {opened_per_s:.0f} TCP connections opened per second")
    assert opened_per_s >= 100, opened_per_s
    # Its 10 s of sending span 2 whole samples at least (besides the first and last, which it
    # fills in part), even where late samples stretched the intervals (under TCG on a loaded
    # machine, to ~4 s), and the samples outlast it (16 of them: at least 16 s, where it
    # takes 1.5 + 10 s, 15 s when starved): the last counts all it sent.
    rates = _steady_rates(samples, steady, "sent_rate")
    assert len(rates) >= 2, rates
    assert "tg-steady" in took, took
    assert _by_pid(samples[-1], steady)["sent"] == pytest.approx(20 * MiB, rel=0.02)
    # A sender that kept its pace (the guest did not starve it: 10 s, within 5%) is measured at
    # that pace. One starved under churn (13.5 s on a loaded CI machine) sends unevenly: its
    # rate over the samples inside its run is not its average (test_generator_volumes_and_rates
    # holds the pace without churn).
    if took["tg-steady"] <= 10.5:
        pace = 20 * MiB / took["tg-steady"]
        assert _steady_mean_rate(samples, steady, "sent_rate") == pytest.approx(pace, rel=0.1), (rates, took)
    # The sampler keeps up: its own CPU is on average under its interval, and no sample takes
    # more than three intervals' worth. Only that is asked here: in the emulated guest (10-20x
    # slow, slower still on a loaded CI machine: a mean of 0.56 s once) a sample that meets
    # many new connections walks the tasks for their owners. Its speed is judged natively
    # (test_sampler_cpu_natively, over --qemu).
    stats = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    cpu = [s["cpu_s"] for s in stats]
    assert cpu and sum(cpu) / len(cpu) < 1.0 and max(cpu) < 3, stats


def test_dump_gives_cumulative_bytes(prog: drgn.Program, target: Target, workload: dict[str, Any]) -> None:
    """On a dump: one sample, each process's bytes so far, no rates (a guest read over QMP is
    running: two samples, rates); the workload's 7001 sender has had 4096 bytes acknowledged,
    its receiver 4096 received (see workload.py)."""
    if target.kind == "live":
        pytest.skip("the generator tests sample the running kernel")
    running = bool(prog.flags & drgn.ProgramFlags.IS_LIVE)  # drgn --qemu
    out = io.StringIO()
    code = run(prog, ["--json", "--count", "1", "--interval", "0.5"], out=out)
    filtered = bool(workload.get("dump_level", 0) & 8)  # makedumpfile dropped slab pages
    assert code == 0 or (filtered and code == EXIT_PARTIAL), code
    (sample,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert (sample["interval_s"] is None) == (not running)
    mine = [p for p in sample["processes"] if p["pid"] == workload["pid"]]
    if not mine and code == EXIT_PARTIAL:
        pytest.skip("a filtered dump lost the workload's task")
    (row,) = mine
    assert (row["sent_rate"] is None) == (not running)
    if code == EXIT_PARTIAL:  # sockets were lost, maybe the 7001 pair's: what was read is still there
        assert row["tcp"] >= 1
        pytest.skip("a filtered dump lost some sockets: the byte counts cannot be checked")
    assert row["tcp"] > 5 and row["sent"] >= 4096 and row["received"] >= 4096


def test_sampler_cpu_natively(prog: drgn.Program, target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    """
    Over --qemu the sampler runs natively on a running kernel (the workload's few hundred
    sockets and tasks): each sample's CPU is under a fifth of its 0.5 s interval, where the
    emulated guest's live run can only ask that it keeps up.
    """
    if not prog.flags & drgn.ProgramFlags.IS_LIVE or target.kind == "live":
        pytest.skip("samples a running kernel natively (drgn --qemu)")
    out = io.StringIO()
    code = run(prog, ["--json", "--count", "4", "--interval", "0.5", "--verbose"], out=out)
    err = capsys.readouterr().err
    assert code in (0, EXIT_PARTIAL), err
    stats = [json.loads(line) for line in err.splitlines() if line.startswith('{"sockets"')]
    assert len(stats) == 5, err  # the baseline, then one a sample
    cpu = [s["cpu_s"] for s in stats]
    print(f"sampler CPU over --qemu: {cpu} s a sample")
    assert all(c < 0.1 for c in cpu), stats


@pytest.mark.parametrize("all_netns", [False, True])
def test_namespaces(prog: drgn.Program, target: Target, workload: dict[str, Any], all_netns: bool,
                    capsys: pytest.CaptureFixture[str]) -> None:
    """
    Each workload namespace's process holds, in its own namespace, an established pair (two
    TCP sockets) and a UDP socket: --all-netns counts them for it; the default (the namespace
    of the kernel's first task) shows none of them.
    """
    args = ["--json", "--count", "1", "--interval", "0.5", *(["--all-netns"] if all_netns else [])]
    out = io.StringIO()
    code = run(prog, args, out=out)
    err = capsys.readouterr().err
    filtered = bool(workload.get("dump_level", 0) & 8)
    assert code == 0 or (filtered and code == EXIT_PARTIAL and "warning: could not read" in err), err
    rows = {p["pid"]: p for p in json.loads(out.getvalue().splitlines()[-1])["processes"]}
    pids = [workload["netns"][name]["pid"] for name in NETNS_NAMES]
    if not all_netns:
        assert not set(pids) & set(rows), rows
        return
    if code == EXIT_PARTIAL:  # what was read must still be true
        assert all(rows[pid]["tcp"] <= 2 and rows[pid]["udp"] <= 1 for pid in pids if pid in rows), rows
        pytest.skip("a filtered dump lost some of the namespaces' sockets or tasks")
    assert [(rows[pid]["tcp"], rows[pid]["udp"]) for pid in pids if pid in rows] == [(2, 1)] * len(pids), rows


def _dump_output(prog: drgn.Program, args: list[str], workload: dict[str, Any]) -> tuple[int, str]:
    """One sample of nethogs with ``args``: its exit status (0, or partial on a filtered dump) and output."""
    out = io.StringIO()
    code = run(prog, ["--count", "1", "--interval", "0.5", *args], out=out)
    filtered = bool(workload.get("dump_level", 0) & 8)
    assert code == 0 or (filtered and code == EXIT_PARTIAL), code
    return code, out.getvalue()


def _header_time(prog: drgn.Program) -> str | None:
    """The dump's time as ``drgn-ss --header`` prints it, or None if it prints none."""
    out = io.StringIO()
    ss.run(prog, ["--header", "-tn"], out=out)
    found = re.search(r"^# (?:crash )?dump of Linux .*?, (?:taken|crashed) (.+? UTC)", out.getvalue(), re.M)
    return found.group(1) if found else None


def test_dump_sample_time_is_the_dumps(prog: drgn.Program, target: Target, workload: dict[str, Any]) -> None:
    """
    On a dump, the sample's time is the kernel's wall clock when it was dumped, as drgn-ss
    --header shows it (text) and in seconds (JSON): after the workload's own clock reading
    (its last act before READY), and not long after.
    """
    if target.kind != "core":
        pytest.skip("samples a running kernel: the time is this host's")
    when = crash_time(prog)
    text = _dump_output(prog, [], workload)[1]
    assert text.startswith(when.strftime(TIME_FORMAT) + "  "), text
    header = _header_time(prog)
    if header is not None:  # none where a panicked kernel's summary needs debug info this run lacks
        assert text.startswith(header + "  "), (header, text)
    (sample,) = [json.loads(line) for line in _dump_output(prog, ["--json"], workload)[1].splitlines()]
    assert sample["time"] == when.timestamp()
    if "wall_time" in workload:  # recorded by the guest before it was dumped (workload.py)
        assert workload["wall_time"] - 1 <= sample["time"] <= workload["wall_time"] + 600, (sample, workload)


def test_dump_unknowns_are_dashes_and_nulls(prog: drgn.Program, target: Target,
                                            workload: dict[str, Any]) -> None:
    """
    A dump has no interval: rates, connections opened and closed, and the TCP MIB's
    opened count are '-' in the text and null in JSON, never 0; the bytes are known.
    """
    if target.kind != "core":
        pytest.skip("samples a running kernel: two samples, an interval")
    code, text = _dump_output(prog, [], workload)
    header, columns, *rows = text.rstrip("\n").splitlines()
    assert header.endswith(" sockets, cumulative, - TCP connections opened (- seen)"), header
    assert columns.split()[2:4] == ["SENT", "KiB/s"], columns
    for row in rows:
        cells = row.split()
        sent_rate, received_rate, opened, closed = cells[-10], cells[-9], cells[-7], cells[-6]
        assert (sent_rate, received_rate, opened, closed) == ("-", "-", "-", "-"), row
    sample = json.loads(_dump_output(prog, ["--json"], workload)[1])
    assert (sample["interval_s"], sample["rate_s"], sample["tcp_opened"]) == (None, None, None)
    for p in sample["processes"]:
        assert (p["sent_rate"], p["received_rate"], p["opened"], p["closed"]) == (None, None, None, None), p
    mine = [p for p in sample["processes"] if p["pid"] == workload["pid"]]
    if code == 0:
        (row,) = mine
        assert type(row["sent"]) is int and type(row["received"]) is int, row


def test_connection_rows_bracket_ipv6(prog: drgn.Program, target: Target, workload: dict[str, Any]) -> None:
    """
    --by connection writes the workload's IPv6 pair over ::1 port 443 (and the IPv4-mapped
    one through port 8080) as ss does, ``[::1]:443``; JSON has the same text.
    """
    out = io.StringIO()
    code = run(prog, ["--by", "connection", "--count", "1", "--interval", "0.5"], out=out)
    filtered = bool(workload.get("dump_level", 0) & 8)
    assert code == 0 or (filtered and code == EXIT_PARTIAL), code
    pid = str(workload["pid"])
    lines = [line.split() for line in out.getvalue().splitlines()]
    ends = {(cells[2], cells[3]) for cells in lines if cells[:1] == [pid]}
    if not ends and code == EXIT_PARTIAL:
        pytest.skip("a filtered dump lost the workload's connections")
    assert not [end for pair in ends for end in pair if end.startswith("::")], ends
    if code == EXIT_PARTIAL:  # every IPv6 end it kept is bracketed; which ends it kept is not known
        assert all(end.startswith("[") for pair in ends for end in pair if end.count(":") > 1), ends
        pytest.skip("a filtered dump: which of the workload's connections it kept is not known")
    assert any(peer == "[::1]:443" and local.startswith("[::1]:") for local, peer in ends), ends
    assert any(local == "[::1]:443" for local, _ in ends), ends
    assert any(peer == "[::ffff:127.0.0.1]:8080" for _, peer in ends), ends
    out = io.StringIO()
    run(prog, ["--by", "connection", "--json", "--count", "1", "--interval", "0.5"], out=out)
    rows = json.loads(out.getvalue().splitlines()[-1])["connections"]
    assert any(r["peer"] == "[::1]:443" for r in rows if r["pid"] == workload["pid"]), rows


def test_running_kernel_sample_time_is_this_hosts(prog: drgn.Program, target: Target) -> None:
    """On a running kernel (or a guest read over QMP), each sample carries this host's clock."""
    if target.kind == "core":
        pytest.skip("a dump's sample carries the dump's time")
    out = io.StringIO()
    before = time.time()
    run(prog, ["--json", "--count", "1", "--interval", "0.2"], out=out)
    sample = json.loads(out.getvalue().splitlines()[-1])
    assert before <= sample["time"] <= time.time(), sample
