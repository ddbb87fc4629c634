"""docs/benchmarks.md and its generator, ``python -m vmtests benchpage``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vmtests.__main__ import main
from vmtests.benchpage import GENERATED, PAGE, REPO, RESULTS, load_results, render


def _newest() -> dict[str, Any]:
    """The newest real TCP results file's document."""
    doc: dict[str, Any] = [r for r in load_results(RESULTS) if r.workload == "tcp"][-1].doc
    return doc


def _fixture() -> dict[str, Any]:
    """The newest real results, trimmed to a few rows of its largest size."""
    doc = _newest()
    size = max(r["sockets"] for r in doc["runs"])
    keep = {("native", "ss -tan"), ("native", "ss -tanp"), ("native", "psutil"), ("dump", "drgn-ss -tanp"),
            ("guest", "drgn-ss -tanp")}
    runs = [r for r in doc["runs"] if r["sockets"] == size and (r["where"], r["tool"]) in keep]
    return {**doc, "runs": runs}


def _write(directory: Path, name: str, doc: object) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def _benchpage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vmtests", "benchpage", *args], cwd=REPO,
                          capture_output=True, text=True)


def test_page_in_repo_is_current() -> None:
    proc = _benchpage("--check")
    assert proc.returncode == 0, proc.stderr
    assert PAGE.read_text().startswith(f"# Benchmarks\n\n{GENERATED}\n")


def test_every_row_and_its_ratio(tmp_path: Path) -> None:
    doc = _fixture()
    assert len(doc["runs"]) >= 4
    page = render(load_results(_write(tmp_path / "results", "bench-2026-01-02T0304.json", doc).parent))
    lines = page.split("### Start-up", 1)[0].splitlines()  # the main table, not the start-up one
    for r in doc["runs"]:
        row = [line for line in lines if line.startswith(f"{r['kernel'] or '-'}  ")
               and f"  {r['where']}  " in line and f"  {r['tool']}  " in line]
        assert len(row) == 1, (r["kernel"], r["where"], r["tool"])
        cells = row[0].split()
        assert str(r["median_s"]) in cells and str(r["x_ss_tanp"]) in cells
    assert doc["machine"] in page and doc["date"] in page and f"{doc['duration_s']:,} s" in page
    dump = [r for r in doc["runs"] if r["where"] == "dump"]
    assert f"{dump[0]['x_ss_tanp']}x" in page  # the headline
    assert "## Earlier runs" in page


def test_earlier_runs_are_listed_newest_first(tmp_path: Path) -> None:
    doc = _fixture()
    results = tmp_path / "results"
    _write(results, "bench-2026-01-01.json", {**doc, "date": "2026-01-01 10:00 UTC"})
    _write(results, "bench-2026-01-02.json", {**doc, "date": "2026-01-02 10:00 UTC"})
    _write(results, "bench-2026-01-03.json", {**doc, "date": "2026-01-03 10:00 UTC"})
    page = render(load_results(results))
    assert "## Newest run: 2026-01-03 10:00 UTC" in page
    earlier = page.split("## Earlier runs", 1)[1]
    assert "bench-2026-01-03" not in earlier
    assert earlier.index("bench-2026-01-02.json`, 2026-01-02 10:00 UTC: `drgn-ss -tanp` on a dump") \
        < earlier.index("bench-2026-01-01.json`, 2026-01-01 10:00 UTC")


def test_missing_optional_fields_still_render(tmp_path: Path) -> None:
    # No machine, date, command, duration; no ratios, no drgn-ss split, no cold runs.
    runs = [
        {"kernel": None, "sockets": 1000, "where": "native", "tool": "ss -tanp", "median_s": 0.5},
        {"kernel": "6.1", "sockets": 1000, "where": "dump", "tool": "drgn-ss -tanp", "median_s": 0.25},
    ]
    results = tmp_path / "results"
    _write(results, "old.json", {"runs": runs})
    page = render(load_results(results))
    assert "None" not in page and "Machine:" not in page and "Run time:" not in page
    assert "## Newest run\n" in page and "Workloads: 1,000 established sockets" in page
    assert "at 1,000 sockets: 0.5x (6.1) native `ss -tanp`" in page  # worked out from the medians
    assert "Start-up without debug info" not in page
    # A file without a date sorts as the oldest; a run without a dump (--native-only) says so.
    _write(results, "newer.json", {"date": "2030-01-01 00:00 UTC", "runs": runs[:1]})
    page = render(load_results(results))
    assert "## Newest run: 2030-01-01 00:00 UTC" in page
    assert "- Headline: no `drgn-ss -tanp` on a dump in this run" in page
    assert "- `old.json`: `drgn-ss -tanp` on a dump at 1,000 sockets: 0.5x (6.1)" in page


def test_no_results_is_one_line(tmp_path: Path) -> None:
    proc = _benchpage("--results", str(tmp_path), "--out", str(tmp_path / "page.md"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no results in" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "page.md").exists()


def test_unreadable_result_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, "bad.json", {"machine": "x"})
    assert main(["benchpage", "--results", str(tmp_path), "--check"]) == 2
    assert "bad.json: not a benchmark result" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{")
    assert main(["benchpage", "--results", str(tmp_path), "--check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read it as JSON" in err


def test_check_catches_a_stale_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    _write(results, "bench.json", _fixture())
    page = tmp_path / "docs" / "benchmarks.md"
    args = ["benchpage", "--results", str(results), "--out", str(page)]
    assert main([*args, "--check"]) == 1
    assert "is missing" in capsys.readouterr().err
    assert main(args) == 0 and page.exists()
    assert "wrote" in capsys.readouterr().err
    assert main([*args, "--check"]) == 0
    page.write_text(page.read_text().replace("0.", "1.", 1))
    assert main([*args, "--check"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is stale" in err


def _unix_runs() -> list[dict[str, Any]]:
    return [
        {"kernel": None, "sockets": 1000, "where": "native", "tool": "ss -xan", "median_s": 0.1},
        {"kernel": None, "sockets": 1000, "where": "native", "tool": "ss -xanp", "median_s": 2.0},
        {"kernel": "6.1", "sockets": 1000, "where": "dump", "tool": "drgn-ss -xanp", "median_s": 0.5,
         "us_per_socket": 4.5, "lines": 1040},
        {"kernel": "6.1", "sockets": 1000, "where": "dump", "tool": "drgn-ss -xan", "median_s": 0.15},
    ]


def test_unix_run_has_its_own_section(tmp_path: Path) -> None:
    results = tmp_path / "results"
    tcp = _write(results, "bench-2026-01-01.json", {**_fixture(), "date": "2026-01-01 10:00 UTC"})
    _write(results, "unix-2026-01-02.json", {"workload": "unix", "date": "2026-01-02 10:00 UTC",
                                             "runs": _unix_runs()})
    _write(results, "unix-2026-01-03.json", {"workload": "unix", "date": "2026-01-03 10:00 UTC",
                                             "runs": _unix_runs()[:2]})
    page = render(load_results(results))
    # The newest TCP run stays the page's main table, though a unix run is newer.
    assert "## Newest run: 2026-01-01 10:00 UTC" in page and tcp.name not in page.split("## Earlier runs")[1]
    unix = page.split("## Unix sockets", 1)[1].split("## Earlier runs", 1)[0]
    assert "### Newest unix run: 2026-01-03 10:00 UTC" in unix
    assert "Workloads: 1,000 connected unix stream sockets" in unix
    assert "x ss-xanp" in unix and "x ss-xan " in unix and "x ss-tanp" not in unix
    assert "Headline: no `drgn-ss -xanp` on a dump in this run" in unix
    # The older unix run: both ratios, worked out from the medians.
    earlier = page.split("## Earlier runs", 1)[1]
    assert ("`unix-2026-01-02.json`, 2026-01-02 10:00 UTC: `drgn-ss -xanp` on a dump at 1,000 unix "
            "sockets: 0.25x (6.1) native `ss -xanp`; `drgn-ss -xan`: 1.5x (6.1) native `ss -xan`") in earlier


def test_only_unix_runs_still_render(tmp_path: Path) -> None:
    results = tmp_path / "results"
    _write(results, "unix.json", {"workload": "unix", "runs": _unix_runs()})
    page = render(load_results(results))
    assert "No TCP run in the results." in page and "### Newest unix run\n" in page
    assert "Headline: `drgn-ss -xanp` on a dump at 1,000 unix sockets: 0.25x (6.1)" in page
