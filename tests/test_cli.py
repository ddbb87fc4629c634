"""Bad input to `python -m vmtests`: one clear line, a non-zero exit, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

from vmtests.config import REPO


def vmtests(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vmtests", *args], cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=60)


def test_unknown_kernel_lists_the_known_ones() -> None:
    p = vmtests("run", "--kernel", "4.19", "--", "true")
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    assert "unknown kernel '4.19'; known kernels: 5.10, 6.1, 6.12, 7.2" in p.stderr


def test_missing_command() -> None:
    p = vmtests("run", "--kernel", "6.1")
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "give a command after --" in p.stderr


def test_missing_qemu_names_the_package() -> None:
    env = {**os.environ, "PATH": "/nonexistent"}
    p = vmtests("run", "--kernel", "6.1", "--", "true", env=env)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "qemu-system-x86_64 not found: apt-get install" in p.stderr
    assert "qemu-system-x86" in p.stderr


def test_unknown_option_is_a_usage_error() -> None:
    p = vmtests("run", "--no-such-option")
    assert p.returncode == 2 and "usage:" in p.stderr


def test_help_lists_the_commands() -> None:
    p = vmtests("--help")
    assert p.returncode == 0
    for cmd in ("run", "dump", "shell", "kernels", "test", "demo"):
        assert cmd in p.stdout
