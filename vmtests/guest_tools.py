"""Debian's NFS server, NFS client tools, crun and the monitoring agents (promtool, node_exporter,
zabbix_agentd) for the guest: downloaded and unpacked, never installed.

The guest runs the host's own binaries over virtiofs, and the host lacks some that
tests need (``rpc.nfsd``, ``exportfs``, ``rpc.mountd``, ``mount.nfs``, ``crun``).
:func:`ensure_guest_tools` fetches their Debian packages (from bookworm, with a
private apt state as :mod:`vmtests.apt` keeps for kernels), with the library
packages the host lacks, and unpacks them with ``dpkg-deb -x`` under
``cache_dir()/guest-tools/root``. The guest sees that directory at the same path
and runs the tools with :func:`guest_tools_env`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from vmtests import VMTestError
from vmtests.apt import AptState, compare_versions, parse_records
from vmtests.config import DEBIAN_KEYRING, DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR, cache_dir
from vmtests.kernels import download

__all__ = [
    "GUEST_TOOLS",
    "TOOLS_SUITE",
    "ensure_guest_tools",
    "guest_tools_env",
    "missing_libraries",
    "parse_depends",
    "tools_dir",
]

#: The Debian suite the tools come from (the host's, Debian 12).
TOOLS_SUITE = "bookworm"
#: The packages wanted; library packages the host lacks are added.
GUEST_TOOLS = ("nfs-kernel-server", "nfs-common", "crun",
               # the agents tests/kernel/test_fleet.py runs: promtool, node_exporter, zabbix_agentd
               "prometheus", "prometheus-node-exporter", "zabbix-agent")
#: Bump when the layout under :func:`tools_dir` changes: the next call redoes everything.
_FORMAT = 1
_BIN_DIRS = ("usr/sbin", "sbin", "usr/bin", "bin")
_LIB_DIRS = ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib", "lib")

#: One alternative of a Depends field: name, then the version relation and version if any.
Alternative = tuple[str, "str | None", "str | None"]

_DEP_RE = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?\s*"
    r"(?:\(\s*(?P<op><<|<=|=|>=|>>)\s*(?P<ver>[^)\s]+)\s*\))?"
)


def tools_dir() -> Path:
    """Where the packages, the apt state, the unpacked tree and the stamp live."""
    return cache_dir() / "guest-tools"


class _ToolsApt(AptState):
    """The private apt state, indexing only the tools' suite."""

    def sources_text(self) -> str:
        suites = ((DEBIAN_MIRROR, TOOLS_SUITE), (DEBIAN_SECURITY_MIRROR, f"{TOOLS_SUITE}-security"))
        return "".join(
            f"deb [arch=amd64 signed-by={DEBIAN_KEYRING}] {mirror} {suite} main\n" for mirror, suite in suites
        )


def parse_depends(field: str) -> list[list[Alternative]]:
    """Parse a Depends field into groups of alternatives (``a | b``)."""
    groups = []
    for part in field.split(","):
        alts: list[Alternative] = []
        for alt in part.split("|"):
            m = _DEP_RE.match(alt.strip())
            if m:
                alts.append((m["name"], m["op"], m["ver"]))
        if alts:
            groups.append(alts)
    return groups


def _satisfies(have: str, op: str | None, want: str | None) -> bool:
    if op is None or want is None:
        return True
    c = compare_versions(have, want)
    return {"<<": c < 0, "<=": c <= 0, "=": c == 0, ">=": c >= 0, ">>": c > 0}[op]


def _host_packages() -> dict[str, str]:
    """The host's installed packages and their versions (dpkg-query)."""
    try:
        proc = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n"],
            capture_output=True, text=True, check=True,
        )
    except (OSError, subprocess.CalledProcessError) as e:
        raise VMTestError(f"guest tools: cannot list the host's packages with dpkg-query: {e}") from e
    out = {}
    for line in proc.stdout.splitlines():
        name, version, status = (line.split("\t") + ["", ""])[:3]
        if status.startswith("ii"):
            out[name] = version
    return out


def _candidate(apt: AptState, name: str) -> dict[str, str]:
    recs = parse_records(apt.run(["show", "--no-all-versions", name], check=False))
    for rec in recs:
        if rec.get("Package") == name and "Version" in rec:
            return rec
    raise VMTestError(f"guest tools: no package {name} in Debian {TOOLS_SUITE}")


def _resolve(apt: AptState, host: dict[str, str]) -> dict[str, str]:
    """The tools and the library packages they need that the host lacks: name -> version."""
    wanted: dict[str, str] = {}
    queue = list(GUEST_TOOLS)
    while queue:
        name = queue.pop()
        if name in wanted:
            continue
        rec = _candidate(apt, name)
        wanted[name] = rec["Version"]
        deps = ", ".join(filter(None, (rec.get("Pre-Depends"), rec.get("Depends"))))
        for group in parse_depends(deps):
            if any(n in host and _satisfies(host[n], op, v) for n, op, v in group):
                continue
            libs = [n for n, _, _ in group if n.startswith("lib")]
            if libs:
                queue.append(libs[0])
    return wanted


def _fetch(apt: AptState, name: str, version: str, dest: Path) -> Path:
    pkg = apt.locate(name, version)
    path = dest / pkg.filename
    # download() renames a file into place only once its SHA-256 matched.
    return path if path.exists() else download(pkg, dest)


def _unpack(debs: list[Path], root: Path) -> None:
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for deb in debs:
        proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise VMTestError(f"guest tools: dpkg-deb -x {deb.name} failed: {proc.stderr.strip()}")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)


def _elf_files(root: Path) -> Iterator[Path]:
    for d in _BIN_DIRS:
        base = root / d
        if not base.is_dir() or base.is_symlink():
            continue
        for p in sorted(base.iterdir()):
            if p.is_file() and not p.is_symlink():
                with open(p, "rb") as f:
                    if f.read(4) == b"\x7fELF":
                        yield p


def missing_libraries(root: Path) -> list[str]:
    """``BINARY: LIBRARY`` for each shared library a binary under ``root`` cannot find (ldd)."""
    env = {**os.environ, **guest_tools_env(root)}
    problems = []
    for exe in _elf_files(root):
        try:
            proc = subprocess.run(["ldd", str(exe)], capture_output=True, text=True, env=env)
        except OSError as e:
            raise VMTestError(f"guest tools: cannot run ldd: {e}") from e
        for line in (proc.stdout + proc.stderr).splitlines():
            if "not found" in line:
                problems.append(f"{exe.name}: {line.strip()}")
    return problems


def guest_tools_env(root: Path, path: str | None = None) -> dict[str, str]:
    """PATH and LD_LIBRARY_PATH to run the unpacked tools (PATH defaults to this process's)."""
    bins = [str(root / d) for d in ("usr/sbin", "sbin", "usr/bin")]
    base = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin") if path is None else path
    libs = [str(root / d) for d in _LIB_DIRS]
    old = os.environ.get("LD_LIBRARY_PATH")
    return {
        "PATH": ":".join(bins + ([base] if base else [])),
        "LD_LIBRARY_PATH": ":".join(libs + ([old] if old else [])),
    }


def _stamp_ok(d: Path) -> bool:
    try:
        stamp = json.loads((d / "stamp.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(stamp, dict) and stamp.get("format") == _FORMAT
        and stamp.get("suite") == TOOLS_SUITE and stamp.get("tools") == list(GUEST_TOOLS)
        and (d / "root").is_dir()
    )


@contextlib.contextmanager
def _locked(d: Path) -> Iterator[None]:
    with open(d / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def ensure_guest_tools() -> Path:
    """Download and unpack the tools once; return the root to give :func:`guest_tools_env`."""
    d = tools_dir()
    root = d / "root"
    if _stamp_ok(d):
        return root
    d.mkdir(parents=True, exist_ok=True)
    with _locked(d):
        if _stamp_ok(d):
            return root
        (d / "stamp.json").unlink(missing_ok=True)
        apt = _ToolsApt(d / "apt")
        apt.update()
        versions = _resolve(apt, _host_packages())
        debs = [_fetch(apt, name, v, d / "debs") for name, v in sorted(versions.items())]
        _unpack(debs, root)
        problems = missing_libraries(root)
        if problems:
            raise VMTestError(f"guest tools: libraries missing on the host: {'; '.join(problems)}")
        stamp = {"format": _FORMAT, "suite": TOOLS_SUITE, "tools": list(GUEST_TOOLS), "packages": versions}
        tmp = d / "stamp.json.tmp"
        tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, d / "stamp.json")
    return root
