"""The hot loops in C (:mod:`drgn_ss._fast`): whether they load, and how they were built.
"""

from __future__ import annotations

import json
import os
from types import ModuleType
from typing import NamedTuple

try:
    from drgn_ss import _fast
except ImportError as e:  # not built (no compiler at install time): the Python paths do it all
    _fast = None  # type: ignore[assignment]
    #: Why a module that is there does not load (one of another Python, say).
    _fast_error = "" if isinstance(e, ModuleNotFoundError) else str(e)
else:
    _fast_error = ""

__all__ = ["BUILD_RECORD", "NativeBuild", "native", "native_build"]


#: What the install recorded of the C part (helpers/build_fast.py, at build time).
BUILD_RECORD = "_build.json"


def native() -> ModuleType | None:
    """
    :mod:`drgn_ss._fast`, the hot loops in C, if it is built and DRGN_SS_PURE_PYTHON is
    not set to 1; else None, and callers take their Python path (the reference).
    """
    return _fast if os.environ.get("DRGN_SS_PURE_PYTHON", "") in ("", "0") else None


class NativeBuild(NamedTuple):
    """Whether :mod:`drgn_ss._fast` was built, and whether it loads."""

    #: Whether the install built it (where it recorded nothing, a checkout: whether it loads).
    built: bool
    #: Whether it imports (then it runs, unless DRGN_SS_PURE_PYTHON=1: :func:`native`).
    loaded: bool
    #: Why it was not built (the install's record: what was missing, or the compiler's first
    #: error), or why it does not load; "" where nothing says.
    reason: str


def native_build(directory: str | None = None) -> NativeBuild:
    """
    What became of the C part: the record the install left beside the package's modules
    (``drgn_ss/_build.json``: ``{"native": false, "reason": "..."}``), and whether
    :mod:`drgn_ss._fast` imports. A checkout (an editable install) has no record.

    :param directory: where the record is; by default, this package's directory
    """
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # drgn_ss, above kernel/
    path = os.path.join(directory or package, BUILD_RECORD)
    try:
        with open(path, "rb") as f:
            record = json.loads(f.read(1 << 16))
    except (OSError, ValueError):
        record = None
    loaded = _fast is not None
    if not isinstance(record, dict) or not isinstance(record.get("native"), bool):
        return NativeBuild(loaded, loaded, "" if loaded else _fast_error)
    built = record["native"]
    reason = record.get("reason") if not built else _fast_error
    return NativeBuild(built, loaded, " ".join(str(reason or "").split()))
