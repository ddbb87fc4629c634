"""Damaged dumps, second pass: every class of damage a red team found, on a copy of the real dump.

The cases are in tests/kernel/hostile.py. Each is read with the commands of
``hostile.COMMANDS``; every run must keep ``hostile.check_run``'s rules, judged against the
same command on the intact dump; a good dump read right after the damaged ones lists as
before.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import drgn
import pytest
from drgn.helpers.linux.pid import find_task
from drgn_ss.commands.program import open_core_dump
from drgn_ss.kernel.damage import WalkErrors
from drgn_ss.kernel.target import use_core_file
from drgn_ss.tasks import thread_group_leaders

from tests.kernel import hostile, hostile_families
from tests.kernel.conftest import Target
from tests.kernel.test_damaged import _elf_dump


@pytest.fixture(scope="module")
def intact(target: Target) -> dict[hostile.Command, hostile.Run]:
    """Each command's run on the intact dump: the truth the damaged runs are judged by."""
    path = _elf_dump(target)
    runs = {}
    for args, pure in (*hostile.ALL_COMMANDS, *hostile_families.COMMANDS):
        run = hostile.drgn_ss(path, *args, vmlinux=target.vmlinux, pure_python=pure)
        assert run.returncode == 0 and not hostile.check_run(run, None), (args, run.stderr)
        runs[(args, pure)] = run
    return runs


@pytest.fixture(scope="module")
def copy(target: Target, prog: drgn.Program, tmp_path_factory: Any) -> Iterator[hostile.DumpCopy]:
    path = _elf_dump(target)
    dest = str(tmp_path_factory.mktemp("hostile") / "damaged.elf")
    c = hostile.DumpCopy(prog, path, dest)
    yield c
    if c.copied:
        os.unlink(dest)


DAMAGES = (*hostile.DAMAGES, *hostile_families.DAMAGES)


@pytest.mark.parametrize("damage", DAMAGES, ids=[d.name for d in DAMAGES])
def test_damage(damage: hostile.Damage, target: Target, prog: drgn.Program, workload: dict[str, Any],
                copy: hostile.DumpCopy, intact: dict[hostile.Command, hostile.Run]) -> None:
    kernel = hostile.Kernel(prog, workload, {"path": copy.path})
    problems = []
    try:
        for run, found in hostile.run_case(copy, kernel, damage, intact, target.vmlinux):
            problems += found
            if damage in hostile_families.DAMAGES and run.returncode != 3:  # each lies on what it reads
                problems.append(f"{' '.join(run.args)}: exit {run.returncode}: the damage was not seen")
    except hostile.NotHere as e:
        pytest.skip(str(e))
    assert not problems, "\n".join(problems)


def test_owners_of_a_dump_cut_short(target: Target, prog: drgn.Program, workload: dict[str, Any],
                                    intact: dict[hostile.Command, hostile.Run], tmp_path: Any) -> None:
    """
    The dump's first 100 MB only (a dump that stopped being written): every owner shown is
    true, what could not be read is counted (exit 3), and every process drgn can still find
    by its pid is found (the task list walked both ways past the pages it lost, and the
    process tree from what was found).
    """
    path = _elf_dump(target)
    cut = str(tmp_path / "cut.elf")
    size = 100 << 20
    with open(path, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(size))
    try:
        command: hostile.Command = (("--json", "-tanp"), False)
        run = hostile.drgn_ss(cut, *command[0], vmlinux=target.vmlinux)
        problems = [p for p in hostile.check_run(run, intact[command]) if "missing, not counted" not in p]
        assert not problems, problems
        # exit 0 where all that was listed lay in the part kept (check_run: nothing missing)
        assert run.returncode in (0, 3) and "the dump is cut short" in run.stderr, run.stderr
        damaged = open_core_dump(cut)
        use_core_file(damaged, cut)
        if target.vmlinux:
            damaged.load_debug_info([target.vmlinux], main=True)
        # What drgn's own helpers can still reach there: each process by its pid (the pid
        # table, another route than the task list).
        reachable = set()
        for task in hostile.Kernel(prog, workload).tasks():
            pid = task.tgid.value_()
            try:
                found_task = find_task(damaged, pid)
                if found_task and found_task.group_leader == found_task:
                    found_task.comm.string_()
                    reachable.add(pid)
            except drgn.FaultError:
                pass
        if not reachable:
            pytest.skip("no task is left in the part of the dump kept")
        found = {pid for pid, _, _ in thread_group_leaders(damaged, WalkErrors())}
        assert reachable <= found, sorted(reachable - found)
        assert len(found) > 1
    finally:
        os.unlink(cut)


def test_a_forged_release_writes_nothing_outside_the_cache(target: Target, copy: hostile.DumpCopy,
                                                          tmp_path: Any) -> None:
    """
    VMCOREINFO's OSRELEASE made a path that climbs out of the cache (``../../..``): the facts
    cache writes nothing outside its own directory, and the listing goes on.
    """
    # The cache deeper in tmp_path than the forged path climbs, so that every directory it
    # could reach is the test's own: /tmp and / have other writers (pip, other tests).
    climb = 6
    facts = tmp_path.joinpath(*"abcdefgh"[: climb + 1], "cache", "facts")
    facts.parent.mkdir(parents=True)
    ancestors = [str(facts.parent)] + [str(p) for p in facts.parents if p.is_relative_to(tmp_path)]
    before = {d: set(os.listdir(d)) for d in ancestors if os.path.isdir(d)}
    patches = [hostile.vmcoreinfo_patch(copy.path, b"OSRELEASE", b"../" * climb)]
    saved = copy.apply(patches)
    try:
        run = hostile.drgn_ss(copy.path, "-H", "-tan", vmlinux=target.vmlinux, cache=str(facts.parent))
    finally:
        copy.restore(saved)
    assert run.returncode in (0, 3) and "Traceback" not in run.stderr, run.stderr
    assert run.stdout.count("\n") > 5
    for d, names in before.items():
        new = set(os.listdir(d)) - names - ({"facts"} if d == str(facts.parent) else set())
        assert not new, (d, new)
    written = [p.relative_to(facts.parent).as_posix() for p in facts.parent.rglob("*") if p.is_file()]
    assert written and all(p.count("/") == 1 and p.startswith("facts/") for p in written), written
