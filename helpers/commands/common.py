"""What every command shares: exit statuses, errors, output that survives a closed or
full stdout, the argument parser and ``--version``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NoReturn, TextIO

import drgn
from drgn_ss import __version__
from drgn_ss.kernel.native import native, native_build
from drgn_ss.kernel.strings import safe_line

__all__ = [
    "ArgumentParser", "EXIT_ERROR", "EXIT_PARTIAL", "EXIT_USAGE", "Failure", "OutputError",
    "PURE_PYTHON_SLOWER", "ShowVersion", "UsageError", "add_version", "anon_kb", "c_part_line", "end_process",
    "exit_status", "help_formatter", "leave_to_exit", "native_path", "not_run_by_drgn", "output_errors",
    "say", "write_output",
]

EXIT_ERROR = 1
EXIT_USAGE = 2
#: The listing was printed, but some of the kernel's tables could not be read.
EXIT_PARTIAL = 3


class UsageError(Exception):
    """Bad options: the message, a hint to --help, exit status 2."""


class Failure(Exception):
    """An error for the user: one line, no traceback, exit status 1."""


class OutputError(Failure):
    """The listing could not be written (a full disk, an I/O error): one line, exit status 1."""


@contextlib.contextmanager
def output_errors() -> Iterator[None]:
    """
    Writes to the output, whose errors become :class:`OutputError`; a reader that closed
    the pipe stays :class:`BrokenPipeError` (it ends the command quietly, as ss).
    """
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as e:
        raise OutputError(f"cannot write output: {e.strerror or e}") from None


def write_output(out: TextIO, chunks: Iterable[str]) -> None:
    """Write ``chunks`` to ``out``, then flush it, in :func:`output_errors`."""
    for chunk in chunks:  # made outside it: only the writes' errors are the output's
        with output_errors():
            out.write(chunk)
    with output_errors():
        out.flush()


def _drop_stdout() -> None:
    """
    Point stdout at /dev/null once writing to it failed: what is still in its buffer would
    fail again as Python exits, with a traceback of its own.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no stdout, or not a file (a test's)
        pass
    finally:
        os.close(devnull)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's, whose errors are :class:`UsageError`: one line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)

    def _print_message(self, message: str, file: Any = None) -> None:
        """--help and --version on stdout: a write error is :class:`OutputError` (argparse ignores it)."""
        if message and file is sys.stdout:
            write_output(sys.stdout, [message])
        else:
            super()._print_message(message, file)


#: How many times longer a listing takes in pure Python than with the C part. On a 6.1 ELF
#: dump of the bench workload (21,208 sockets), warm: the whole run of -tan / -tanp 2.3-2.6x,
#: the walk, owners and rendering alone 4.0-4.7x (docs/packaging.md, "Without a C compiler").
PURE_PYTHON_SLOWER = "2-5"


def c_part_line() -> str:
    """
    What --version says of the C part (:mod:`drgn_ss._fast`): built; or not built, why (as
    the install recorded it: :func:`~drgn_ss.kernel.native.native_build`), what that costs, and the fix.
    """
    build = native_build()
    if build.loaded:
        return "C part: built" + ("" if native() is not None else " (not used: DRGN_SS_PURE_PYTHON=1)")
    what = "built but does not load" if build.built else "not built"
    reason = f" ({safe_line(build.reason)})" if build.reason else ""  # a compiler's words
    return (f"C part: {what}{reason}: pure Python, {PURE_PYTHON_SLOWER}x slower; install gcc and "
            "python3-dev and reinstall")


class ShowVersion(argparse.Action):
    """
    -V/--version (as ss): ``PROG VERSION (drgn VERSION)``, then :func:`c_part_line`; worked
    out when asked for (argparse's "version" action takes its text when the parser is made).
    """

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        parser._print_message(f"{parser.prog} {__version__} (drgn {drgn.__version__})\n{c_part_line()}\n",
                              sys.stdout)
        parser.exit()


def add_version(parser: argparse.ArgumentParser) -> None:
    """-V/--version: :class:`ShowVersion`."""
    parser.add_argument("-V", "--version", action=ShowVersion,
                        help="print the version (and drgn's), whether the C part was built, and exit")


def help_formatter(prog: str) -> argparse.HelpFormatter:
    """
    argparse's formatter, told the terminal's width: argparse makes one per option and
    asks shutil each time (importing it: 0.1 s of a TCG guest's start-up).
    """
    columns = os.environ.get("COLUMNS", "")
    try:
        width = int(columns) if columns.isdigit() else os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (OSError, AttributeError, ValueError):
        width = 80
    return argparse.HelpFormatter(prog, width=max(width, 40) - 2)


def say(prog_name: str, message: str) -> None:
    """
    ``PROG: MESSAGE`` on stderr, as one line free of escape sequences (:func:`safe_line`)
    whatever the message quotes: drgn's errors, and through them a dump's own bytes.
    """
    print(f"{prog_name}: {safe_line(message)}", file=sys.stderr)


def exit_status(prog_name: str, main: Callable[[], int]) -> int:
    """
    Run ``main`` (a command's body) and return its exit status; what it raises for the user
    becomes one line on stderr (:func:`say`): :class:`UsageError` (and a hint to --help)
    exit 2, :class:`Failure` exit 1 (:class:`OutputError`: the output could not be written),
    and a reader that closed the pipe exit 1, quietly.
    """
    try:
        return main()
    except UsageError as e:
        first, *more = str(e).split("\n")  # a bad filter: the message, then the words pointed at
        say(prog_name, first)
        for line in more:
            print(safe_line(line), file=sys.stderr)
        print(f"Try '{prog_name} --help'.", file=sys.stderr)
        return EXIT_USAGE
    except OutputError as e:
        say(prog_name, str(e))
        _drop_stdout()
        return EXIT_ERROR
    except Failure as e:
        say(prog_name, str(e))
        return EXIT_ERROR
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_ERROR


#: What a command made that only the end of its process needs to free (:func:`leave_to_exit`);
#: None unless the command is the whole process (:func:`end_process`).
_LEFT_TO_EXIT: list[object] | None = None


def leave_to_exit(*objects: object) -> None:
    """
    Where the command is the whole process (:func:`end_process`), keep ``objects`` until it
    ends rather than free them one object at a time: a 100,000-socket listing's records take
    ~0.1 s to free, work an exit does not need. Elsewhere (the drgn plugin, the scripts, the
    tests) nothing is kept.
    """
    if _LEFT_TO_EXIT is not None:
        _LEFT_TO_EXIT.extend(objects)


def end_process(command: Callable[[], int]) -> NoReturn:
    """
    Run a console command, then end the process with its exit status as Python's exit would
    (stdout and stderr flushed, a closed pipe quiet, atexit's functions run), but without
    freeing what it made one object at a time (:func:`leave_to_exit`, the Program and the
    dump it maps): ``os._exit()``; the cyclic garbage collector stays off throughout.
    """
    global _LEFT_TO_EXIT
    _LEFT_TO_EXIT = []
    # Nor is the cyclic collector run again: a listing keeps it off while it makes its objects
    # (no cycles among them), and turned back on, its first pass would go over all of them
    # (60 ms at 100,000 unix sockets) for nothing to collect.
    gc.disable()
    status = command()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe, full, or closed: nothing more can be said on it
            status = status or EXIT_ERROR
    atexit._run_exitfuncs()
    os._exit(status)


def not_run_by_drgn(script: str) -> str:
    """The line a script prints when Python, not drgn, runs it (there is no ``prog``)."""
    return (f"{script}: a drgn script: run it with drgn (drgn scripts/{script} [OPTIONS] for the running "
            f"kernel, drgn -c VMCORE -s VMLINUX scripts/{script} [OPTIONS] for a dump)")


def anon_kb() -> int | None:
    """This process's anonymous memory now (RssAnon, KiB): what it allocated, without mapped files."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"RssAnon:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def native_path() -> bool:
    """
    Whether the hot loops ran in C (:mod:`drgn_ss._fast`, :func:`~drgn_ss.kernel.native.native`):
    False where it was not built or DRGN_SS_PURE_PYTHON=1 asked for the Python paths.
    """
    return native() is not None
