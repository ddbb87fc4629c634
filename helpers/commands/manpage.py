"""The parsers the man pages are written from (argparse-manpage, at build time: pyproject.toml).

``ss_parser`` and ``nethogs_parser`` return the parsers of ``drgn-ss`` and ``drgn-nethogs``
themselves, so the pages say what ``--help`` says. At build time this file is loaded by
path, before drgn_ss is installed: it then makes helpers/, its directory's parent, the
package drgn_ss.
Installed, ``argparse-manpage --module drgn_ss.commands.manpage --function ss_parser`` works too.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

__all__ = ["nethogs_parser", "ss_parser"]


def _package() -> None:
    """Make helpers/ (this file's directory's parent) importable as drgn_ss, unless it is."""
    if __name__ == "drgn_ss.commands.manpage" or "drgn_ss" in sys.modules:
        return
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        "drgn_ss", os.path.join(here, "__init__.py"), submodule_search_locations=[here])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["drgn_ss"] = module
    spec.loader.exec_module(module)


def _fixed_width() -> None:
    """
    The same page on every machine, unwrapped (man fills it): argparse wraps help to $COLUMNS.
    A wrapped line that began with a quote would be a troff request (argparse-manpage does
    not escape it): the epilog has one.
    """
    os.environ["COLUMNS"] = "100000"


def ss_parser() -> argparse.ArgumentParser:
    """``drgn-ss``'s own parser, as ``drgn-ss --help`` prints it."""
    _package()
    _fixed_width()
    from drgn_ss.commands.ss_parser import build_parser

    return build_parser("drgn-ss", True)


def nethogs_parser() -> argparse.ArgumentParser:
    """``drgn-nethogs``' own parser, as ``drgn-nethogs --help`` prints it."""
    _package()
    _fixed_width()
    from drgn_ss.commands.nethogs_cli import build_parser

    return build_parser("drgn-nethogs")
