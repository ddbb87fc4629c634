"""Command line: ``python -m vmtests {run,dump,crash,shell,kernels,test,demo,bench,benchpage}``."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vmtests import VMTestError
from vmtests.config import DEFAULT_FLAVOUR, DEFAULT_KERNEL, FLAVOURS, MATRIX, MATRIX_MODES, flavour_name

if TYPE_CHECKING:
    from vmtests.kernels import Kernel
    from vmtests.vm import Guest


def _add_vm_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel", "-k", default=DEFAULT_KERNEL, metavar="K",
                   help=f"kernel series: {', '.join(MATRIX)} (default {DEFAULT_KERNEL})")
    p.add_argument("--flavour", default=DEFAULT_FLAVOUR, metavar="F",
                   help=f"Debian kernel flavour: {', '.join(FLAVOURS)} (default {DEFAULT_FLAVOUR})")
    p.add_argument("--memory", type=int, default=2048, metavar="MB", help="guest memory (default 2048)")
    p.add_argument("--cpus", type=int, default=2, help="guest CPUs (default 2)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="auto uses KVM when it can boot a kernel here, else TCG (default auto)")
    p.add_argument("--timeout", type=float, default=1800, metavar="S",
                   help="kill the guest after S seconds (default 1800)")
    p.add_argument("--refresh", action="store_true", help="refresh the package index first")
    p.add_argument("--no-debuginfo", action="store_true",
                   help="do not place the debug vmlinux where drgn looks for it (a stock host)")
    p.add_argument("-v", "--verbose", action="store_true", help="show the guest console")


def _command(args: argparse.Namespace) -> list[str]:
    cmd: list[str] = list(args.command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise VMTestError(f"{args.cmd}: give a command after --")
    return cmd


def _guest(args: argparse.Namespace) -> tuple[Kernel, Guest]:
    from vmtests.kernels import get_kernel, series_for
    from vmtests.vm import Guest, find_qemu, find_virtiofsd

    series_for(args.kernel)
    find_qemu()
    find_virtiofsd()
    kernel = get_kernel(args.kernel, flavour_name(args.flavour), refresh=args.refresh)
    from vmtests.guest_tools import ensure_guest_tools

    try:
        ensure_guest_tools()  # what the workload runs in the guest: the NFS server, crun
    except VMTestError as e:
        print(f"vmtests: warning: {e}: the workload makes no NFS server or container", file=sys.stderr)
    return kernel, Guest(kernel, memory_mb=args.memory, cpus=args.cpus, accel=args.accel,
                         verbose=args.verbose, debuginfo=not args.no_debuginfo)


def cmd_run(args: argparse.Namespace) -> int:
    argv = _command(args)
    _, guest = _guest(args)
    with guest:
        guest.start(argv)
        return guest.wait(args.timeout)


def cmd_shell(args: argparse.Namespace) -> int:
    _, guest = _guest(args)
    with guest:
        print(f"vmtests: {guest.kernel.release}; exit the shell to power off", file=sys.stderr)
        # No login profile or rc file: they would put the host's PATH before .venv/bin.
        argv = ["/bin/bash", "--norc", "-i"] if os.path.exists("/bin/bash") else ["/bin/sh", "-i"]
        env = {**os.environ, "PS1": r"vmtest:\w# "}
        guest.start(argv, env=env, shell=True)
        guest.wait(None)
    return 0


def cmd_dump(args: argparse.Namespace) -> int:
    argv = _command(args)
    kernel, guest = _guest(args)
    with guest:
        guest.start(argv)
        guest.wait_ready(args.timeout)
        out = guest.dump(Path(args.out), args.format)
    print(f"vmtests: wrote {out} ({out.stat().st_size / 1e6:.0f} MB)", file=sys.stderr)
    print(kernel.vmlinux)
    return 0


def cmd_crash(args: argparse.Namespace) -> int:
    from vmtests.kernels import get_kernel, series_for
    from vmtests.vm import CrashOptions, Guest, find_qemu, find_virtiofsd, makedumpfile_supports

    argv = _command(args)
    series_for(args.kernel)
    find_qemu()
    find_virtiofsd()
    for tool, package in (("kexec", "kexec-tools"), ("makedumpfile", "makedumpfile")):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            raise VMTestError(f"{tool} not found: apt-get install {package}")
    if not makedumpfile_supports(args.compress):
        raise VMTestError(f"this host's makedumpfile has no {args.compress} support "
                          "(makedumpfile -v lists what it has): use zlib or lzo")
    kernel = get_kernel(args.kernel, flavour_name(args.flavour), refresh=args.refresh)
    memory = max(args.memory, 1024)
    crash = CrashOptions(((args.dump_level, args.compress),))
    with Guest(kernel, memory_mb=memory, cpus=args.cpus, accel=args.accel, verbose=args.verbose,
               debuginfo=not args.no_debuginfo, crash=crash) as guest:
        guest.start(argv)
        guest.wait_ready(args.timeout)
        (out,) = guest.crash_dumps([Path(args.out)], args.timeout)
        if guest.panic_pid is not None:
            print(f"vmtests: panicked from pid {guest.panic_pid}", file=sys.stderr)
    print(f"vmtests: wrote {out} ({out.stat().st_size / 1e6:.1f} MB, makedumpfile -d "
          f"{args.dump_level}, {args.compress})", file=sys.stderr)
    print(kernel.vmlinux)
    return 0


def cmd_kernels(args: argparse.Namespace) -> int:
    from vmtests.apt import AptState
    from vmtests.kernels import Missing, cached_kernels, resolve_cached

    flavour = flavour_name(args.flavour)
    apt = AptState()
    try:
        apt.update(force=args.refresh)
        index_ok = True
    except VMTestError as e:
        print(f"vmtests: {e}", file=sys.stderr)
        index_ok = False
    missing = Missing(apt)
    print(f"{'kernel':<7} {'newest available':<44} cached ({flavour})")
    for name, series in MATRIX.items():
        newest = "?"
        if index_ok:
            cands = [c for c in resolve_cached(series, flavour, apt) if not missing.has(c)]
            newest = f"{cands[0].release} {cands[0].version}" if cands else "(none)"
        cached = cached_kernels(name, flavour)
        have = ", ".join(f"{k.release} {k.version}" for k in cached) or "-"
        print(f"{name:<7} {newest:<44} {have}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from vmtests.matrix import run_matrix

    return run_matrix(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from vmtests.matrix import run_demo

    return run_demo(args)


def _add_test_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The test command's parser: the kernel matrix."""
    p = sub.add_parser("test", help="the kernel matrix suite: every kernel in every mode")
    p.add_argument("--kernel", "-k", action="append", metavar="K",
                   help="only this kernel (repeatable; default: the whole matrix)")
    p.add_argument("--mode", action="append",
                   choices=MATRIX_MODES,
                   help="only this mode (repeatable; default: all)")
    p.add_argument("--flavour", default=DEFAULT_FLAVOUR)
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    p.add_argument("--timeout", type=float, default=900, metavar="S",
                   help="per-guest time limit (default 900)")
    p.add_argument("--refresh", action="store_true", help="refresh the package index first")
    p.add_argument("--no-host", action="store_true",
                   help="skip ruff, mypy and the host tests; run only the kernel matrix")
    p.add_argument("--jobs", "-j", type=int, metavar="N",
                   help="run up to N parts (a kernel's live run, its outside run, its btf run) at once, "
                        "each printed whole when it ends (default 1: in-guest timing tests need the cores)")
    p.add_argument("--results-json", type=Path, metavar="FILE", help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="show the guest consoles")
    p.set_defaults(func=cmd_test)


def _add_bench_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The bench and benchpage commands' parsers."""
    p = sub.add_parser("bench", help="drgn-ss beside ss -tan/-tanp, psutil and a /proc parser, on "
                       "20k and 100k-socket workloads: native, on a dump, over --qemu, in the guest "
                       "(--workload unix: beside ss -xan/-xanp, on unix sockets)")
    p.add_argument("--kernel", "-k", action="append", metavar="K",
                   help="kernel to boot (repeatable; default: 6.1 and 7.2)")
    p.add_argument("--workload", choices=("tcp", "unix"), default="tcp",
                   help="tcp: a busy TCP server, measured with ss -tan/-tanp (the default); unix: "
                   "connected unix stream sockets over 50 processes, with ss -xan/-xanp")
    p.add_argument("--sizes", default="20000,100000", metavar="N,N",
                   help="sockets per workload (TCP: established; default 20000,100000)")
    p.add_argument("--runs", type=int, default=3, help="runs per tool; medians are reported (default 3)")
    p.add_argument("--budget", type=float, default=60, metavar="S",
                   help="stop repeating a tool once its runs took S seconds (default 60)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON here")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    p.add_argument("--native-only", action="store_true", help="skip the guests (native tools only)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("benchpage", help="write docs/benchmarks.md from the benchmark's results "
                       "(vmtests/results/*.json)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if the page is not what the results make")
    p.add_argument("--results", type=Path, metavar="DIR", help="the results (default vmtests/results)")
    p.add_argument("--out", type=Path, metavar="FILE", help="the page (default docs/benchmarks.md)")
    p.set_defaults(func=cmd_benchpage)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vmtests",
        description="Boot real Debian kernels under QEMU; run drgn-ss inside and against them.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="boot a kernel and run COMMAND in it; exit with its status")
    _add_vm_options(p)
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG...]")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("dump", help="run SETUP in a guest; at its READY line, dump the guest's memory")
    _add_vm_options(p)
    p.add_argument("--format", choices=("elf", "kdump"), default="elf",
                   help="elf (the size of guest memory) or kdump (zlib-compressed)")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the dump")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- SETUP [ARG...]")
    p.set_defaults(func=cmd_dump)

    p = sub.add_parser("crash", help="run SETUP; at its READY line, panic the guest and save a kdump "
                       "with makedumpfile from the capture kernel")
    _add_vm_options(p)
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the dump")
    p.add_argument("--dump-level", type=int, default=31, choices=range(32), metavar="N",
                   help="makedumpfile's dump level, 0-31 (default 31: no zero, cache, user, free pages)")
    p.add_argument("--compress", choices=("zlib", "lzo", "zstd", "none"), default="zlib",
                   help="makedumpfile's compression (default zlib, as Debian's kdump-tools)")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- SETUP [ARG...]")
    p.set_defaults(func=cmd_crash)

    p = sub.add_parser("shell", help="an interactive shell in a guest")
    _add_vm_options(p)
    p.set_defaults(func=cmd_shell)

    p = sub.add_parser("kernels", help="the kernel matrix: newest build in the index, and what is cached")
    p.add_argument("--flavour", default=DEFAULT_FLAVOUR)
    p.add_argument("--refresh", action="store_true", help="refresh the package index first")
    p.set_defaults(func=cmd_kernels)

    _add_test_parser(sub)

    p = sub.add_parser("demo", help="the main job on this machine: ss_nlpt.py beside ss -nlpt in a guest")
    _add_vm_options(p)
    p.set_defaults(func=cmd_demo)

    _add_bench_parsers(sub)
    return parser


def cmd_bench(args: argparse.Namespace) -> int:
    from vmtests.bench import run_bench
    from vmtests.kernels import series_for

    kernels = args.kernel or ["6.1", "7.2"]
    for k in kernels:
        series_for(k)
    try:
        sizes = [int(n) for n in args.sizes.split(",") if n]
    except ValueError:
        raise VMTestError(f"--sizes: numbers separated by commas, not {args.sizes!r}") from None
    if not sizes or any(n < 2 for n in sizes) or args.runs < 1:
        raise VMTestError("--sizes needs sizes of at least 2, --runs at least 1")
    return run_bench(kernels, sizes, args.runs, args.budget, args.json, args.accel, not args.native_only,
                     args.workload)


def cmd_benchpage(args: argparse.Namespace) -> int:
    from vmtests.benchpage import PAGE, RESULTS, check, write

    results, page = args.results or RESULTS, args.out or PAGE
    if args.check:
        stale = check(results, page)
        if stale:
            print(f"vmtests benchpage: {stale}", file=sys.stderr)
            return 1
        return 0
    changed = write(results, page)
    print(f"vmtests benchpage: {'wrote' if changed else 'unchanged:'} {page}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    def _term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _term)
    try:
        return int(args.func(args))
    except VMTestError as e:
        print(f"vmtests: {e}", file=sys.stderr)
        return 2 if args.cmd in ("kernels", "benchpage") else 125
    except KeyboardInterrupt:
        print("vmtests: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
