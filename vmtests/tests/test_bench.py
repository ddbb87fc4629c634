"""The benchmark's own arithmetic and measuring, on small real commands."""

from __future__ import annotations

import sys

from vmtests.bench import measure, ratios, startup_table, table


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
