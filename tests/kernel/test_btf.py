"""Without debug info: the kernel's own BTF and kallsyms give the facts DWARF gives."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from typing import Any

import drgn
import pytest
from drgn_ss.kernel.kallsyms import SYMBOLS, KallsymsError, MemoryKallsyms, proc_kallsyms
from drgn_ss.kernel.program import vmcoreinfo

from tests.kernel.conftest import Target
from tests.kernel.test_ss import normalize
from tests.kernel.workload import as_ss7

#: One run that reads every fact a listing can: TCP and UDP, owners, timers, -e, tcp_info,
#: skmem, the summary, every namespace (each run on a running guest loads DWARF: ~15 s).
OPTIONS = (["-tuanpoeim", "--summary", "--all-netns"],)
#: What only a run without DWARF reads: the clocks that check HZ (DWARF reads HZ from the
#: vmlinux file), and HZ itself, cached from them only on strong evidence (not around 300 s
#: of uptime, when jiffies wrap).
CLOCK_FACTS = {"hz", "offset:struct timekeeper:tkr_mono.base", "symbol:tk_core", "symbol:timekeeper_data",
               "offset:struct tk_data:timekeeper", "offset:tk_core:timekeeper"}


def _facts(target: Target, cache: str, source: list[str]) -> tuple[dict[str, Any], list[str]]:
    """
    Run drgn-ss with each of OPTIONS on one facts cache; the facts it holds after (from its
    one file: DWARF's and the live kernel's, shared by the build; a dump's BTF's, its own),
    and the outputs.
    """
    drgn_ss = os.path.join(os.path.dirname(sys.executable), "drgn-ss")
    opened = ["-c", target.path] if target.kind == "core" and target.path else []
    env = {**os.environ, "DEBUGINFOD_URLS": "", "DRGN_SS_CACHE": cache}
    outputs = []
    for options in OPTIONS:
        p = subprocess.run([drgn_ss, *opened, *source, "-H", *options, "--stats"], capture_output=True,
                           text=True, env=env)
        assert p.returncode in (0, 3), p.stderr
        stats = json.loads(p.stderr.splitlines()[-1])
        if options is OPTIONS[0]:  # the first run, on an empty cache, works the facts out
            assert stats["types"] == ("BTF" if "--btf" in source else "DWARF"), stats
        outputs.append(p.stdout)
    files = glob.glob(os.path.join(cache, "facts", "*.json"))
    assert len(files) == 1, files
    with open(files[0]) as f:
        cached = json.load(f)
    return {**cached.get("dwarf", {}), **cached.get("live", {}), **cached.get("dump", {})}, outputs


def test_btf_gives_the_facts_dwarf_gives(target: Target, prog: drgn.Program, tmp_path: Any) -> None:
    """
    Every fact the listings work out (member offsets, bitfields, sizes, symbol addresses,
    the kernel features, HZ) is the same from the kernel's BTF and kallsyms as from DWARF;
    on a dump, so are the lines.
    """
    if target.kind == "qemu":
        pytest.skip("the session holds the guest's QMP socket (the live and dump modes cover it)")
    if os.environ.get("DRGN_SS_NO_DEBUG_INFO") == "1":
        pytest.skip("no DWARF here to compare with")
    if target.kind == "core" and "SYMBOL(kallsyms_names)" not in vmcoreinfo(prog):
        pytest.skip("a kernel before 6.0: no kallsyms in its dump (test_ss checks the message)")
    if target.kind == "live" and not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.fail("every kernel of the matrix has CONFIG_DEBUG_INFO_BTF")
    # Live, drgn finds the guest's debug vmlinux where it looks by default; a dump needs -s.
    dwarf_source = ["-s", target.vmlinux] if target.kind == "core" and target.vmlinux else []
    dwarf, dwarf_lines = _facts(target, str(tmp_path / "dwarf"), dwarf_source)
    btf, btf_lines = _facts(target, str(tmp_path / "btf"), ["--btf"])
    assert len(dwarf) > 50 and dwarf.get("hz", 250) == 250  # read when a socket has a timer
    assert {k: v for k, v in btf.items() if k in dwarf and v != dwarf[k]} == {}
    assert btf.keys() ^ dwarf.keys() <= CLOCK_FACTS
    if target.kind == "core":  # a live kernel moves between runs
        assert btf_lines == dwarf_lines


@pytest.mark.parametrize("opts", ["-nlpt", "-uanp", "-tanp"])
def test_drgn_ss_without_debug_info(target: Target, workload: dict[str, Any], opts: str,
                                    tmp_path: Any) -> None:
    """
    On a stock host (vmtests' btf mode: no debug vmlinux anywhere drgn looks), drgn-ss says
    once that it reads the kernel's BTF and kallsyms, and prints what ss prints.
    """
    if os.environ.get("DRGN_SS_NO_DEBUG_INFO") != "1":
        pytest.skip("for a target without debug info (vmtests test --mode btf)")
    drgn_ss = os.path.join(os.path.dirname(sys.executable), "drgn-ss")
    env = {**os.environ, "DEBUGINFOD_URLS": "", "DRGN_SS_CACHE": str(tmp_path)}
    ss = subprocess.run(["ss", *opts.split()], capture_output=True, text=True, check=True)
    expected = as_ss7(ss.stdout)
    p = subprocess.run([drgn_ss, *opts.split(), "--stats"], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    announce, stats = p.stderr.splitlines()
    assert announce == (f"drgn-ss: no debug info for kernel {workload['release']}: reading the kernel's "
                        "BTF and kallsyms instead")
    assert json.loads(stats)["types"] == "BTF"
    if opts == "-nlpt":
        assert p.stdout == expected  # byte for byte
    else:
        assert normalize(p.stdout) == normalize(expected)


def test_kallsyms_gives_the_addresses_dwarf_gives(target: Target, prog: drgn.Program,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Every symbol drgn-ss reads has the same address from the kallsyms tables in kernel
    memory (C and Python), from /proc/kallsyms (live) and from DWARF's symbol table.
    """
    if os.environ.get("DRGN_SS_NO_DEBUG_INFO") == "1":
        pytest.skip("no DWARF here to compare with")
    info = vmcoreinfo(prog)
    dwarf = {}
    for name in SYMBOLS:
        try:
            dwarf[name] = prog.symbol(name).address
        except LookupError:
            dwarf[name] = None
    assert dwarf["init_net"] and dwarf["init_task"] and dwarf["__start_BTF"]
    if "SYMBOL(kallsyms_names)" in info:
        memory = MemoryKallsyms(prog.read, info)
        assert {name: memory(name) for name in SYMBOLS} == dwarf
        if target.kind == "core":  # the Python reference: ~5 s under TCG, 0.3 s natively
            monkeypatch.setenv("DRGN_SS_PURE_PYTHON", "1")
            python = MemoryKallsyms(prog.read, info)
            assert {name: python(name) for name in SYMBOLS} == dwarf
    else:
        assert target.kind != "core" or not info.get("OSRELEASE", "").startswith(("6.", "7."))
        with pytest.raises(KallsymsError, match="from Linux 6.0 on"):
            MemoryKallsyms(prog.read, info)
    if target.kind == "live":
        text = proc_kallsyms()
        assert {name: text(name) for name in SYMBOLS} == dwarf
