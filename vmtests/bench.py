"""The benchmark: drgn-ss beside ss, psutil and a /proc parser, on the same workload.

``python -m vmtests bench [--kernel K] [--sizes 20000,100000] --json OUT`` does, for each
kernel and size, in one run:

- native, on the host: the workload (:mod:`vmtests.bench_workload`) in a private network
  namespace; ``ss -tan``, ``ss -tanp``, ``psutil.net_connections()`` (installed in a
  separate venv, for the benchmark only) and a Python /proc parser, each in that namespace;
- in a guest running the same workload: ``ss`` and ``drgn-ss`` inside it (TCG: for
  reference only), then on the host ``drgn-ss --qemu`` against it and ``drgn-ss -c`` on an
  ELF dump of it (native speed: these are what the targets are judged on), with the guest
  paused (QMP ``stop``) so that QEMU's emulation does not compete with them for the CPU.

Each tool runs ``--runs`` times (a tool whose runs pass ``--budget`` seconds stops
early, and says how many it made; a native tool's run still going after ``--budget``
seconds is killed, and its time and ratios are bounds: ``>60.0``); the table and the
JSON give medians, the ratio to native ``ss -tanp`` and ``ss -tan`` of the same size,
drgn-ss's own split (start-up, walk per socket, owners per open file, the memory it
allocated per socket) from its ``--stats`` line, peak RSS and lines printed. Above
:data:`GUEST_TOOLS_MAX` sockets the tools are not run inside the guest (minutes a run
under TCG): only over ``--qemu`` and on the dump.
drgn-ss's first run on each target starts with an empty facts cache (it loads DWARF):
that time is reported apart as ``cold_s``; the medians are of the runs after it. One more
cold run reads the kernel's BTF and kallsyms instead (``--btf``: what a host without debug
info does), in the guest and on the dump: ``cold_btf_s``; the JSON has the seconds each
cold run spent working its facts out (``cold_types_s``, ``cold_btf_types_s``), and its
start-up to the first socket read (``cold_startup_s``, ``cold_btf_startup_s``: from
drgn-ss's start, so the Python interpreter and imports, ``cold_interpreter_s``, the same
for both, are apart). A second table sets the two start-ups side by side.

``--workload unix`` measures a unix workload instead (N connected unix stream sockets,
``bench_workload.py --unix N``): native ``ss -xan`` and ``ss -xanp``, in the guest the same
and drgn-ss, on the host ``drgn-ss -xanp`` and ``-xan`` over ``--qemu`` and on a dump; the
ratios are to native ``ss -xanp`` and ``ss -xan``. :data:`WORKLOADS` lists the workloads.

This module is also the in-guest half (``python -m vmtests.bench guest N RUNS BUDGET
[WORKLOAD]``), so it imports nothing outside the standard library at module level.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
WORKLOAD = REPO / "vmtests" / "bench_workload.py"
#: GNU time (Debian's "time" package), for each command's peak RSS.
TIME = "/usr/bin/time"

#: The workloads (``--workload``): each one's ss options, ``-p`` apart. ``tcp``: a busy TCP
#: server (the default); ``unix``: connected unix stream sockets, a busy local daemon's.
WORKLOADS = {"tcp": "-tan", "unix": "-xan"}


def baselines(workload: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """
    The native tools a workload's ratios are to, ss with ``-p`` and without, each with
    the key of its ratio: ``("ss -tanp", "x_ss_tanp"), ("ss -tan", "x_ss_tan")`` for TCP.
    """
    opts = WORKLOADS[workload]
    return (f"ss {opts}p", f"x_ss_{opts[1:]}p"), (f"ss {opts}", f"x_ss_{opts[1:]}")


PROCPARSE = r'''
import os, socket, struct, sys
STATES = {1: "ESTAB", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
          6: "TIME-WAIT", 7: "UNCONN", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN", 11: "CLOSING"}
def addr(text, v6):
    a, p = text.split(":")
    raw = bytes.fromhex(a)
    if v6:
        raw = b"".join(struct.pack("<I", w) for w in struct.unpack(">4I", raw))
        return "[" + socket.inet_ntop(socket.AF_INET6, raw) + "]:" + str(int(p, 16))
    return socket.inet_ntoa(raw[::-1]) + ":" + str(int(p, 16))
owners = {}
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
        comm = open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        continue
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            owners.setdefault(link[8:-1], []).append(f'("{comm}",pid={pid},fd={fd})')
out = []
for name, v6 in (("tcp", False), ("tcp6", True)):
    with open(f"/proc/net/{name}") as f:
        next(f)
        for line in f:
            w = line.split()
            tx, rx = w[4].split(":")
            users = owners.get(w[9])
            out.append(f"{STATES.get(int(w[3], 16), '?')} {int(rx, 16)} {int(tx, 16)} "
                       f"{addr(w[1], v6)} {addr(w[2], v6)}"
                       + (f" users:({','.join(users)})" if users else ""))
sys.stdout.write("\n".join(out) + "\n")
'''

PSUTIL = r'''
import sys, psutil
out = []
for c in psutil.net_connections(kind="tcp"):
    r = f"{c.raddr.ip}:{c.raddr.port}" if c.raddr else "*:*"
    out.append(f"{c.status} {c.laddr.ip}:{c.laddr.port} {r} {c.pid}")
sys.stdout.write("\n".join(out) + "\n")
'''


# -- measuring one command -------------------------------------------------------------

def run_once(argv: Sequence[str], env: dict[str, str] | None = None,
             netns: int | None = None, stop: float | None = None) -> dict[str, Any]:
    """
    Run a command (in the network namespace of process ``netns``, through nsenter); its
    wall time, peak RSS, stdout line count and stderr. With ``stop``, a run still going
    after ``stop`` seconds is killed: its wall time is then ``stop``, a lower bound
    (``stopped``), and its RSS and lines are what it had.
    """
    if netns is not None:
        argv = ["nsenter", f"--net=/proc/{netns}/ns/net", "--", *argv]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as rss:
        # GNU time reports the peak RSS: measured from this process, the kernel would count
        # ours in (exec records the parent's high-water mark for a vforked child).
        start = time.perf_counter()
        proc = subprocess.Popen([TIME, "-f", "%M", "-o", rss.name, *argv], stdout=out, stderr=err,
                                env=env, start_new_session=True)
        stopped = False
        try:
            proc.wait(stop)
        except subprocess.TimeoutExpired:
            stopped = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        wall = stop if stop is not None and stopped else time.perf_counter() - start
        out.seek(0)
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: out.read(1 << 20), b""))
        err.seek(0)
        stderr = err.read().decode(errors="replace")
        words = rss.read().split()
        rss_kb = int(words[-1]) if words and words[-1].isdigit() else 0
    if stopped:
        return {"wall": wall, "rss_mb": rss_kb / 1024, "lines": lines, "stderr": stderr, "stopped": True}
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {stderr.strip()[-500:]}")
    return {"wall": wall, "rss_mb": rss_kb / 1024, "lines": lines, "stderr": stderr}


def measure(argv: Sequence[str], runs: int, budget: float, env: dict[str, str] | None = None,
            netns: int | None = None, cold: bool = False, stop: bool = False) -> dict[str, Any]:
    """
    Run a command up to ``runs`` times (fewer once ``budget`` seconds are spent; at least
    once) and summarise. With ``cold``, one extra run comes first and is reported apart.
    With ``stop`` (the native tools), a run is killed after ``budget`` seconds: the result
    is then ``stopped`` and its median the budget, a lower bound on the tool's time.
    """
    result: dict[str, Any] = {"cold_s": None}
    if cold:
        result.update(_cold("cold", run_once(argv, env, netns)))
    samples: list[dict[str, Any]] = []
    spent = 0.0
    while len(samples) < runs and (not samples or spent < budget):
        samples.append(run_once(argv, env, netns, budget if stop else None))
        spent += samples[-1]["wall"]
    if any(s.get("stopped") for s in samples):
        result.update(stopped=True, median_s_bound=">")
    result.update({
        "median_s": round(statistics.median(s["wall"] for s in samples), 4),
        "peak_rss_mb": round(max(s["rss_mb"] for s in samples), 1),
        "lines": samples[-1]["lines"],
        "runs": len(samples),
    })
    parsed = [_stats(s["stderr"]) for s in samples]
    stats = [st for st in parsed if st is not None]
    if stats and len(stats) == len(samples):
        walk = statistics.median(st["walk_s"] for st in stats)
        owners = statistics.median(st["owners_s"] for st in stats)
        render = statistics.median(st["render_s"] for st in stats)
        sockets = stats[-1]["sockets"]
        files = stats[-1]["files"]
        result.update({
            "startup_s": round(statistics.median(s["wall"] - st["walk_s"] - st["owners_s"] - st["render_s"]
                                                 for s, st in zip(samples, stats)), 4),
            "walk_s": round(walk, 4), "owners_s": round(owners, 4), "render_s": round(render, 4),
            "us_per_socket": round(walk / sockets * 1e6, 2) if sockets else None,
            "us_per_file": round(owners / files * 1e6, 2) if files else None,
            "files": files or None,
        })
        anon = [float(st["anon_peak_mb"]) for st in stats if st.get("anon_peak_mb")]
        if sockets and len(anon) == len(stats):
            result["alloc_b_per_socket"] = round(statistics.median(anon) * 2**20 / sockets)
    return result


def cold_btf(argv: Sequence[str]) -> dict[str, Any]:
    """
    One run with an empty facts cache reading the kernel's BTF and kallsyms (``--btf`` in
    ``argv``): :func:`_cold`'s figures as ``cold_btf_*``; None where the kernel cannot be
    read that way (a dump before 6.0).
    """
    with tempfile.TemporaryDirectory(prefix="drgn-ss-btf-") as cache:
        try:
            run = run_once(argv, {**os.environ, "DRGN_SS_CACHE": cache})
        except RuntimeError:
            return {"cold_btf_s": None}
    return _cold("cold_btf", run)


def _cold(prefix: str, run: dict[str, Any]) -> dict[str, Any]:
    """
    A cold run's wall time and, from its ``--stats`` line, the seconds it spent working
    facts out (``types_s``), from drgn-ss's start to its first socket read (``startup_s``)
    and from the process's start to drgn-ss's (``interpreter_s``).
    """
    stats = _stats(run["stderr"]) or {}
    return {f"{prefix}_s": round(run["wall"], 4),
            **{f"{prefix}_{key}": stats.get(key) for key in ("types_s", "startup_s", "interpreter_s")}}


def _stats(stderr: str) -> dict[str, Any] | None:
    for line in reversed(stderr.splitlines()):
        if line.startswith("{") and '"walk_s"' in line:
            stats: dict[str, Any] = json.loads(line)
            return stats
    return None


# -- the workload ----------------------------------------------------------------------

class NativeWorkload:
    """The workload on this host, in a private network namespace."""

    def __init__(self, established: int, workload: str = "tcp") -> None:
        self.established = established
        self.workload = workload
        self.proc: subprocess.Popen[str] | None = None
        #: The pid whose network namespace the tools enter.
        self.netns = -1

    def __enter__(self) -> NativeWorkload:
        self.proc = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", f"ip link set lo up && exec python3 {WORKLOAD} "
             f"{workload_args(self.workload, self.established)}"],
            stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert self.proc.stdout
        for line in self.proc.stdout:
            if line.strip() == "READY":
                break
        else:
            raise RuntimeError(f"the workload exited ({self.proc.wait()}) before READY")
        self.netns = self.proc.pid
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            self.proc.wait()


def psutil_python(cache: Path) -> str:
    """A Python with psutil, in a venv of its own (the project does not depend on psutil)."""
    venv = cache / "bench-venv"
    python = venv / "bin" / "python"
    ok = python.exists() and subprocess.run([str(python), "-c", "import psutil"],
                                            capture_output=True).returncode == 0
    if not ok:
        print("vmtests: installing psutil in a venv for the benchmark", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "psutil"], check=True)
    return str(python)


def workload_args(workload: str, size: int) -> str:
    """bench_workload.py's arguments for this workload and size."""
    return f"--unix {size}" if workload == "unix" else str(size)


def native_runs(established: int, runs: int, budget: float, cache: Path,
                workload: str = "tcp") -> list[dict[str, Any]]:
    opts = WORKLOADS[workload]
    tools = [(f"ss {opts}", ["ss", opts]), (f"ss {opts}p", ["ss", opts + "p"])]
    if workload == "tcp":
        tools += [("psutil", [psutil_python(cache), "-c", PSUTIL]),
                  ("procparse", [sys.executable, "-c", PROCPARSE])]
    out = []
    with NativeWorkload(established, workload) as w:
        for tool, argv in tools:
            progress(f"native {tool} ({established})")
            out.append({"where": "native", "tool": tool,
                        **measure(argv, runs, budget, netns=w.netns, stop=True)})
    return out


# -- in the guest ----------------------------------------------------------------------

def guest_tools(drgn_ss: str, workload: str) -> list[tuple[str, list[str], bool]]:
    """The tools measured in the guest: name, command, and whether its first run is cold."""
    opts = WORKLOADS[workload]
    tools: list[tuple[str, list[str], bool]] = [
        (f"ss {opts}", ["ss", opts], False),
        (f"ss {opts}p", ["ss", opts + "p"], False),
        (f"drgn-ss {opts}p", [drgn_ss, opts + "p", "--stats"], True),
        (f"drgn-ss {opts}", [drgn_ss, opts, "--stats"], False),
    ]
    if workload == "tcp":
        tools.append(("drgn-ss -tanp --owners proc", [drgn_ss, "-tanp", "--stats", "--owners", "proc"],
                      False))
        textfile = os.path.join(tempfile.mkdtemp(prefix="drgn-ss-bench-"), "drgn_ss.prom")
        tools += [(tool, [drgn_ss, *args], False) for tool, args in fleet_tools(textfile)]
    return tools


def fleet_tools(textfile: str) -> list[tuple[str, list[str]]]:
    """The agents' commands (docs/fleet.md): Zabbix's discovery, and the Prometheus textfile."""
    return [("drgn-ss --zabbix-discovery connections", ["--zabbix-discovery", "connections"]),
            ("drgn-ss --prometheus", ["--prometheus", textfile])]


def guest_main(established: int, runs: int, budget: float, workload: str = "tcp") -> int:
    """In the guest: start the workload, measure ss and drgn-ss live, print BENCH lines, READY."""
    w = subprocess.Popen([sys.executable, str(WORKLOAD), *workload_args(workload, established).split()],
                         stdout=subprocess.PIPE, text=True)
    assert w.stdout
    for line in w.stdout:
        if line.strip() == "READY":
            break
    else:
        print(f"bench: the workload exited ({w.wait()})", file=sys.stderr)
        return 1
    drgn_ss = str(Path(sys.executable).parent / "drgn-ss")
    env = {**os.environ, "DRGN_SS_CACHE": tempfile.mkdtemp(prefix="drgn-ss-bench-")}
    # Above GUEST_TOOLS_MAX the TCG guest would take minutes a run: dump and --qemu only.
    for tool, argv, cold in guest_tools(drgn_ss, workload) if established <= GUEST_TOOLS_MAX else []:
        result = {"where": "guest", "tool": tool, **measure(argv, runs, budget, env=env, cold=cold)}
        if cold and workload == "tcp":  # the start-up table's: the same whatever the workload
            result.update(cold_btf([*argv, "--btf"]))
        print("BENCH " + json.dumps(result), flush=True)
    print("READY", flush=True)
    w.wait()
    return 0


#: The largest workload the tools are run inside the guest for (see guest_main).
GUEST_TOOLS_MAX = 100_000


def guest_memory_mb(established: int) -> int:
    """The guest's RAM for a workload: about 5 KiB a socket past 100,000 (a socket, its file,
    inode and dentry, and the Python objects holding it), and the dump's RAM with it."""
    if established <= 30000:
        return 3072
    return 4096 + max(0, established - 100_000) * 5 // 1024


def guest_runs(kernel_name: str, established: int, runs: int, budget: float,
               accel: str, workload: str = "tcp") -> list[dict[str, Any]]:
    """Boot a guest with the workload; measure inside it, over --qemu, and on an ELF dump."""
    from vmtests.config import DEFAULT_FLAVOUR, flavour_name
    from vmtests.kernels import get_kernel
    from vmtests.vm import Guest

    kernel = get_kernel(kernel_name, flavour_name(DEFAULT_FLAVOUR))
    memory = guest_memory_mb(established)
    out: list[dict[str, Any]] = []
    with Guest(kernel, memory_mb=memory, accel=accel) as guest:
        tmp = Path(tempfile.mkdtemp(prefix="bench-", dir=guest.run_dir))
        progress(f"guest {kernel.release}: {workload} workload and in-guest runs ({established})")
        guest.start([sys.executable, "-m", "vmtests.bench", "guest", str(established), str(runs),
                     str(budget), workload], cwd=str(REPO))
        lines = guest.wait_ready(3600)
        out += [json.loads(line[6:]) for line in lines if line.startswith("BENCH ")]
        dump = tmp / "bench.elf"
        # The guest is paused while the host-side tools run: under TCG, its workload's
        # timers keep a core busy, which the native tools did not have to share.
        guest.qmp().execute("stop")
        try:
            for where in ("qemu", "dump"):
                if where == "dump":
                    progress(f"dump {kernel.release} ({memory} MB guest)")
                    guest.dump(dump, "elf")
                target = ["--qemu", str(guest.user_qmp)] if where == "qemu" else ["-c", str(dump)]
                env = {**os.environ, "DRGN_SS_CACHE": str(tmp / f"{where}-cache")}
                out += host_runs(where, target, str(kernel.vmlinux), env, established, runs, budget,
                                 workload)
        finally:
            dump.unlink(missing_ok=True)
    for r in out:
        r["kernel"] = kernel_name
        r["release"] = kernel.release
    return out


def host_runs(where: str, target: list[str], vmlinux: str, env: dict[str, str], established: int,
              runs: int, budget: float, workload: str) -> list[dict[str, Any]]:
    """drgn-ss on the host, reading the guest through ``target`` (``--qemu`` or ``-c``)."""
    drgn_ss = str(Path(sys.executable).parent / "drgn-ss")
    opts = WORKLOADS[workload]
    # The first run, with an empty facts cache, loads DWARF: timed apart as cold_s.
    progress(f"{where}: drgn-ss {opts}p ({established}), cold cache")
    cold = run_once([drgn_ss, *target, "-s", vmlinux, opts + "p", "--stats"], env)
    out = []
    for flags in (opts + "p", opts):
        tool = f"drgn-ss {flags}"
        progress(f"{where}: {tool} ({established})")
        result = measure([drgn_ss, *target, flags, "--stats"], runs, budget, env=env)
        if flags == opts + "p":
            result.update(_cold("cold", cold))
            # BTF from the dump's memory (6.0+; --qemu: the same), for the start-up table.
            if where == "dump" and workload == "tcp":
                result.update(cold_btf([drgn_ss, *target, "--btf", flags, "--stats"]))
        out.append({"where": where, "tool": tool, **result})
    if workload == "tcp":
        with tempfile.TemporaryDirectory(prefix="drgn-ss-bench-") as directory:
            for tool, args in fleet_tools(os.path.join(directory, "drgn_ss.prom")):
                progress(f"{where}: {tool} ({established})")
                out.append({"where": where, "tool": tool,
                            **measure([drgn_ss, *target, *args], runs, budget, env=env)})
    return out


# -- the whole benchmark ---------------------------------------------------------------

def progress(text: str) -> None:
    print(f"vmtests bench: {text}", file=sys.stderr, flush=True)


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}: {os.cpu_count()} x {cpu}, {mem:.0f} GB, Linux {platform.release()}"


def ratios(runs: list[dict[str, Any]], workload: str = "tcp") -> None:
    """
    Add each run's ratio to native ss with -p and without (``ss -tanp`` and ``ss -tan``
    for TCP, ``ss -xanp`` and ``ss -xan`` for unix) of the same size. Where a run or its
    baseline was stopped (:func:`measure`), the ratio is a bound: ``KEY_bound`` says which
    (``<``: at most, ``>``: at least).
    """
    native = {(r["sockets"], r["tool"]): r for r in runs if r["where"] == "native"}
    for r in runs:
        for tool, key in baselines(workload):
            base = native.get((r["sockets"], tool))
            r[key] = round(r["median_s"] / base["median_s"], 3) if base and base["median_s"] else None
            bound = "<" if base and base.get("stopped") else ""
            bound += ">" if r.get("stopped") else ""
            if r[key] is not None and len(bound) == 1:
                r[key + "_bound"] = bound
            elif bound:  # both stopped: nothing known
                r[key] = None


def fields(workload: str = "tcp") -> tuple[str, ...]:
    """A run's fields in the table, in its order: its ratios are the workload's."""
    (_, key_p), (_, key) = baselines(workload)
    return ("kernel", "sockets", "where", "tool", "median_s", key_p, key, "startup_s", "cold_s",
            "cold_btf_s", "us_per_socket", "us_per_file", "peak_rss_mb", "alloc_b_per_socket", "lines",
            "runs")


def table(runs: list[dict[str, Any]], workload: str = "tcp") -> str:
    """The runs as a table, a row each, with the workload's ratio columns."""
    (tool_p, _), (tool, _) = baselines(workload)
    head = ("kernel", "sockets", "where", "tool", "median s", "x " + tool_p.replace(" ", ""),
            "x " + tool.replace(" ", ""), "startup s", "cold s", "cold btf s", "us/socket", "us/file",
            "RSS MB", "B/socket", "lines", "runs")
    return _columns([head] + [tuple("-" if r.get(f) is None else r.get(f + "_bound", "") + str(r[f])
                                    for f in fields(workload)) for r in runs])


def _columns(rows: Sequence[Sequence[str]]) -> str:
    """Rows as text columns: the first four left-aligned, the figures right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(cell.ljust(w) if i < 4 else cell.rjust(w)
                             for i, (cell, w) in enumerate(zip(row, widths))).rstrip() + "\n"
                   for row in rows)


COLD_FIELDS = tuple(f"{prefix}_{key}" for prefix in ("cold", "cold_btf")
                    for key in ("types_s", "startup_s", "interpreter_s"))


def startup_table(runs: list[dict[str, Any]]) -> str:
    """
    drgn-ss's start-up to its first socket read with an empty facts cache, from DWARF
    and from BTF + kallsyms, side by side (the interpreter and imports apart: the same for both).
    """
    head = ("kernel", "sockets", "where", "tool", "DWARF s", "BTF s", "x shorter", "facts DWARF s",
            "facts BTF s", "interpreter s")
    rows: list[tuple[str, ...]] = [head]
    for r in runs:
        dwarf, btf = r.get("cold_startup_s"), r.get("cold_btf_startup_s")
        if dwarf is None or btf is None:
            continue
        cells = (r["kernel"], r["sockets"], r["where"], r["tool"], dwarf, btf,
                 round(dwarf / btf, 1) if btf else None, r.get("cold_types_s"), r.get("cold_btf_types_s"),
                 r.get("cold_btf_interpreter_s"))
        rows.append(tuple("-" if c is None else str(c) for c in cells))
    return _columns(rows) if len(rows) > 1 else ""


def as_installed() -> None:
    """
    drgn-ss as an install leaves it, so its start-up is a user's: bytecode written for every
    module (an editable install leaves it to the first import, which PYTHONDONTWRITEBYTECODE
    stops: each run then compiles the modules changed since, up to 0.25 s), and a warning
    where pip's editable-install finder is back (bootstrap.sh links helpers/ instead: ~40 ms).
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "helpers")], check=True)
    site = Path(sysconfig.get_paths()["purelib"])
    if any(site.glob("__editable___drgn_ss_*_finder.py")):
        progress(f"warning: pip's editable finder is in {site}: start-up includes it "
                 "(sh vmtests/bootstrap.sh links helpers/ instead)")


def run_bench(kernels: list[str], sizes: list[int], runs: int, budget: float, json_out: Path | None,
              accel: str, guest: bool, workload: str = "tcp") -> int:
    from vmtests.config import cache_dir

    if os.geteuid() != 0:
        raise SystemExit("vmtests bench: needs root (private network namespaces, QEMU dumps)")
    for tool in ("ss", "unshare", "ip", "nsenter", TIME):
        if not shutil.which(tool):
            raise SystemExit(f"vmtests bench: {tool} not found (apt-get install iproute2 util-linux time)")
    as_installed()
    started = time.time()
    results: list[dict[str, Any]] = []
    for size in sizes:
        for r in native_runs(size, runs, budget, cache_dir(), workload):
            results.append({"kernel": None, "sockets": size, **r})
        if guest:
            for k in kernels:
                for r in guest_runs(k, size, runs, budget, accel, workload):
                    results.append({**r, "sockets": size})
    ratios(results, workload)
    for r in results:
        r.setdefault("startup_s", None)
        r.setdefault("us_per_socket", None)
        r.setdefault("us_per_file", None)
        r.setdefault("alloc_b_per_socket", None)
        r.setdefault("cold_s", None)
        r.setdefault("cold_btf_s", None)
    doc = {
        "machine": machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m vmtests bench " + " ".join(sys.argv[2:]),
        "duration_s": round(time.time() - started),
        "workload": workload,
        "note": f"{workload} workload. native: this host, workload in a private netns; dump/qemu: "
                "drgn-ss on the host reading the guest (native speed); guest: inside the TCG guest "
                "(reference only). Ratios are to native ss of the same size, measured in this run.",
        "runs": [{**{f: r.get(f) for f in (*fields(workload), "release", "startup_s", "walk_s", "owners_s",
                                            "render_s", "files", *COLD_FIELDS)},
                  **{k: v for k, v in r.items() if k == "stopped" or k.endswith("_bound")}}
                 for r in results],
    }
    sys.stdout.write(f"# {doc['date']}, {doc['machine']}, {workload} workload\n" + table(results, workload)
                     + "\n" + startup_table(results))
    if json_out:
        json_out.write_text(json.dumps(doc, indent=1) + "\n")
        progress(f"wrote {json_out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) in (5, 6) and sys.argv[1] == "guest" and sys.argv[5:] in ([], ["tcp"], ["unix"]):
        sys.exit(guest_main(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), *sys.argv[5:]))
    print("usage: python -m vmtests bench ... (this module's own entry is for the guest)",
          file=sys.stderr)
    sys.exit(2)
