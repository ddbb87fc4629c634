"""The matrix in parts: the plan, and results handed back from a child and merged."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmtests.outcome import MatrixResults, Outcome
from vmtests.parallel import Part, _finish, _next, plan


def test_plan_puts_each_kernels_long_runs_first_and_covers_every_mode() -> None:
    modes = ["live", "btf", "elf", "kdump", "qemu", "crash", "crash0"]
    parts = plan(["5.10", "6.1"], modes)
    assert parts == [("5.10", ["live"]), ("5.10", ["elf", "kdump", "qemu", "crash", "crash0"]),
                     ("6.1", ["live"]), ("6.1", ["elf", "kdump", "qemu", "crash", "crash0"]),
                     ("5.10", ["btf"]), ("6.1", ["btf"])]
    for kernel in ("5.10", "6.1"):
        got = sorted(m for k, ms in parts if k == kernel for m in ms)
        assert got == sorted(modes)
    assert plan(["7.2"], ["elf"]) == [("7.2", ["elf"])]


def test_results_survive_the_trip_from_a_child(tmp_path: Path) -> None:
    one = MatrixResults(results={"6.1": {"live": Outcome(97, 1, 131)}}, releases={"6.1": "6.1.0-56"},
                        dump_sizes={}, errors=[])
    two = MatrixResults(results={"6.1": {"crash": Outcome(150, 0, 78, "crash: pytest exited 2")}},
                        releases={"6.1": "6.1.0-56"}, dump_sizes={"6.1": {"crash": 28_900_000}},
                        errors=["6.1 crash: pytest exited 2"])
    two.save(tmp_path / "two.json")
    merged = MatrixResults()
    merged.merge(one)
    merged.merge(MatrixResults.load(tmp_path / "two.json"))
    assert merged.results["6.1"]["live"] == Outcome(97, 1, 131)
    assert merged.results["6.1"]["crash"].cell() == "150/0/78!"
    assert merged.dump_sizes == {"6.1": {"crash": 28_900_000}}
    assert merged.errors == ["6.1 crash: pytest exited 2"]


def test_a_part_that_left_no_results_is_an_error_in_each_of_its_modes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "0.log"
    log.write_text("Traceback (most recent call last):\nboom\n")
    got = _finish(Part("7.2", ["elf", "kdump"], log, tmp_path / "0.json", start=0.0), 1, 0.0)
    row = got.results["7.2"]
    assert set(row) == {"elf", "kdump"} and all(o.cell() == "ERROR" and not o.ok for o in row.values())
    out = capsys.readouterr().out
    assert "done: 7.2 elf+kdump" in out and "boom" in out  # the part's own output is shown


def test_a_guest_part_starts_beside_a_host_part(tmp_path: Path) -> None:
    planned = plan(["5.10", "6.1"], ["live", "btf", "elf"])
    parts = [Part(k, m, tmp_path / "l", tmp_path / "r") for k, m in planned]
    # 5.10 live, 5.10 elf, 6.1 live, 6.1 elf, 5.10 btf, 6.1 btf
    assert _next(parts, []) == 0
    assert _next(parts[1:], parts[:1]) == 0  # 5.10 elf beside 5.10 live
    waiting = [parts[2], parts[3], parts[4], parts[5]]  # 5.10 elf ended first: 5.10 live runs
    assert waiting[_next(waiting, [parts[0]])] is parts[3]  # 6.1 elf, not a second guest
    assert waiting[_next(waiting, [parts[3]])] is parts[2]  # 6.1 live beside it
    assert _next([parts[4], parts[5]], [parts[4]]) == 0  # only guests left: the first
