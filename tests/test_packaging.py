"""
The package as a user installs it: a wheel built from this tree, and ``pip install`` of the
tree itself, each into a fresh venv, give the commands, the man pages and the licence; a
wheel built with no working compiler (CC=/bin/false) says, in pip -v and in drgn-ss
--version, that the C part was not built and why.

Needs a C compiler (for drgn_ss._fast, checked only where cc is) and PyPI (the build's
requirements and drgn): ~1 minute. ``-m "not packaging"`` leaves it out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent
# What a checkout has that a build must not see or write into (the build writes build/ and
# drgn_ss.egg-info where it runs: in a copy, not in the checkout).
IGNORED = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                 ".mypy_cache", ".ruff_cache", ".pytest_cache", "*.so")


def _run(*argv: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"{argv}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def _fresh_venv(where: Path) -> Path:
    # Without pip of its own (ensurepip: 10 s on a loaded machine): this one's installs into it.
    venv.EnvBuilder(with_pip=False).create(where)
    return where


def _pip_install(prefix: Path, what: str | Path) -> None:
    _run(sys.executable, "-m", "pip", "--python", prefix / "bin" / "python", "install", "-q",
         "--disable-pip-version-check", what, cwd=prefix)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("src") / "drgn-ss"
    shutil.copytree(ROOT, tree, ignore=IGNORED)
    return tree


def _wheel(source: Path, dist: Path, *options: str, env: dict[str, str] | None = None
           ) -> tuple[Path, str]:
    """The wheel ``pip wheel`` builds from the tree, and what pip printed."""
    built = _run(sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps",
                 *options, "-w", dist, source, env=env)
    wheels = list(dist.glob("drgn_ss-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0], built.stdout + built.stderr


@pytest.fixture(scope="module")
def from_wheel(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the wheel ``pip wheel`` builds from the tree installed (with drgn, from PyPI)."""
    wheel, _ = _wheel(source, tmp_path_factory.mktemp("dist"), "-q")
    prefix = _fresh_venv(tmp_path_factory.mktemp("wheel") / "venv")
    _pip_install(prefix, wheel)
    return prefix


@pytest.fixture(scope="module")
def from_tree(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with ``pip install DIR`` (not editable) of the tree."""
    prefix = _fresh_venv(tmp_path_factory.mktemp("tree") / "venv")
    _pip_install(prefix, source)
    return prefix


@pytest.fixture(params=["wheel", "tree"])
def prefix(request: pytest.FixtureRequest) -> Path:
    return Path(request.getfixturevalue("from_" + request.param))


def _site_packages(prefix: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))


def test_commands(prefix: Path, tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "100"}
    # Run from elsewhere: the installed package answers, not this checkout's helpers/.
    out = _run(prefix / "bin" / "drgn-ss", "--help", cwd=tmp_path, env=env).stdout
    assert out.startswith("usage: drgn-ss ") and "-c VMCORE" in out and "--qemu SOCKET" in out
    version = _run(prefix / "bin" / "drgn-ss", "--version", cwd=tmp_path).stdout.splitlines()
    assert version[0].startswith("drgn-ss 0.1.0 (drgn ") and len(version) == 2, version
    if shutil.which("cc"):  # built, and the install says so (drgn_ss/_build.json)
        assert version[1] == "C part: built", version
        assert (_site_packages(prefix) / "drgn_ss" / "_build.json").read_text() == '{"native": true}'
    out = _run(prefix / "bin" / "drgn-nethogs", "--help", cwd=tmp_path, env=env).stdout
    assert out.startswith("usage: drgn-nethogs ")
    for option in ("-c VMCORE", "-s VMLINUX", "--qemu SOCKET", "--interval S", "--count N", "--json"):
        assert option in out
    where = _run(prefix / "bin" / "python", "-c", "import drgn_ss; print(drgn_ss.__file__)",
                 cwd=tmp_path).stdout.strip()
    assert Path(where).resolve().is_relative_to(prefix.resolve()), where
    if shutil.which("cc"):
        _run(prefix / "bin" / "python", "-c", "import drgn_ss._fast", cwd=tmp_path)
    # The module, not its C sources.
    assert not list((_site_packages(prefix) / "drgn_ss").glob("*.[ch]"))


def test_man_pages(prefix: Path) -> None:
    man1 = prefix / "share" / "man" / "man1"
    for command, options in (("drgn-ss", ("\\-\\-core", "\\-\\-netns", "FILTER")),
                             ("drgn-nethogs", ("\\-\\-core", "\\-\\-interval", "\\-\\-by"))):
        page = (man1 / f"{command}.1").read_text()
        assert page.startswith(".TH " + command.upper().replace("-", "\\-") + ' "1"'), page[:80]
        for option in options:
            assert option in page, (command, option)
        assert "SEE ALSO" in page  # the include file (man/*.inc) made it in
    if shutil.which("man"):
        found = _run("man", "-w", "drgn-ss", env={**os.environ, "MANPATH": str(prefix / "share" / "man")})
        assert Path(found.stdout.strip()) == man1 / "drgn-ss.1"


def test_licence_and_metadata(prefix: Path) -> None:
    (info,) = _site_packages(prefix).glob("drgn_ss-*.dist-info")
    licence = (info / "licenses" / "LICENSE").read_text()
    assert "GNU LESSER GENERAL PUBLIC LICENSE" in licence and "Version 2.1, February 1999" in licence
    metadata = (info / "METADATA").read_text()
    assert "License-Expression: LGPL-2.1-or-later" in metadata
    assert "Classifier: Operating System :: POSIX :: Linux" in metadata
    assert "Requires-Dist: drgn" in metadata
    entry_points = (info / "entry_points.txt").read_text()
    assert "drgn-nethogs = drgn_ss.commands.nethogs_cli:command" in entry_points


def test_a_build_without_a_compiler_says_so(tmp_path: Path) -> None:
    """
    CC=/bin/false: the wheel is built without drgn_ss._fast, pip -v shows a warning that says
    why, and the installed drgn-ss --version says the C part was not built, why, and the fix.
    A tree of its own: pip builds in the tree, and the other builds' build/ holds their _fast.
    """
    source = tmp_path / "drgn-ss"
    shutil.copytree(ROOT, source, ignore=IGNORED)
    wheel, printed = _wheel(source, tmp_path / "dist", "-v", env={**os.environ, "CC": "/bin/false"})
    assert ("the C part of drgn-ss (drgn_ss._fast) was not built: /bin/false failed with exit status 1. "
            "drgn-ss runs in pure Python") in printed, printed[-3000:]
    prefix = _fresh_venv(tmp_path / "venv")
    _pip_install(prefix, wheel)
    assert not list((_site_packages(prefix) / "drgn_ss").glob("_fast*.so"))
    version = _run(prefix / "bin" / "drgn-ss", "--version", cwd=tmp_path).stdout.splitlines()
    assert version[1] == ("C part: not built (/bin/false failed with exit status 1): pure Python, 2-5x "
                          "slower; install gcc and python3-dev and reinstall"), version
