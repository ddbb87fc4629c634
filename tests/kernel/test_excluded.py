"""Pages missing from a dump, chosen at random: what makedumpfile's filters do to a real dump.

Debian 12's makedumpfile drops slab pages of kernels >= 6.10 at level 31 (docs/limitations.md),
which pages depending on the run: the crash mode of the matrix sees a different set each time.
Here the same intact ELF dump is read through a Program whose reads fail on a random set of
the pages an intact run touches (seeded, so a failure can be replayed), and every listing must
keep the contract of a partial one: exit 0 with ss's lines, or exit 3, saying what it could not
read, with only lines ss printed.
"""

from __future__ import annotations

import io
import mmap
import os
import random
import struct
from collections.abc import Callable
from typing import Any

import drgn
import pytest
from drgn_ss.commands.program import open_core_dump
from drgn_ss.commands.ss import run
from drgn_ss.kernel.program import vmcoreinfo

from tests.kernel.conftest import Target
from tests.kernel.test_damaged import _elf_dump
from tests.kernel.test_ss import assert_partial_is_true, assert_same_lines, ours

PAGE = 4096
#: x86-64's __START_KERNEL_map: the kernel image's virtual base (its pages are never filtered).
START_KERNEL_MAP = 0xFFFFFFFF80000000
#: The option sets read (every family, each kind of detail), and the seeds and shares of the
#: touched pages each run loses.
OPTION_SETS = ("-anp", "-0anb", "-0aneO", "-xane", "-tanmi", "-uanpe", "-Sanp", "-Manp", "--vsock -an",
               "-f netlink -an", "-tano", "-wanp", "-tlnpT sport = :7007", "-wan --tos --inet-sockopt",
               "-tan --tos", "-tanpe", "-xanp")
#: (DRGN_SS_EXCLUDED_SEEDS=N tries N seeds of each share instead of 4.)
CASES = [(seed, share) for share in (0.02, 0.1, 0.3)
         for seed in range(int(os.environ.get("DRGN_SS_EXCLUDED_SEEDS", "4")))]


def _load_segments(data: mmap.mmap) -> list[tuple[int, int, int, int]]:
    """An ELF64 core's PT_LOAD segments: (offset, vaddr, paddr, filesz)."""
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    out = []
    for i in range(phnum):
        p_type, _, offset, vaddr, paddr, filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 1 and filesz:
            out.append((offset, vaddr, paddr, filesz))
    return out


class ExcludingDump:
    """
    An ELF dump whose reads go through here: each physical page read is noted
    (:attr:`touched`), and a read of a page in :attr:`excluded` fails as libkdumpfile's
    does on a page makedumpfile left out.
    """

    def __init__(self, path: str) -> None:
        with open(path, "rb") as f:
            self.data = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        self.segments = _load_segments(self.data)
        self.excluded: set[int] = set()
        self.touched: set[int] = set()

    def reader(self, offset0: int, paddr0: int) -> Callable[[int, int, int, bool], bytes]:
        data, excluded, touched = self.data, self.excluded, self.touched

        def read(address: int, count: int, offset: int, physical: bool) -> bytes:
            first, last = (paddr0 + offset) // PAGE, (paddr0 + offset + count - 1) // PAGE
            for page in range(first, last + 1):
                if page in excluded:
                    message = f"could not read memory from kdump: Excluded page: {page * PAGE:#x}"
                    raise drgn.FaultError(message, address)
                touched.add(page)
            return data[offset0 + offset:offset0 + offset + count]

        return read

    def attach(self, prog: drgn.Program) -> None:
        """Route ``prog``'s reads of the dump's segments (physical and virtual) through here."""
        for offset, vaddr, paddr, size in self.segments:
            prog.add_memory_segment(paddr, size, self.reader(offset, paddr), physical=True)
            if vaddr:
                prog.add_memory_segment(vaddr, size, self.reader(offset, paddr))


def _modules() -> list[str]:
    return [p for p in os.environ.get("DRGN_SS_MODULE_DEBUG", "").split(":") if p]


def _program(path: str, target: Target, dump: ExcludingDump) -> drgn.Program:
    prog = open_core_dump(path)
    dump.attach(prog)
    prog.load_debug_info([target.vmlinux, *_modules()] if target.vmlinux else [], main=True)
    return prog


@pytest.fixture(scope="module")
def candidates(target: Target) -> tuple[ExcludingDump, list[int]]:
    """The pages an intact run of every option set reads, less the kernel image's."""
    path = _elf_dump(target)
    dump = ExcludingDump(path)
    prog = _program(path, target, dump)
    dump.touched.clear()
    for opts in OPTION_SETS:
        code = run(prog, ["-H", *opts.split()], out=io.StringIO())
        assert code == 0, opts
    phys_base = int(vmcoreinfo(prog)["NUMBER(phys_base)"])  # signed decimal
    lo = (prog.symbol("_text").address - START_KERNEL_MAP + phys_base) // PAGE
    hi = (prog.symbol("_end").address - START_KERNEL_MAP + phys_base) // PAGE
    pages = sorted(p for p in dump.touched if not lo <= p <= hi)
    assert len(pages) > 100, f"the intact runs read only {len(pages)} pages outside the kernel image"
    return dump, pages


@pytest.mark.parametrize("seed,share", CASES, ids=[f"seed{s}-{int(f * 100)}pc" for s, f in CASES])
def test_pages_missing_at_random(target: Target, workload: dict[str, Any],
                                 candidates: tuple[ExcludingDump, list[int]], seed: int, share: float,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    dump, pages = candidates
    dump.excluded = set(random.Random(seed).sample(pages, max(1, int(len(pages) * share))))
    try:
        prog = _program(_elf_dump(target), target, dump)
    except drgn.FaultError:
        dump.excluded = set()
        pytest.skip("the debug info could not be loaded without the excluded pages")
    problems = []
    partial = 0
    for opts in OPTION_SETS:
        expected = workload["ss"][opts]
        code, got, err = ours(prog, opts, capsys)
        try:
            if code == 3:
                partial += 1
                # What it could not read, or a family it could not list (a module drgn could not
                # load its types for: the module list was on a page left out).
                assert "Excluded page" in err or "sockets are not listed: " in err, err
                assert_partial_is_true(got, expected, err)
            else:
                assert code == 0, err
                assert_same_lines(got, expected)
        except AssertionError as e:
            problems.append(f"{opts}: {e}\n  (said: {err.strip()})")
    dump.excluded = set()
    assert not problems, "\n".join(problems)
    # A tenth of the pages the listings read, gone, and none of them noticed: a blind walk.
    assert partial or share < 0.1, "no listing said it was partial"
