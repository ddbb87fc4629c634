"""Fixtures of the kernel matrix suite: one drgn Program per run, and what to expect.

The target comes from the environment (set by ``python -m vmtests test``):

- ``DRGN_SS_TARGET``: ``live`` (the running kernel: in a vmtests guest),
  ``core:PATH`` (a dump) or ``qemu:SOCKET`` (a running guest over QMP).
  Unset: ``live`` where /proc/kcore exists, otherwise every test is skipped.
- ``DRGN_SS_VMLINUX``: the debug vmlinux for ``core`` and ``qemu`` targets;
  ``DRGN_SS_MODULE_DEBUG``: the debug files of the modules the families need (vsock, sctp),
  colon-separated.
- ``DRGN_SS_NO_DEBUG_INFO=1``: the target has no debug info (vmtests' btf mode): the
  Program loads none, and drgn-ss reads the kernel's BTF and kallsyms.
- ``DRGN_SS_WORKLOAD``: for ``core`` and ``qemu``, the JSON line that
  tests/kernel/workload.py printed in the guest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

import drgn
import pytest
from drgn_ss.commands.program import open_core_dump
from drgn_ss.kernel.target import set_qemu, use_core_file, use_kcore

WORKLOAD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workload.py")


@dataclass(frozen=True)
class Target:
    kind: str  # "live", "core" or "qemu"
    path: str | None
    vmlinux: str | None


def _target() -> Target | None:
    spec = os.environ.get("DRGN_SS_TARGET")
    if not spec:
        return Target("live", None, None) if os.path.exists("/proc/kcore") else None
    kind, _, path = spec.partition(":")
    if kind not in ("live", "core", "qemu") or (kind != "live" and not path):
        raise pytest.UsageError(f"bad DRGN_SS_TARGET {spec!r}: live, core:PATH or qemu:SOCKET")
    return Target(kind, path or None, os.environ.get("DRGN_SS_VMLINUX"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The churn and traffic tests run last: their connections leave TIME-WAIT sockets for a
    # minute, which the comparisons with ss (taken when the workload started) would find.
    items.sort(key=lambda item: any(name in str(item.fspath) for name in ("test_churn", "test_nethogs")))
    if _target() is None:
        skip = pytest.mark.skip(reason="no kernel to read: run through `python -m vmtests test`")
        for item in items:
            if "tests/kernel" in str(item.fspath).replace(os.sep, "/"):
                item.add_marker(skip)


def _dump_level() -> int:
    """The makedumpfile level of the dump under test, from its workload JSON (0: none)."""
    path = os.environ.get("DRGN_SS_WORKLOAD")
    if not path or not os.environ.get("DRGN_SS_TARGET", "").startswith("core:"):
        return 0
    with open(path) as f:
        return int(json.load(f).get("dump_level", 0))


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """
    On a dump whose makedumpfile level excludes pages (Debian 12's makedumpfile drops slab
    pages of kernels >= 6.10 at level 31: docs/limitations.md), a test that reads an
    excluded page through drgn skips, naming the page, instead of failing. Level-0 dumps of
    the same workload keep every check.
    """
    try:
        return (yield)
    except drgn.FaultError as e:
        if "Excluded page" in str(e) and _dump_level() & 8:
            pytest.skip(f"page missing from this level-{_dump_level()} dump: {e}")
        raise


@pytest.fixture(scope="session")
def target() -> Target:
    t = _target()
    assert t is not None
    return t


@pytest.fixture(scope="session")
def prog(target: Target) -> drgn.Program:
    """The kernel under test, with the main debug info only (no module symbols)."""
    return open_target(target)


def open_target(target: Target, path: str | None = None) -> drgn.Program:
    """A Program of the target (or of ``path``, a copy of its dump), as the prog fixture's."""
    prog = drgn.Program()
    if target.kind == "live":
        use_kcore(prog)  # as drgn-ss does
    elif target.kind == "core":
        path = path or target.path
        assert path is not None
        prog = open_core_dump(path)
        use_core_file(prog, path)  # as drgn-ss -c does
    else:
        assert target.path is not None
        set_qemu(prog, target.path)  # as drgn-ss --qemu does
    if os.environ.get("DRGN_SS_NO_DEBUG_INFO") != "1":
        modules = [m for m in os.environ.get("DRGN_SS_MODULE_DEBUG", "").split(":") if m]
        prog.load_debug_info([target.vmlinux, *modules] if target.vmlinux else [], main=True)
    return prog


@pytest.fixture(scope="session")
def workload(target: Target, prog: drgn.Program) -> Iterator[dict[str, Any]]:
    """
    The sockets the kernel holds, from tests/kernel/workload.py: for live, started
    here (after the Program, so little time passes between ss and the tests); else
    the JSON the guest printed before it was dumped.
    """
    if target.kind != "live":
        path = os.environ.get("DRGN_SS_WORKLOAD")
        if not path:
            raise pytest.UsageError("DRGN_SS_WORKLOAD is needed for core and qemu targets")
        with open(path) as f:
            info = json.load(f)
        from drgn_ss.kernel.crash import uptime_seconds

        from tests.kernel import test_ss
        test_ss.TIME_WAIT_AT[0] = info.get("time_wait_at")
        test_ss.UPTIME[0] = lambda: uptime_seconds(prog)  # the guest's, or the dump's
        yield info
        return
    proc = subprocess.Popen([sys.executable, WORKLOAD], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    info = None
    try:
        for line in proc.stdout:
            if line.startswith("WORKLOAD "):
                info = json.loads(line[len("WORKLOAD "):])
            elif line.strip() == "READY":
                break
        assert info is not None, f"the workload exited ({proc.poll()}) before READY"
        from tests.kernel import test_ss
        test_ss.TIME_WAIT_AT[0] = info.get("time_wait_at")
        yield info
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
