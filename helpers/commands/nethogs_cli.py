"""The ``drgn-nethogs`` command: :mod:`drgn_ss.commands.nethogs` on a kernel it opens itself.

``drgn scripts/nethogs.py`` gets its program from drgn; ``drgn-nethogs`` opens it as
``drgn-ss`` does (:func:`drgn_ss.commands.program.open_program`): ``-c VMCORE``, ``-s VMLINUX``,
``--qemu SOCKET`` or, by default, the live kernel. The rest of the command line is nethogs'.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from drgn import Program
from drgn_ss.commands.common import ArgumentParser, exit_status, say
from drgn_ss.commands.nethogs import build_parser as nethogs_parser
from drgn_ss.commands.nethogs import run
from drgn_ss.commands.program import add_program_options, open_program
from drgn_ss.kernel.facts import use_btf

__all__ = ["PROG", "build_parser", "command", "split_argv"]

PROG = "drgn-nethogs"


def build_parser(prog_name: str = PROG) -> argparse.ArgumentParser:
    """nethogs' options and the ones that say which kernel to read (for --help and the man page)."""
    p = nethogs_parser(prog_name)
    add_program_options(p)
    return p


def split_argv(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """
    The program options of a command line :func:`build_parser` accepted, and the rest
    (nethogs' own, for :func:`drgn_ss.commands.nethogs.run`). An abbreviation the full parser took
    (--sym) is unambiguous there, so it is the same option here; one of nethogs' (--int)
    is no prefix of a program option, or the full parser would have refused it.
    """
    p = ArgumentParser(prog=PROG, add_help=False)
    add_program_options(p)
    return p.parse_known_args(list(argv))


def command(argv: Sequence[str] | None = None) -> int:
    """The ``drgn-nethogs`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # As drgn-ss (drgn_ss.commands.ss.command): drgn's own warnings off, and no scan for drgn plugins.
    logging.getLogger("drgn").setLevel(logging.CRITICAL + 1)
    if "DRGN_PLUGINS" not in os.environ and "DRGN_DISABLE_PLUGINS" not in os.environ:
        os.environ["DRGN_DISABLE_PLUGINS"] = "*"
    opened: list[tuple[Program, list[str]]] = []

    def main() -> int:
        build_parser().parse_args(argv)  # --help, and bad options before the kernel is opened
        where, rest = split_argv(argv)
        prog = open_program(where)
        use_btf(prog, False, lambda message: say(PROG, message))
        opened.append((prog, rest))
        return 0

    status = exit_status(PROG, main)
    if status or not opened:
        return status
    prog, rest = opened[0]
    return run(prog, rest, prog_name=PROG)


if __name__ == "__main__":
    sys.exit(command())
