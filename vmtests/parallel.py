"""The kernel matrix in parts side by side: each part a child ``vmtests test`` of its own.

A kernel's live run (a guest running pytest) and its outside run (a guest running the
workload, then pytest on the host against it and its dumps) each keep about one core busy,
one after the other: on this machine's two cores the matrix takes about half as long with two
parts at once. Each child's output goes to a file, printed whole when it ends (the outputs
do not interleave); a line says when each part starts and ends, with its counts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from vmtests.config import REPO, cache_dir
from vmtests.outcome import CRASH_MODES, MatrixResults, Outcome

#: The modes one outside run gives (one guest, its workload, its dumps).
OUTSIDE_MODES = ("qemu", "elf", "kdump", *CRASH_MODES)
#: How often a line says which parts are still running.
HEARTBEAT_S = 300.0


@dataclass
class Part:
    kernel: str
    modes: list[str]
    log: Path
    results: Path
    proc: subprocess.Popen[bytes] | None = None
    start: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.kernel} {'+'.join(self.modes)}"


def plan(kernels: list[str], modes: list[str]) -> list[tuple[str, list[str]]]:
    """The parts, longest first as far as known: each kernel's live and outside runs, then btf."""
    parts: list[tuple[str, list[str]]] = []
    outside = [m for m in modes if m in OUTSIDE_MODES]
    for name in kernels:
        if "live" in modes:
            parts.append((name, ["live"]))
        if outside:
            parts.append((name, outside))
    parts += [(name, ["btf"]) for name in kernels if "btf" in modes]
    return parts


def _in_guest(part: Part) -> bool:
    """Whether pytest runs in the emulated guest (live, btf), or on the host (the rest)."""
    return part.modes[0] in ("live", "btf")


def _next(waiting: list[Part], running: list[Part]) -> int:
    """
    The next part to start: the first of the kind not running (a guest's pytest beside the
    host's keeps both cores busy; two emulated guests share them and both slow down), else
    the first.
    """
    busy = {_in_guest(p) for p in running}
    return next((i for i, p in enumerate(waiting) if _in_guest(p) not in busy), 0)


def _child_argv(part: Part, args: argparse.Namespace) -> list[str]:
    argv = [sys.executable, "-m", "vmtests", "test", "--no-host", "--jobs", "1", "--kernel", part.kernel,
            "--flavour", args.flavour, "--accel", args.accel, "--timeout", str(args.timeout),
            "--results-json", str(part.results)]
    for mode in part.modes:
        argv += ["--mode", mode]
    return argv + (["--verbose"] if args.verbose else [])


def _say(start: float, text: str) -> None:
    elapsed = int(time.monotonic() - start)
    print(f"vmtests: [{elapsed // 60:02d}:{elapsed % 60:02d}] {text}", flush=True)


def _finish(part: Part, rc: int, start: float) -> MatrixResults:
    """A part that ended: its results (or an error for each of its modes), its log printed."""
    try:
        got = MatrixResults.load(part.results)
    except (OSError, ValueError, KeyError, TypeError) as e:
        lost = Outcome(error=f"the run ended ({rc}) without results: {e}")
        got = MatrixResults(results={part.kernel: {m: lost for m in part.modes}})
    row = got.results.get(part.kernel, {})
    counts = ", ".join(f"{m} {row[m].cell() if m in row else '-'}" for m in part.modes)
    _say(start, f"done: {part.name} in {time.monotonic() - part.start:.0f} s: {counts}")
    print(part.log.read_text(errors="replace"), flush=True)
    return got


def run_parallel(args: argparse.Namespace, kernels: list[str], modes: list[str], jobs: int) -> MatrixResults:
    """Run the matrix's parts, at most ``jobs`` at once; their results merged."""
    merged = MatrixResults()
    start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="parts-", dir=cache_dir() / "run"))
    parts = enumerate(plan(kernels, modes))
    waiting = [Part(k, m, work / f"{i}.log", work / f"{i}.json") for i, (k, m) in parts]
    running: list[Part] = []
    beat = start
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                part = waiting.pop(_next(waiting, running))
                part.start = time.monotonic()
                with part.log.open("wb") as log:
                    part.proc = subprocess.Popen(_child_argv(part, args), cwd=REPO, stdout=log,
                                                 stderr=subprocess.STDOUT, env=os.environ.copy())
                running.append(part)
                _say(start, f"started: {part.name}")
            time.sleep(1)
            for part in [p for p in running if p.proc is not None and p.proc.poll() is not None]:
                running.remove(part)
                assert part.proc is not None
                merged.merge(_finish(part, part.proc.returncode, start))
            if time.monotonic() - beat > HEARTBEAT_S:
                beat = time.monotonic()
                _say(start, "running: " + ", ".join(p.name for p in running))
    finally:
        for part in running:
            if part.proc is not None and part.proc.poll() is None:
                part.proc.terminate()
                part.proc.wait(30)
        for path in work.iterdir():
            path.unlink()
        work.rmdir()
    return merged
