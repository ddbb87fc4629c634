"""Damaged dumps and wrong debug info: what cannot be read is said, the rest is listed, nothing is made up."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from typing import Any

import drgn
import pytest
from drgn_ss.kernel.damage import WalkErrors
from drgn_ss.kernel.images import ElfImage, elf_build_id
from drgn_ss.kernel.memory import Memory
from drgn_ss.kernel.native import native
from drgn_ss.kernel.program import vmcoreinfo
from drgn_ss.kernel.target import kernel_memory
from drgn_ss.sockets.inet import InetDecoder, sock_layout
from drgn_ss.tables.hashtable import UNHASHED, Chains
from drgn_ss.tables.inet import tcp_ehash_chains, tcp_hashinfo_address, udp_hash_chains, udp_table_address

from tests.kernel.conftest import Target, open_target
from tests.kernel.test_ss import assert_partial_is_true, normalize

DRGN_SS = os.path.join(os.path.dirname(sys.executable), "drgn-ss")


def _elf_dump(target: Target) -> str:
    if target.kind != "core" or not target.path:
        pytest.skip("damages a copy of a dump")
    try:
        ElfImage(target.path)
    except ValueError:
        pytest.skip("an ELF dump (a kdump-compressed one is not patched here)")
    return target.path


def _drgn_ss(path: str, *args: str, pure_python: bool = False, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBUGINFOD_URLS": "", **(env or {})}
    if pure_python:
        env["DRGN_SS_PURE_PYTHON"] = "1"
    return subprocess.run([DRGN_SS, "-c", path, *args], capture_output=True, text=True, env=env, timeout=300)


class Patcher:
    """Writes into a copy of an ELF dump at kernel (direct map) addresses."""

    def __init__(self, prog: drgn.Program, path: str) -> None:
        image = ElfImage(path)
        self.segments = list(zip(image.starts, image.ends, image.offsets))
        self.lo = kernel_memory(prog).lo
        assert self.lo, "no direct map known"
        self.path = path

    def offset(self, addr: int) -> int:
        phys = addr - self.lo
        for start, end, off in self.segments:
            if start <= phys < end:
                return off + phys - start
        raise AssertionError(f"{addr:#x} is not in the dump")

    def write(self, addr: int, data: bytes) -> None:
        with open(self.path, "r+b") as f:
            f.seek(self.offset(addr))
            f.write(data)


def _ehash_sockets(prog: drgn.Program) -> tuple[Chains, list[Any]]:
    """The ehash of init_net and its sockets (records with their addresses), read intact."""
    decoder = InetDecoder(prog, inodes=False, cgroups=False, in_c=False)
    net = prog["init_net"].address_of_().value_()
    hashinfo = tcp_hashinfo_address(decoder.facts, decoder.mem, net)
    chains = tcp_ehash_chains(decoder.facts, decoder.mem, hashinfo)
    errors = WalkErrors()
    socks = decoder.socks(net, "tcp", listening=False, errors=errors)
    assert not errors, errors.describe()
    return chains, socks


@pytest.fixture
def copy(target: Target, tmp_path: Any) -> Any:
    path = _elf_dump(target)
    dest = str(tmp_path / "damaged.elf")
    shutil.copyfile(path, dest)
    yield dest
    os.unlink(dest)


def test_damaged_dump(target: Target, prog: drgn.Program, workload: dict[str, Any], copy: str) -> None:
    """
    A copy of the dump with one established socket's struct sock_common zeroed, another's
    chain pointer turned back on itself (a loop), and a one-socket chain ending in the next
    bucket's nulls marker: the listing leaves the zeroed socket out, says in one line that
    it could not read those three chains, exits 3, and prints only lines ss printed; C and
    Python agree.
    """
    chains, socks = _ehash_sockets(prog)
    estab = [s for s in socks if s.kind == "full" and s.state == 1]
    assert len(estab) >= 6, estab
    L = sock_layout(prog)
    zeroed, looped = estab[0], estab[-1]
    patch = Patcher(prog, copy)
    # The first socket's struct sock_common zeroed: no references, and its chain ends in NULL.
    patch.write(zeroed.address, b"\0" * L.common_end)
    # The other's chain pointer pointed back at itself: a loop.
    patch.write(looped.address + chains.link, (looped.address + chains.link).to_bytes(8, "little"))
    # A chain of one node made to end in the next bucket's marker: it strayed.
    mem = kernel_memory(prog)
    single = next(i for i, head in enumerate(chains.heads)
                  if head and not head & 1 and mem.read_u64(head) & 1
                  and head - chains.link not in (zeroed.address, looped.address))
    patch.write(chains.heads[single], ((single + 1) << 1 | 1).to_bytes(8, "little"))
    outputs = []
    for pure_python in (False, True):
        p = _drgn_ss(copy, "-s", target.vmlinux or "", "-H", "-tan", pure_python=pure_python)
        assert p.returncode == 3, p.stderr
        warning = p.stderr.strip().splitlines()
        assert len(warning) == 1 and "partial listing: could not read" in warning[0], p.stderr
        # The NULL-ended one, the loop and the stray.
        assert "could not read 3 hash chains" in warning[0], warning
        assert_partial_is_true(p.stdout, workload["ss"]["-tanp"], p.stderr)
        outputs.append((p.stdout, warning))
    assert outputs[0] == outputs[1]
    got = normalize(outputs[0][0])
    for sock, present in ((zeroed, False), (looped, True)):  # the looping socket itself was read
        pair = re.compile(rf":{sock.sport} \S+:{sock.dport}$")  # local port, then the peer's
        assert any(pair.search(line) for line in got) == present, (sock, got)
    # At most the two chains' other sockets are missing.
    assert len(got) >= len(normalize(workload["ss"]["-tanp"])) - 10


def test_truncated_dump(target: Target, prog: drgn.Program, workload: dict[str, Any], copy: str) -> None:
    """
    A dump cut in half: a warning says so; what is listed is true; what could not be read is
    counted (exit 3), unless everything listed lay in the half that is left (exit 0).
    """
    size = os.path.getsize(copy)
    os.truncate(copy, size // 2)
    p = _drgn_ss(copy, "-s", target.vmlinux or "", "-H", "-tanp")
    assert p.returncode in (0, 3, 1), (p.returncode, p.stderr)
    lines = p.stderr.splitlines()
    assert "Traceback" not in p.stderr and 1 <= len(lines) <= 2, p.stderr
    if p.returncode == 1:
        # What the listing starts from is in the lost half: one line says what could not be
        # read, after the warning if the dump could be opened (seen on 6.1: "could not read
        # kernel memory: short read from memory file").
        assert lines[-1].startswith("drgn-ss: ") and "warning" not in lines[-1] and not p.stdout, p.stderr
        assert len(lines) == 1 or lines[0].startswith("drgn-ss: warning: the dump is cut short: "), p.stderr
        return
    assert lines[0].startswith("drgn-ss: warning: the dump is cut short: "), p.stderr
    if p.returncode == 3:
        assert "partial listing" in lines[1]
        assert_partial_is_true(p.stdout, workload["ss"]["-tanp"], p.stderr)
    elif p.returncode == 0:
        assert normalize(p.stdout) == normalize(workload["ss"]["-tanp"])


def test_wrong_vmlinux(target: Target, prog: drgn.Program, workload: dict[str, Any]) -> None:
    """The vmlinux of another kernel: refused, naming both builds, before anything is listed."""
    path = _elf_dump(target)
    assert target.vmlinux
    # vmtests keeps each kernel's vmlinux in a directory of its own, side by side.
    kernels = os.path.dirname(os.path.dirname(target.vmlinux))
    others = sorted(v for v in glob.glob(os.path.join(kernels, "*", "vmlinux"))
                    if not os.path.samefile(v, target.vmlinux))
    if not others:
        pytest.skip("no other kernel's vmlinux at hand (vmtests fetches the matrix's one by one)")
    p = _drgn_ss(path, "-s", others[0], "-tan")
    assert p.returncode == 1 and not p.stdout
    release, build_id = workload["release"], vmcoreinfo(prog)["BUILD-ID"]
    assert p.stderr == (f"drgn-ss: {others[0]} (build ID {elf_build_id(others[0])}) does not match kernel "
                        f"{release} (build ID {build_id}): give the vmlinux of that exact build "
                        f"(linux-image-{release}-dbg)\n")


def test_user_space_core(target: Target, tmp_path: Any) -> None:
    """A process's core dump given as a kernel dump: one line says what it is, exit 1."""
    if target.kind != "live":
        pytest.skip("makes a core dump in the guest (sets its core_pattern)")
    pattern = "/proc/sys/kernel/core_pattern"
    with open(pattern) as f:
        saved = f.read()
    try:
        with open(pattern, "w") as f:
            f.write(f"{tmp_path}/core.%p")
        child = subprocess.run([sys.executable, "-c", "import os, resource; "
                                "resource.setrlimit(resource.RLIMIT_CORE, (-1, -1)); os.abort()"])
        assert child.returncode < 0
    finally:
        with open(pattern, "w") as f:
            f.write(saved)
    cores = glob.glob(str(tmp_path / "core.*"))
    assert len(cores) == 1, cores
    p = _drgn_ss(cores[0], "-tan")
    assert (p.returncode, p.stdout) == (1, ""), p.stderr
    assert p.stderr == f"drgn-ss: {cores[0]} is not a Linux kernel dump\n"


def test_damaged_dump_does_not_poison_the_facts_cache(target: Target, prog: drgn.Program, copy: str,
                                                      tmp_path: Any) -> None:
    """
    A copy of the dump with jiffies_64 zeroed, read first on an empty facts cache (without
    debug info, from the kernel's BTF, where its kallsyms can be read; then with -s): the
    dump read after it on that cache lists what it lists on a cache of its own, timers and
    all (HZ guessed from the zeroed jiffies was cached and shown 4x too short).
    """
    from drgn.helpers.linux.mm import follow_phys

    assert target.vmlinux
    patch = Patcher(prog, copy)
    phys = follow_phys(prog["init_mm"].address_of_(), prog["jiffies_64"].address_).value_()
    patch.write(patch.lo + phys, b"\0" * 8)
    options = ["-H", "-tano"]
    expected = _drgn_ss(target.path or "", "-s", target.vmlinux, *options,
                        env={"DRGN_SS_CACHE": str(tmp_path / "own")})
    assert expected.returncode in (0, 3) and "timer:(" in expected.stdout, expected.stderr
    shared = {"DRGN_SS_CACHE": str(tmp_path / "shared")}
    with_btf = "SYMBOL(kallsyms_names)" in vmcoreinfo(prog)  # 6.0+
    runs: list[list[str]] = ([[]] if with_btf else []) + [["-s", target.vmlinux]]
    for symbols in runs:
        damaged = _drgn_ss(copy, *symbols, *options, env=shared)
        assert damaged.returncode in (0, 3) and "Traceback" not in damaged.stderr, damaged.stderr
    for symbols in (["-s", target.vmlinux], []):
        p = _drgn_ss(target.path or "", *symbols, *options, env=shared)
        assert (p.returncode, p.stdout) == (expected.returncode, expected.stdout), (symbols, p.stderr)


def _rest_of_chain(mem: Memory, chains: Chains, node: int) -> list[int]:
    """The nodes of the chain that holds ``node``, from it to the end (an intact plain hlist)."""
    for head in chains.heads:
        seq, pos = list[int](), head
        while pos and len(seq) < 1000:
            seq.append(pos - chains.link)
            pos = mem.read_u64(pos)
        if node in seq:
            return seq[seq.index(node):]
    raise AssertionError(f"{node:#x} is on no chain")


def test_unhashed_node_is_walked_again(target: Target, prog: drgn.Program, copy: str) -> None:
    """
    On a running kernel a UDP socket can be unhashed, freed and reused in another chain while
    the walk stands on it; its ``next`` then leads into that other chain and the rest of its
    own is lost unseen (a plain hlist has no nulls marker to tell). Its ``pprev`` tells: here a
    copy of the dump with one UDP socket's ``pprev`` moved, read as a running kernel would be.
    Its chain is walked again, still wrong: counted (one chain), that socket and those after
    it left out, every other listed; read as a dump (nothing changes under the walk), all of
    them are listed. C and Python agree.
    """
    net = prog["init_net"].address_of_().value_()
    decoder = InetDecoder(prog, inodes=False, cgroups=False, in_c=False)
    chains = udp_hash_chains(decoder.facts, decoder.mem, udp_table_address(decoder.facts, decoder.mem, net))
    intact = [s.address for s in decoder.socks(net, "udp", errors=WalkErrors())]
    assert len(intact) >= 4, intact
    moved = intact[len(intact) // 2]
    lost = _rest_of_chain(decoder.mem, chains, moved)
    Patcher(prog, copy).write(moved + chains.link + 8, (moved + chains.link).to_bytes(8, "little"))
    damaged = open_target(target, copy)
    results = []
    ways = ((False, False), (True, False), (True, True)) if native() is not None else ((False, False),)
    for in_c, rows in ways:  # Python, C records, C rows (a SockTable)
        for live in (False, True):
            reader = InetDecoder(damaged, inodes=False, cgroups=False, in_c=in_c, rows=rows)
            reader.retry = live
            errors = WalkErrors()
            got = [s.address for s in reader.socks(net, "udp", errors=errors)]
            if not live:
                assert got == intact and not errors, errors.describe()
                continue
            assert (errors.buckets, errors.sockets, errors.tables) == (1, 0, 0), errors.describe()
            assert UNHASHED in errors.describe(), errors.describe()
            assert got == [a for a in intact if a not in lost], (moved, lost, got)
            results.append(got)
    assert all(r == results[0] for r in results)
