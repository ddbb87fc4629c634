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
from drgn_ss.raw import ElfImage

from tests.kernel import hostile
from tests.kernel.conftest import Target


def _elf_dump(target: Target) -> str:
    if target.kind != "core" or not target.path:
        pytest.skip("damages a copy of a dump")
    try:
        ElfImage(target.path)
    except ValueError:
        pytest.skip("an ELF dump (a kdump-compressed one is not patched here)")
    return target.path


@pytest.fixture(scope="module")
def intact(target: Target) -> dict[hostile.Command, hostile.Run]:
    """Each command's run on the intact dump: the truth the damaged runs are judged by."""
    path = _elf_dump(target)
    runs = {}
    for args, pure in hostile.ALL_COMMANDS:
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


@pytest.mark.parametrize("damage", hostile.DAMAGES, ids=[d.name for d in hostile.DAMAGES])
def test_damage(damage: hostile.Damage, target: Target, prog: drgn.Program, workload: dict[str, Any],
                copy: hostile.DumpCopy, intact: dict[hostile.Command, hostile.Run]) -> None:
    kernel = hostile.Kernel(prog, workload, {"path": copy.path})
    problems = []
    try:
        for _, found in hostile.run_case(copy, kernel, damage, intact, target.vmlinux):
            problems += found
    except hostile.NotHere as e:
        pytest.skip(str(e))
    assert not problems, "\n".join(problems)
