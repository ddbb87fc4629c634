"""
What a user installs, on a real crash dump: a wheel built from this tree, installed with pip
into a fresh venv and run from outside the tree, reads the dump as the checkout does.

The wheel is built once per source (kept under the cache's ``wheels/``, by a hash of what goes
into it) and installed afresh for each kernel. Runs on the crash mode only (a real kdump file,
as users have): the others read the same kernel through the checkout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest
from drgn_ss.kernel.facts_file import cache_dir

from tests.kernel.conftest import Target
from tests.kernel.test_ss import assert_partial_is_true, assert_same_lines

ROOT = Path(__file__).resolve().parent.parent.parent
#: What a wheel is made of (pyproject.toml and MANIFEST.in say what goes in).
SOURCES = ("pyproject.toml", "MANIFEST.in", "LICENSE", "README.md", "helpers", "docs/man")


def source_hash() -> str:
    digest = hashlib.sha256()
    for name in SOURCES:
        path = ROOT / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            if "__pycache__" in f.parts or f.suffix == ".so":
                continue
            digest.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:16]


def _wheel() -> Path:
    """The wheel of this source, built (from a copy of the tree) if it is not cached yet."""
    where = Path(cache_dir()) / "wheels" / source_hash()
    wheels = list(where.glob("drgn_ss-*.whl"))
    if wheels:
        return wheels[0]
    building = where.with_name(where.name + f".{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    tree = building / "src"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*_cache", "*.so"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps",
                    "-w", building, tree], check=True, capture_output=True, timeout=600)
    shutil.rmtree(tree)
    try:
        building.rename(where)
    except OSError:  # another run made it first
        shutil.rmtree(building, ignore_errors=True)
    return next(where.glob("drgn_ss-*.whl"))


@pytest.fixture(scope="module")
def installed(target: Target, workload: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed (drgn from PyPI, or pip's cache)."""
    _crash_dump(target, workload)  # skips elsewhere, before building anything
    prefix = tmp_path_factory.mktemp("installed") / "venv"
    venv.EnvBuilder(with_pip=False).create(prefix)
    subprocess.run([sys.executable, "-m", "pip", "--python", prefix / "bin" / "python", "install", "-q",
                    "--disable-pip-version-check", _wheel()], check=True, capture_output=True, timeout=600)
    return prefix


def _crash_dump(target: Target, workload: dict[str, Any]) -> str:
    if target.kind != "core" or not target.path or workload.get("dump_level") != 31:
        pytest.skip("runs on the crash mode's dump (a real kdump file)")
    return target.path


def _run(argv: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    # A user's environment: this checkout is neither the working directory nor on the path.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_installed_drgn_ss_reads_the_dump(target: Target, workload: dict[str, Any], installed: Path,
                                          tmp_path: Path) -> None:
    dump = _crash_dump(target, workload)
    version = _run([installed / "bin" / "drgn-ss", "--version"], tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("drgn-ss "), version
    p = _run([installed / "bin" / "drgn-ss", "-c", dump, "-s", str(target.vmlinux), "-H", "-tanp"], tmp_path)
    expected = workload["ss"]["-tanp"]
    if p.returncode == 3:  # makedumpfile 1.7.2 drops 6.10+'s slab pages at level 31 (docs/limitations.md)
        assert "Excluded page" in p.stderr, p.stderr
        assert_partial_is_true(p.stdout, expected, p.stderr)
    else:
        assert p.returncode == 0, p.stderr
        assert_same_lines(p.stdout, expected)
    assert p.stderr.startswith(f"drgn-ss: crash dump of Linux {workload['release']}, crashed "), p.stderr
    assert (installed / "share" / "man" / "man1" / "drgn-ss.1").is_file()
    assert (installed / "share" / "man" / "man1" / "drgn-nethogs.1").is_file()


def test_installed_nethogs_reads_the_dump(target: Target, workload: dict[str, Any], installed: Path,
                                          tmp_path: Path) -> None:
    dump = _crash_dump(target, workload)
    p = _run([installed / "bin" / "drgn-nethogs", "-c", dump, "-s", str(target.vmlinux), "--json"], tmp_path)
    assert p.returncode in (0, 3), p.stderr
    (sample,) = [json.loads(line) for line in p.stdout.splitlines()]
    assert sample["interval_s"] is None and sample["time"] is not None, sample
    if p.returncode == 3:  # pages makedumpfile dropped (see above): what it held may be among them
        assert "Excluded page" in p.stderr, p.stderr
        return
    mine = [row for row in sample["processes"] if row["pid"] == workload["pid"]]
    assert mine and mine[0]["tcp"] > 0, sample
