"""The kernel matrix: every kernel, in every mode, then one table of results.

Modes, each running tests/kernel with pytest against one kernel:

- ``live``: inside the guest, against the running kernel (/proc/kcore).
- ``btf``: the same in a guest without the debug vmlinux (a stock host): drgn-ss and the
  scripts read the kernel's BTF and kallsyms; the tests that compare with ss, and those
  about running without debug info, run there.
- ``qemu``: on the host, against the running guest through ``drgn --qemu``.
- ``elf``, ``kdump``: on the host, against dumps of that guest taken over QMP.
- ``crash``, ``crash0``: on the host, against real crash dumps: the guest panics
  (sysrq c), its capture kernel runs makedumpfile (``crash``: level 31, zlib,
  Debian's default; ``crash0``: level 0, lzo), as users' dumps are made.

The guest side of all but live is tests/kernel/workload.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vmtests import VMTestError
from vmtests.config import MATRIX, MATRIX_MODES, REPO, cache_dir, flavour_name
from vmtests.kernels import Kernel, get_kernel
from vmtests.outcome import CRASH_MODES, MatrixResults, Outcome, pytest_outcome
from vmtests.vm import CrashOptions, Guest

#: The tests of the btf mode: what compares with ss, and who holds a socket (module types, cgroups).
BTF_TESTS = ("same_lines_as_ss or scripts_under_drgn or terminal_layout or debug_info"
             " or test_kernel_users or test_runs_in or test_who_holds or test_queues or test_report")
#: The kernels whose live run also runs the real monitoring agents (tests/kernel/test_fleet.py:
#: ~2 minutes a kernel under TCG): the oldest and newest of the fleet's, the issue's two.
AGENT_KERNELS = ("6.1", "7.2")
PYTHON = str(REPO / ".venv" / "bin" / "python")
WORKLOAD = "tests/kernel/workload.py"


def pytest_argv(*extra: str) -> list[str]:
    return [PYTHON, "-m", "pytest", "tests/kernel", "-p", "vmtests.pytest_counts", "-q", "-rfEs",
            "--durations=12",
            *extra]


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def run_host_pytest(what: str, env: Mapping[str, str], argv: Sequence[str] | None = None) -> Outcome:
    """Run pytest on the host, its output passed through; return its counts."""
    proc = subprocess.Popen(
        list(argv or pytest_argv()), cwd=REPO, env={**os.environ, **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line)
    sys.stdout.flush()
    return pytest_outcome("".join(lines), proc.wait(), what)


def run_live(kernel: Kernel, args: argparse.Namespace, btf: bool = False) -> Outcome:
    mode = "btf" if btf else "live"
    banner(f"{kernel.release}: {mode} (pytest inside the guest{', no debug info' if btf else ''})")
    with Guest(kernel, accel=args.accel, verbose=args.verbose, debuginfo=not btf) as guest:
        env = {**os.environ, "DRGN_SS_TARGET": "live", "DRGN_SS_MODE": mode}
        if kernel.series in AGENT_KERNELS:
            env["DRGN_SS_AGENTS"] = "1"
        argv = pytest_argv()
        if btf:
            env["DRGN_SS_NO_DEBUG_INFO"] = "1"
            argv = pytest_argv("-k", BTF_TESTS)
        guest.start(argv, cwd=str(REPO), env=env)
        rc = guest.wait(args.timeout)
        return pytest_outcome("\n".join(guest.stdout_lines), rc, mode)


def workload_info(lines: Sequence[str]) -> dict[str, Any]:
    """The JSON tests/kernel/workload.py printed on its ``WORKLOAD`` line."""
    info = [ln for ln in lines if ln.startswith("WORKLOAD ")]
    if not info:
        raise VMTestError("the workload printed no WORKLOAD line")
    data: dict[str, Any] = json.loads(info[-1][len("WORKLOAD "):])
    return data


def run_outside(kernel: Kernel, modes: Sequence[str], args: argparse.Namespace,
                sizes: dict[str, int]) -> dict[str, Outcome]:
    """
    The modes read from the host (qemu, elf, kdump, crash, crash0), from one guest running
    the workload once: read over QMP while it runs, dumped over QMP, then panicked, kdump
    saving one dump per crash mode from the same panic (their sizes go to ``sizes``).
    """
    results: dict[str, Outcome] = {}
    crash_modes = [m for m in modes if m in CRASH_MODES]
    crash = CrashOptions(tuple(CRASH_MODES[m] for m in crash_modes)) if crash_modes else None
    scratch = Path(tempfile.mkdtemp(prefix="matrix-", dir=cache_dir() / "run"))
    try:
        dumps: dict[str, Path] = {}
        with Guest(kernel, memory_mb=1024, accel=args.accel, verbose=args.verbose, crash=crash) as guest:
            banner(f"{kernel.release}: workload in the guest")
            guest.stdout_sink = _quiet
            guest.start([PYTHON, WORKLOAD, "--lower-limits"], cwd=str(REPO))  # nothing else runs there
            lines = guest.wait_ready(args.timeout)
            info = workload_info(lines)
            workload = scratch / "workload.json"
            workload.write_text(json.dumps(info))
            env = {"DRGN_SS_VMLINUX": str(kernel.vmlinux), "DRGN_SS_WORKLOAD": str(workload),
                   "DRGN_SS_MODULE_DEBUG": ":".join(map(str, kernel.module_debug))}
            if "qemu" in modes:
                banner(f"{kernel.release}: qemu (pytest on the host, drgn --qemu)")
                results["qemu"] = run_host_pytest(
                    "qemu", {**env, "DRGN_SS_TARGET": f"qemu:{guest.user_qmp}", "DRGN_SS_MODE": "qemu"})
            for fmt in ("elf", "kdump"):
                if fmt in modes:
                    start = time.monotonic()
                    dumps[fmt] = guest.dump(scratch / f"{fmt}.vmcore", fmt)
                    size = dumps[fmt].stat().st_size
                    print(f"vmtests: {fmt} dump: {size / 1e6:.0f} MB in "
                          f"{time.monotonic() - start:.1f} s", flush=True)
            if crash is not None:
                levels = ", ".join(f"-d {level} {compress}" for level, compress in crash.dumps)
                banner(f"{kernel.release}: {', '.join(crash_modes)} (panic, kdump, makedumpfile {levels})")
                start = time.monotonic()
                saved = guest.crash_dumps([scratch / f"{m}.vmcore" for m in crash_modes], args.timeout)
                for mode, path in zip(crash_modes, saved):
                    dumps[mode] = path
                    sizes[mode] = path.stat().st_size
                    level, compress = CRASH_MODES[mode]
                    print(f"vmtests: {mode} dump (level {level}, {compress}): {sizes[mode] / 1e6:.1f} MB",
                          flush=True)
                print(f"vmtests: panic to files in {time.monotonic() - start:.1f} s", flush=True)
                for mode in crash_modes:
                    crashed = {**info, "panic_pid": guest.panic_pid, "dump_level": CRASH_MODES[mode][0]}
                    (scratch / f"{mode}.json").write_text(json.dumps(crashed))
        for mode, path in dumps.items():
            what = "the crash dump" if mode in CRASH_MODES else "the dump"
            banner(f"{kernel.release}: {mode} (pytest on the host against {what})")
            mode_env = {**env, "DRGN_SS_TARGET": f"core:{path}", "DRGN_SS_MODE": mode}
            if mode in CRASH_MODES:
                mode_env["DRGN_SS_WORKLOAD"] = str(scratch / f"{mode}.json")
            results[mode] = run_host_pytest(mode, mode_env)
            path.unlink()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def _quiet(data: bytes) -> None:
    """The workload's stdout is its JSON description, read from Guest.stdout_lines."""


def run_host_checks() -> dict[str, Outcome]:
    """ruff, mypy and the host-side tests (the package's in tests/, vmtests' own in vmtests/tests/; no VM)."""
    results: dict[str, Outcome] = {}
    for name, argv in (
        ("ruff", [str(REPO / ".venv/bin/ruff"), "check", "."]),
        ("mypy", [str(REPO / ".venv/bin/mypy")]),
    ):
        banner(name)
        rc = subprocess.run(argv, cwd=REPO).returncode
        results[name] = Outcome(passed=1) if rc == 0 else Outcome(failed=1)
    banner("host tests (tests/ and vmtests/tests/, no VM)")
    results["pytest"] = run_host_pytest(
        "host", {}, [PYTHON, "-m", "pytest", "tests", "vmtests/tests", "--ignore=tests/kernel",
                     "-p", "vmtests.pytest_counts", "-q", "-rfEs"])
    return results


def run_here(args: argparse.Namespace, kernels: Sequence[str], modes: Sequence[str]) -> MatrixResults:
    """Each kernel in each mode, one after the other, in this process."""
    got = MatrixResults()
    for name in kernels:
        row = got.results.setdefault(name, {})
        try:
            kernel = get_kernel(name, flavour_name(args.flavour), refresh=args.refresh)
            got.releases[name] = kernel.release
            if "live" in modes:
                row["live"] = run_live(kernel, args)
            if "btf" in modes:
                row["btf"] = run_live(kernel, args, btf=True)
            outside = [m for m in modes if m in ("qemu", "elf", "kdump", *CRASH_MODES)]
            if outside:
                row.update(run_outside(kernel, outside, args, got.dump_sizes.setdefault(name, {})))
        except VMTestError as e:
            got.errors.append(f"{name}: {e}")
            print(f"vmtests: {name}: {e}", file=sys.stderr, flush=True)
            for m in modes:
                row.setdefault(m, Outcome(error=str(e)))
    return got


def _fetch_kernels(args: argparse.Namespace, kernels: Sequence[str]) -> MatrixResults:
    """Download what is missing before the parts start (they would race for it)."""
    got = MatrixResults()
    for name in kernels:
        try:
            got.releases[name] = get_kernel(name, flavour_name(args.flavour), refresh=args.refresh).release
        except VMTestError as e:
            got.errors.append(f"{name}: {e}")
            got.results[name] = {}
    return got


def default_jobs() -> int:
    """
    One part at a time. Two at once (``--jobs 2``) took the matrix from 53 to ~45 minutes on
    two cores, but the emulated guests' timing tests (nethogs' rates per sample) then failed
    now and then: a guest beside a busy host part is starved unevenly.
    """
    return 1


def run_matrix(args: argparse.Namespace) -> int:
    flavour = flavour_name(args.flavour)
    kernels = args.kernel or list(MATRIX)
    modes = [m for m in MATRIX_MODES if not args.mode or m in args.mode]
    start = time.monotonic()
    host = {} if args.no_host else run_host_checks()
    from vmtests.guest_tools import ensure_guest_tools

    ensure_guest_tools()  # the workload's NFS server and container (tests/kernel/kernel_socks.py)
    jobs = args.jobs or default_jobs()
    if jobs > 1:
        from vmtests.parallel import plan, run_parallel

        if len(plan(kernels, modes)) > 1:
            got = _fetch_kernels(args, kernels)
            fine = [k for k in kernels if k in got.releases]
            got.merge(run_parallel(args, fine, modes, jobs))
            for name in kernels:
                if name not in got.releases:
                    got.results[name] = {m: Outcome(error="the kernel could not be had") for m in modes}
        else:
            got = run_here(args, kernels, modes)
    else:
        got = run_here(args, kernels, modes)
    if args.results_json:
        got.save(args.results_json)
    for name, row in got.results.items():
        for mode, outcome in row.items():
            if outcome.error and f"{name}: {outcome.error}" not in got.errors:
                got.errors.append(f"{name} {mode}: {outcome.error}")

    if host:
        print("\nhost checks: " + ", ".join(
            f"{name} {'ok' if o.ok else 'FAILED'}" if name != "pytest" else f"tests {o.cell()}"
            for name, o in host.items()))
    got.print_table(flavour, list(kernels), modes)
    for err in got.errors:
        print(f"  error: {err}")
    everything = list(host.values()) + [o for row in got.results.values() for o in row.values()]
    passed = sum(o.passed for o in everything)
    failed = sum(o.failed + (1 if o.error else 0) for o in everything)
    skipped = sum(o.skipped for o in everything)
    print(f"({time.monotonic() - start:.0f} s)")
    print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if failed == 0 and passed > 0 else 1


def run_demo(args: argparse.Namespace) -> int:
    """Boot the default kernel and show drgn-ss beside ss on a small workload."""
    kernel = get_kernel(args.kernel, flavour_name(args.flavour), refresh=args.refresh)
    with Guest(kernel, memory_mb=args.memory, cpus=args.cpus, accel=args.accel,
               verbose=args.verbose) as guest:
        guest.start([PYTHON, "-m", "vmtests.demo"], cwd=str(REPO))
        return guest.wait(args.timeout)


__all__ = ["run_demo", "run_matrix"]
