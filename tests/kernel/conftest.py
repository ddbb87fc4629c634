"""Fixtures of the kernel matrix suite: one drgn Program per run, and what to expect.

The target comes from the environment (set by ``python -m vmtests test``):

- ``DRGN_SS_TARGET``: ``live`` (the running kernel: in a vmtests guest),
  ``core:PATH`` (a dump) or ``qemu:SOCKET`` (a running guest over QMP).
  Unset: ``live`` where /proc/kcore exists, otherwise every test is skipped.
- ``DRGN_SS_VMLINUX``: the debug vmlinux for ``core`` and ``qemu`` targets.
- ``DRGN_SS_WORKLOAD``: for ``core`` and ``qemu``, the JSON line that
  tests/kernel/workload.py printed in the guest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import drgn
import pytest

from tests.kernel.workload import describe, open_listeners


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
    if _target() is None:
        skip = pytest.mark.skip(reason="no kernel to read: run through `python -m vmtests test`")
        for item in items:
            if "tests/kernel" in str(item.fspath).replace(os.sep, "/"):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def target() -> Target:
    t = _target()
    assert t is not None
    return t


@pytest.fixture(scope="session")
def prog(target: Target) -> drgn.Program:
    """The kernel under test, with the main debug info only (no module symbols)."""
    prog = drgn.Program()
    if target.kind == "live":
        prog.set_kernel()
    elif target.kind == "core":
        assert target.path is not None
        try:
            prog.set_core_dump(target.path)
        except Exception as e:
            # QEMU's kdump-compressed dumps leave utsname.sysname empty, so
            # libkdumpfile cannot tell the architecture: give it, as
            # `drgn --architecture x86_64` would.
            if "KDUMP_ATTR_ARCH_NAME" not in str(e):
                raise
            prog = drgn.Program(drgn.host_platform)
            prog.set_core_dump(target.path)
    else:
        prog.set_qemu_qmp(target.path)
    prog.load_debug_info([target.vmlinux] if target.vmlinux else [], main=True)
    return prog


@pytest.fixture(scope="session")
def workload(target: Target) -> Iterator[dict[str, Any]]:
    """What the kernel should hold: for live, sockets this process opens; else the guest's."""
    if target.kind != "live":
        path = os.environ.get("DRGN_SS_WORKLOAD")
        if not path:
            raise pytest.UsageError("DRGN_SS_WORKLOAD is needed for core and qemu targets")
        with open(path) as f:
            yield json.load(f)
        return
    listeners = open_listeners()
    yield describe(listeners)
    for s in listeners:
        s.close()
