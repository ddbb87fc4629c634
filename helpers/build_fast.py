"""setuptools' build_ext for drgn_ss._fast that says when the C part is not built, and why.

``drgn_ss._fast`` (helpers/_fast_*.c) is an optional extension: where gcc or the Python headers
are missing, setuptools builds the package without it and says so in one warning, which pip
shows only with ``-v``. :class:`BuildExt` (``[tool.setuptools.cmdclass]`` in pyproject.toml)
adds a warning that names the reason and the fix, and records the outcome in the package as
``drgn_ss/_build.json`` (``{"native": true}`` or ``{"native": false, "reason": "..."}``),
which ``drgn-ss --version`` reads (:func:`drgn_ss.kernel.native.native_build`). An editable install
(``pip install -e``, the bootstrap's) records nothing: there, drgn-ss asks whether the module
imports. See docs/packaging.md, "Without a C compiler".
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from setuptools.command.build_ext import build_ext

__all__ = [
    "BuildExt", "EXTENSION", "Kept", "MAX_REASON", "RECORD", "compiler_command", "failed_command",
    "first_error", "stderr_kept", "why_not_built",
]

#: The extension whose outcome is recorded, and the file it is recorded in, beside it.
EXTENSION = "drgn_ss._fast"
RECORD = "_build.json"
#: How much of a reason is kept: one line of a compiler's error.
MAX_REASON = 200


class Kept:
    """What a block wrote to file descriptor 2 (:func:`stderr_kept`), once it is done."""

    text = ""


@contextmanager
def stderr_kept() -> Iterator[Kept]:
    """
    Send file descriptor 2 (the compiler's error output, and ours) to a temporary file as
    long as the block runs, then pass what it got on to the real stderr, and keep it.
    """
    kept = Kept()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield kept
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            data = tmp.read()
            if data:
                os.write(2, data)
            kept.text = data.decode(errors="replace")


def first_error(output: str) -> str:
    """The first line of a compiler's output that reports an error (gcc: ``FILE:L:C: fatal error: ...``)."""
    for line in output.splitlines():
        if re.search(r"\berror:", line):
            return line.strip()
    return ""


def failed_command(error: BaseException) -> str:
    """
    Which program failed and how, from setuptools' message (``Command '['/bin/false', ...]'
    returned non-zero exit status 1.``): ``/bin/false failed with exit status 1``.
    """
    text = str(error)
    program = re.search(r"[Cc]ommand '\[?'?([^',\]]+)", text)
    if program is None:
        return text or type(error).__name__
    status = re.search(r"exit (?:status|code) (-?\d+)", text)
    return f"{program[1]} failed" + (f" with exit status {status[1]}" if status else "")


def compiler_command(compiler: Any) -> str | None:
    """The command that compiles C (``gcc``, or $CC), where setuptools' compiler says it."""
    command = getattr(compiler, "compiler_so", None) or getattr(compiler, "compiler", None)
    return str(command[0]) if command else None


def why_not_built(compiler: Any, error: BaseException, output: str) -> str:
    """
    Why the extension did not build, in a few words for ``drgn-ss --version``: the C
    compiler not found, the Python headers not found, else the compiler's first error line,
    else which command failed.
    """
    command = compiler_command(compiler)
    if command is not None and shutil.which(command) is None:
        return f"C compiler {command} not found"
    include = sysconfig.get_paths().get("include", "")
    if not os.path.exists(os.path.join(include, "Python.h")):
        return f"Python headers not found (no Python.h in {include})"
    return (first_error(output) or failed_command(error))[:MAX_REASON]


class BuildExt(build_ext):
    """build_ext, saying in a warning and in ``drgn_ss/_build.json`` whether drgn_ss._fast was built."""

    #: What its messages are signed with (``warning: build_ext: ...``), as setuptools' own.
    command_name = "build_ext"

    def initialize_options(self) -> None:
        super().initialize_options()
        #: What :meth:`build_extension` found: {"native": bool, "reason": str}.
        self.outcome: dict[str, Any] | None = None

    def build_extension(self, ext: Any) -> None:
        if ext.name != EXTENSION:
            super().build_extension(ext)
            return
        error: BaseException | None = None
        with stderr_kept() as kept:
            try:
                super().build_extension(ext)
            except Exception as e:  # re-raised: setuptools warns, and goes on, for an optional one
                error = e
        if error is None:
            self.outcome = {"native": True}
            return
        reason = why_not_built(self.compiler, error, kept.text)
        self.outcome = {"native": False, "reason": reason}
        self.warn(f"the C part of drgn-ss ({EXTENSION}) was not built: {reason}. drgn-ss runs in pure "
                  "Python (same output, slower); install gcc and the Python headers (Debian: gcc "
                  "python3-dev), then reinstall (pip install --force-reinstall --no-cache-dir)")
        raise error

    def run(self) -> None:
        inplace = self.inplace or getattr(self, "editable_mode", False)
        super().run()
        if self.outcome is not None and not inplace:  # a checkout asks whether the module imports
            self._record()

    def _record_path(self) -> str:
        return os.path.join(os.path.dirname(self.get_ext_fullpath(EXTENSION)), RECORD)

    def _record(self) -> None:
        path = self._record_path()
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(self.outcome, f)

    def get_outputs(self) -> list[str]:
        outputs: list[str] = super().get_outputs()
        if self.outcome is not None and not self.inplace:
            outputs.append(self._record_path())
        return outputs

