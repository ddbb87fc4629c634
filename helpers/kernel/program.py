"""What the drgn ``Program`` says about its target: whether it is this machine's
live kernel, its VMCOREINFO, its debug info; and a cache of per-Program values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from drgn import FaultError, Program, ProgramFlags
from drgn_ss.kernel.images import elf_build_id

__all__ = [
    "DebugInfoLoader", "NoDebugInfo", "debug_file", "dwarf_is_the_builds", "is_local_live", "prog_cached",
    "set_debug_info_loader", "valid_build_id", "vmcoreinfo",
]

T = TypeVar("T")


def is_local_live(prog: Program) -> bool:
    """Whether ``prog`` is the kernel this process runs on (so /proc and /sys describe it)."""
    flags = prog.flags
    return bool(flags & ProgramFlags.IS_LIVE and flags & ProgramFlags.IS_LOCAL)


def prog_cached(prog: Program, key: str, make: Callable[[Program], T]) -> T:
    """``make(prog)``, computed once per Program and kept in ``prog.cache``."""
    try:
        value: T = prog.cache["drgn_ss." + key]
    except KeyError:
        value = prog.cache["drgn_ss." + key] = make(prog)
    return value

DebugInfoLoader = Callable[[], None]


def vmcoreinfo(prog: Program) -> dict[str, str]:
    """
    The kernel's VMCOREINFO note as a dict (``OSRELEASE``, ``BUILD-ID``, ``KERNELOFFSET``,
    ``CRASHTIME``...). drgn reads it from the dump or the running kernel; it needs no
    debug info. In a dump, it says what the dump says: nothing in it is checked. Decoded
    with errors="surrogateescape": a message quoting a value escapes it
    (:func:`drgn_ss.kernel.strings.escape_name`), one "?" per byte that is not ASCII.
    """
    def read(p: Program) -> dict[str, str]:
        try:
            text = p["VMCOREINFO"].string_().decode(errors="surrogateescape")
        except (LookupError, FaultError):
            return {}
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    return prog_cached(prog, "vmcoreinfo", read)


def valid_build_id(text: str) -> str:
    """
    A build ID as VMCOREINFO gives it, if it is one (8 to 64 bytes in hex: GNU's are 20),
    in lower case; else "" (a damaged or forged note, which names no cache file).
    """
    text = text.strip().lower()
    if 16 <= len(text) <= 128 and len(text) % 2 == 0 and not text.strip("0123456789abcdef"):
        return text
    return ""


class NoDebugInfo(LookupError):
    """The kernel's DWARF could not be found (a debug info loader raises it, saying so)."""


def set_debug_info_loader(prog: Program, loader: DebugInfoLoader) -> None:
    """
    Say how to load ``prog``'s debug info when a fact is not in the cache (the loader
    raises :class:`NoDebugInfo` if there is none). Without a loader, debug info is
    assumed to be loaded already, if there is any (scripts run under ``drgn``).
    """
    prog.cache["drgn_ss.loader"] = loader


def debug_file(prog: Program) -> str | None:
    """The file drgn loaded the kernel's DWARF from (its vmlinux), if it loaded any."""
    try:
        path = prog.main_module().debug_file_path
    except (LookupError, AttributeError):  # no main module yet; drgn before modules
        return None
    return str(path) if path else None


def dwarf_is_the_builds(prog: Program, build_id: str, kaslr: int) -> bool:
    """
    Whether the DWARF loaded into ``prog`` is that of the build VMCOREINFO names: its file
    has that build ID (drgn refuses a vmlinux of another build; checked again here, in
    the file itself) and drgn relocates its symbols by the KASLR offset drgn-ss uses.
    """
    path = debug_file(prog)
    if not build_id or path is None:
        return False
    module = prog.main_module()
    loaded = module.build_id
    return (loaded is not None and loaded.hex() == build_id and (module.debug_file_bias or 0) == kaslr
            and elf_build_id(path) == build_id)
