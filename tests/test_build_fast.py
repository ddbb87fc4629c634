"""helpers/build_fast.py, the build_ext that says why drgn_ss._fast was not built: its reasons, from
setuptools' errors and the compiler's output (tests/test_packaging.py builds with it)."""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path
from types import SimpleNamespace

import pytest
from drgn_ss import build_fast
from drgn_ss.build_fast import failed_command, first_error, stderr_kept, why_not_built

GCC = SimpleNamespace(compiler_so=[sys.executable, "-fPIC"])  # a command that is there


@pytest.mark.parametrize("message, said", [
    # setuptools >= 72 (subprocess), and distutils before it
    ("Command '['/bin/false', '-O2', '-c', 'helpers/_fast_module.c']' returned non-zero exit status 1.",
     "/bin/false failed with exit status 1"),
    ("command '/bin/false' failed with exit code 1", "/bin/false failed with exit status 1"),
    ("command 'x86_64-linux-gnu-gcc' failed: No such file or directory", "x86_64-linux-gnu-gcc failed"),
    ("something else", "something else"),
    ("", "CompileError"),
])
def test_failed_command(message: str, said: str) -> None:
    class CompileError(Exception):
        pass

    assert failed_command(CompileError(message)) == said


def test_first_error_is_the_compilers() -> None:
    output = ("cc1: warning: command-line option '-Werror=x' is valid for C++\n"
              "In file included from helpers/_fast_module.c:18:\n"
              "helpers/_fast.h:14:10: fatal error: Python.h: No such file or directory\n"
              "   14 | #include <Python.h>\n"
              "compilation terminated.\n")
    assert first_error(output) == "helpers/_fast.h:14:10: fatal error: Python.h: No such file or directory"
    assert first_error("all fine\n") == ""


def test_why_not_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    error = Exception("Command '['gcc', '-c']' returned non-zero exit status 1.")
    assert why_not_built(SimpleNamespace(compiler_so=["/nonexistent/gcc"]), error, "") == (
        "C compiler /nonexistent/gcc not found")
    assert why_not_built(GCC, error, "x.c:1:1: error: bad\n") == "x.c:1:1: error: bad"
    assert why_not_built(GCC, error, "") == "gcc failed with exit status 1"
    assert len(why_not_built(GCC, error, "error: " + "x" * 1000)) == build_fast.MAX_REASON
    paths = sysconfig.get_paths()
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {**paths, "include": str(tmp_path)})
    assert why_not_built(GCC, error, "x.c:1:1: fatal error: Python.h: No such file") == (
        f"Python headers not found (no Python.h in {tmp_path})")


def test_stderr_kept_passes_it_on(capfd: pytest.CaptureFixture[str]) -> None:
    """What the compiler writes on file descriptor 2 reaches stderr as before, and is kept."""
    with stderr_kept() as kept:
        os.write(2, b"x.c:1:1: error: bad\n")
    assert kept.text == "x.c:1:1: error: bad\n"
    assert capfd.readouterr().err == kept.text
