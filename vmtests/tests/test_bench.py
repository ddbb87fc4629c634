"""The benchmark's own arithmetic and measuring, on small real commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from vmtests.__main__ import build_parser
from vmtests.bench import WORKLOAD, guest_tools, measure, ratios, startup_table, table, workload_args
from vmtests.bench_workload import UNIX_LISTENERS, UNIX_WORKERS


def test_measure_counts_lines_runs_and_memory() -> None:
    r = measure([sys.executable, "-c", "print('a'); print('b'); x = bytearray(64 << 20)"], 3, 60)
    assert r["lines"] == 2 and r["runs"] == 3
    assert r["peak_rss_mb"] > 64  # the child's own peak, not this process's
    assert r["median_s"] > 0 and r["cold_s"] is None


def test_measure_reads_drgn_ss_stats_line() -> None:
    stats = '{"sockets": 4, "files": 2, "walk_s": 0.004, "owners_s": 0.002, "render_s": 0.001}'
    r = measure([sys.executable, "-c", f"import sys; print('x'); sys.stderr.write({stats!r})"], 1, 60)
    assert r["us_per_socket"] == 1000.0 and r["us_per_file"] == 1000.0
    assert r["startup_s"] == round(r["median_s"] - 0.007, 4)


def test_measure_stops_at_the_budget() -> None:
    r = measure([sys.executable, "-c", "import time; time.sleep(0.2)"], 5, 0.1)
    assert r["runs"] == 1


def test_ratios_and_table() -> None:
    runs = [
        {"sockets": 10, "where": "native", "tool": "ss -tanp", "median_s": 2.0},
        {"sockets": 10, "where": "native", "tool": "ss -tan", "median_s": 0.5},
        {"sockets": 10, "where": "dump", "tool": "drgn-ss -tanp", "median_s": 1.0, "kernel": "6.1"},
        {"sockets": 20, "where": "dump", "tool": "drgn-ss -tan", "median_s": 1.0, "kernel": "6.1"},
    ]
    ratios(runs)
    assert runs[2]["x_ss_tanp"] == 0.5 and runs[2]["x_ss_tan"] == 2.0
    assert runs[3]["x_ss_tanp"] is None  # no native run of that size
    lines = table(runs).splitlines()
    assert len(lines) == 5 and lines[0].split()[:2] == ["kernel", "sockets"]
    assert "drgn-ss -tanp" in lines[3] and " 0.5 " in lines[3]


def test_cold_runs_and_startup_table() -> None:
    stats = ('{"sockets": 4, "files": 2, "walk_s": 0.004, "owners_s": 0.002, "render_s": 0.001, '
             '"types_s": 0.5, "startup_s": 0.6, "interpreter_s": 0.05}')
    r = measure([sys.executable, "-c", f"import sys; sys.stderr.write({stats!r})"], 1, 60, cold=True)
    assert r["cold_s"] > 0
    assert (r["cold_types_s"], r["cold_startup_s"], r["cold_interpreter_s"]) == (0.5, 0.6, 0.05)
    runs = [{"kernel": "6.1", "sockets": 10, "where": "guest", "tool": "drgn-ss -tanp", "cold_startup_s": 3.0,
             "cold_btf_startup_s": 0.5, "cold_types_s": 2.9, "cold_btf_types_s": 0.3,
             "cold_btf_interpreter_s": 1.5},
            {"kernel": "6.1", "sockets": 10, "where": "guest", "tool": "drgn-ss -tan"}]
    lines = startup_table(runs).splitlines()
    assert len(lines) == 2 and lines[1].split()[5:] == ["3.0", "0.5", "6.0", "2.9", "0.3", "1.5"]
    assert startup_table(runs[1:]) == ""


def test_unix_ratios_and_table() -> None:
    runs = [
        {"sockets": 10, "where": "native", "tool": "ss -xanp", "median_s": 4.0},
        {"sockets": 10, "where": "native", "tool": "ss -xan", "median_s": 0.5},
        {"sockets": 10, "where": "native", "tool": "ss -tanp", "median_s": 1.0},  # not a unix baseline
        {"sockets": 10, "where": "dump", "tool": "drgn-ss -xanp", "median_s": 1.0, "kernel": "6.1",
         "us_per_socket": 3.5},
    ]
    ratios(runs, "unix")
    assert runs[3]["x_ss_xanp"] == 0.25 and runs[3]["x_ss_xan"] == 2.0 and "x_ss_tanp" not in runs[3]
    lines = table(runs, "unix").splitlines()
    assert lines[0].split()[4:9] == ["median", "s", "x", "ss-xanp", "x"]
    assert lines[4].split()[5:8] == ["1.0", "0.25", "2.0"] and "3.5" in lines[4].split()


def test_workload_option_and_tools() -> None:
    args = build_parser().parse_args(["bench", "--workload", "unix", "--sizes", "5000"])
    assert (args.workload, args.sizes) == ("unix", "5000")
    assert build_parser().parse_args(["bench"]).workload == "tcp"
    assert workload_args("unix", 100000) == "--unix 100000" and workload_args("tcp", 20) == "20"
    unix = [name for name, _, _ in guest_tools("drgn-ss", "unix")]
    assert unix == ["ss -xan", "ss -xanp", "drgn-ss -xanp", "drgn-ss -xan"]
    assert [cold for _, _, cold in guest_tools("drgn-ss", "unix")] == [False, False, True, False]
    assert "drgn-ss -tanp --owners proc" in [name for name, _, _ in guest_tools("drgn-ss", "tcp")]


def _socket_fds(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    return sum(1 for fd in fds.iterdir() if os.readlink(fd).startswith("socket:"))


def test_unix_workload_holds_its_sockets(tmp_path: Path) -> None:
    """A small unix workload: its sockets over its workers, both ends held; READY; gone on SIGTERM."""
    proc = subprocess.Popen([sys.executable, str(WORKLOAD), "--unix", "200"], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        assert proc.stdout and proc.stdout.readline().strip() == "READY"
        workers = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                   and _ppid(int(p.name)) == proc.pid]
        assert len(workers) == UNIX_WORKERS
        # Each worker: both ends of its 2 connections, and the listener it shares.
        assert sorted({_socket_fds(pid) for pid in workers}) == [5]
        assert _socket_fds(proc.pid) == UNIX_LISTENERS
        (directory,) = tmp_path.iterdir()
        names = sorted(p.name for p in directory.iterdir())
        assert names == [f"daemon{i}.sock" for i in range(UNIX_LISTENERS)]
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
    assert not directory.exists() and all(_ppid(pid) is None for pid in workers)


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def test_memory_per_socket_from_stats() -> None:
    stats = ('{"sockets": 1024, "files": 0, "walk_s": 0.004, "owners_s": 0, "render_s": 0.001, '
             '"anon_peak_mb": 3.0}')
    r = measure([sys.executable, "-c", f"import sys; sys.stderr.write({stats!r})"], 2, 60)
    assert r["alloc_b_per_socket"] == 3 * 1024


def test_a_native_run_past_the_budget_is_stopped_and_its_ratios_are_bounds() -> None:
    r = measure([sys.executable, "-c", "import time; print('x', flush=True); time.sleep(30)"], 3, 0.5,
                stop=True)
    assert r["stopped"] and r["runs"] == 1 and r["median_s"] == 0.5 and r["median_s_bound"] == ">"
    assert r["lines"] == 1  # what it printed before it was stopped
    runs = [
        {"sockets": 10, "where": "native", "tool": "ss -tanp", **r},
        {"sockets": 10, "where": "native", "tool": "ss -tan", "median_s": 0.1},
        {"sockets": 10, "where": "dump", "tool": "drgn-ss -tanp", "median_s": 0.25, "kernel": "6.1"},
    ]
    ratios(runs)
    assert runs[2]["x_ss_tanp"] == 0.5 and runs[2]["x_ss_tanp_bound"] == "<"  # at most half
    assert runs[0]["x_ss_tan"] == 5.0 and runs[0]["x_ss_tan_bound"] == ">"
    assert runs[0]["x_ss_tanp"] is None  # stopped against itself: nothing known
    lines = table(runs).splitlines()
    assert " <0.5 " in lines[3] and " >0.5 " in lines[1]
