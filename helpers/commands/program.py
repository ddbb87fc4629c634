"""Opening a program for a command: the live kernel, a crash dump (``-c``) or a QEMU
guest (``--qemu``), with a vmlinux (``-s``) or BTF, and the checks on each.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from drgn import (
    Architecture,
    MissingDebugInfoError,
    Program,
    ProgramFlags,
    host_platform,
)
from drgn_ss.commands.common import Failure, UsageError
from drgn_ss.kernel.damage import is_damage
from drgn_ss.kernel.facts import kernel_facts
from drgn_ss.kernel.images import elf_build_id
from drgn_ss.kernel.program import NoDebugInfo, is_local_live, set_debug_info_loader, vmcoreinfo
from drgn_ss.kernel.strings import escape_name
from drgn_ss.kernel.target import set_qemu, use_core_file, use_kcore

__all__ = [
    "SS_SHORT_OPTIONS", "add_program_options", "check_kernel", "check_symbols", "elf_problem",
    "kernels_vmlinux", "looks_like_ss_flags", "no_debug_info_message", "open_core_dump", "open_program",
]


def add_program_options(p: argparse.ArgumentParser) -> None:
    """The options that say which kernel to read (:func:`open_program`): drgn-ss's, drgn-nethogs'."""
    kernel = p.add_mutually_exclusive_group()
    kernel.add_argument("-c", "--core", metavar="VMCORE", help="read a kernel crash dump")
    p.add_argument("-s", "--symbols", metavar="VMLINUX", action="append",
                   help="debug info (the kernel's vmlinux with DWARF); repeatable. Its build ID is "
                   "checked against the kernel's at once; its DWARF is loaded only when needed (a fact "
                   "the facts cache lacks, a crash summary). Not ss's -s: its summary is --summary here")
    kernel.add_argument("--qemu", metavar="SOCKET", help="read a QEMU guest over this QMP socket")


def check_kernel(prog: Program) -> None:
    """
    Refuse, as :class:`Failure`, a program that is not a Linux kernel (drgn -p PID), or a
    kernel of another architecture than x86-64, the one drgn-ss reads (a dump whose ELF
    header says ARM or AArch64: drgn's reads of it fail, with BadDataError among others).
    """
    if not prog.flags & ProgramFlags.IS_LINUX_KERNEL:
        raise Failure("this program is not a Linux kernel (give a vmcore, --qemu, or the live kernel)")
    arch = prog.platform.arch if prog.platform is not None else None
    if arch != Architecture.X86_64:
        name = arch.name if arch is not None else "unknown"
        raise Failure(f"this kernel's architecture is {name}: drgn-ss reads x86-64 kernels only")


def no_debug_info_message(prog: Program, error: LookupError) -> str:
    """The one line for a fact that is not in the cache, with no debug info to work it out."""
    reason = str(error)
    if not reason.startswith("no debug info"):
        reason = f"no debug info for the kernel ({reason})"
    release = escape_name(kernel_facts(prog).release) or "RELEASE"
    return f"{reason}: install linux-image-{release}-dbg for its release, or pass -s VMLINUX"


def open_core_dump(path: str) -> Program:
    """
    A Program for a kernel core dump. QEMU's kdump-compressed dumps leave utsname.sysname
    empty, so libkdumpfile cannot tell their architecture: give the host's, as
    ``drgn --architecture x86_64`` would.
    """
    prog = Program()
    try:
        prog.set_core_dump(path)
    except Exception as e:  # libkdumpfile errors surface as plain Exception
        if "KDUMP_ATTR_ARCH_NAME" not in str(e):
            raise
        prog = Program(host_platform)
        prog.set_core_dump(path)
    return prog


def elf_problem(path: str) -> str | None:
    """
    Why ``path`` cannot be a vmlinux (no such file, a directory, unreadable, not ELF), told
    cheaply from its first bytes; None if it may be one (drgn checks the rest).
    """
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        return "no such file"
    except IsADirectoryError:
        return "is a directory"
    except PermissionError:
        return "permission denied"
    except OSError as e:
        return e.strerror or str(e)
    return None if magic == b"\x7fELF" else "not an ELF file"


def looks_like_ss_flags(path: str) -> bool:
    """Whether a ``-s`` argument is ss's one-letter options (``-st``: ss's summary, then TCP)."""
    return bool(path) and set(path) <= SS_SHORT_OPTIONS


def check_symbols(paths: Sequence[str]) -> None:
    """
    Refuse, before the kernel is opened, a ``-s`` path that cannot be a vmlinux, saying why
    (drgn would say only that it does not match the kernel); ss's ``-s`` read as drgn's is
    a usage error that says which is which.
    """
    for path in paths:
        reason = elf_problem(path)
        if reason is None:
            continue
        if reason == "no such file" and looks_like_ss_flags(path):
            raise UsageError(f"-s {path}: no such file: in drgn-ss, -s names the vmlinux (as in drgn); "
                             "ss's summary is --summary")
        raise Failure(f"-s {path}: {reason}")


def _open_target(args: argparse.Namespace) -> Program:
    """The program of a dump (``-c``), a QEMU guest (``--qemu``) or the live kernel; errors as Failure."""
    prog = Program()
    try:
        if args.core:
            prog = open_core_dump(args.core)
            use_core_file(prog, args.core)
        elif args.qemu:
            set_qemu(prog, args.qemu)
        else:
            if not os.path.exists("/proc/kcore"):
                raise Failure("no /proc/kcore on this machine: the live kernel cannot be read "
                              "(give -c VMCORE or --qemu SOCKET)")
            if os.geteuid() != 0:
                raise Failure("reading the live kernel needs root (/proc/kcore)")
            use_kcore(prog)
    except Failure:
        raise
    except PermissionError as e:
        raise Failure(f"permission denied: {e.filename or e}") from None
    except FileNotFoundError as e:
        raise Failure(f"no such file: {e.filename}") from None
    except (OSError, ValueError) as e:
        raise Failure(f"cannot open {args.core or args.qemu or 'the live kernel'}: {e}") from None
    except Exception as e:  # libkdumpfile errors surface as plain Exception
        raise Failure(f"cannot open {args.core or args.qemu}: {e}") from None
    if not prog.flags & ProgramFlags.IS_LINUX_KERNEL:
        raise Failure(f"{args.core} is not a Linux kernel dump")
    return prog


def _no_matching_vmlinux(prog: Program, symbols: Sequence[str]) -> Failure:
    """Why none of the vmlinux files given (``-s``) gives this kernel's debug info."""
    release = _release(prog)
    ours = escape_name(vmcoreinfo(prog).get("BUILD-ID", "unknown"))
    own = kernels_vmlinux(prog, symbols)
    if own is not None:  # the build's own file, stripped of its DWARF
        return Failure(f"{own} is the vmlinux of kernel {release} (build ID {ours}) but has "
                       f"no debug info: give the one with DWARF (linux-image-{release}-dbg)")
    theirs = ", ".join(f"{path} (build ID {elf_build_id(path) or 'unknown'})" for path in symbols)
    return Failure(f"{theirs} does not match kernel {release} (build ID {ours}): "
                   f"give the vmlinux of that exact build (linux-image-{release}-dbg)")


def open_program(args: argparse.Namespace) -> Program:
    """Open the kernel ``drgn-ss`` reads: a dump, a QEMU guest or the live kernel."""
    check_symbols(args.symbols or [])
    prog = _open_target(args)

    def load_debug_info() -> None:
        try:
            prog.load_debug_info(args.symbols or [], main=True)
        except MissingDebugInfoError:
            if args.symbols:
                raise _no_matching_vmlinux(prog, args.symbols) from None
            raise NoDebugInfo(f"no debug info for kernel {_release(prog)}") from None
        except MemoryError:
            # drgn walks the kernel's module list as it loads debug info: a damaged one (a
            # garbage count) ends in a MemoryError there, before any socket is read.
            raise Failure("could not load debug info: the dump's list of kernel modules is damaged "
                          "(drgn ran out of memory walking it)") from None

    # Debug info is loaded only when something is not in the per-build facts cache...
    set_debug_info_loader(prog, load_debug_info)
    # ...or when asked for by name, now (drgn checks that it matches the kernel), unless its
    # build ID says it is this kernel's and the cache has the facts its DWARF gives.
    if args.symbols and not (kernels_vmlinux(prog, args.symbols) is not None
                             and kernel_facts(prog).defer_debug_info()):
        kernel_facts(prog).need_debug_info()
    return prog


def kernels_vmlinux(prog: Program, paths: Sequence[str]) -> str | None:
    """
    The ``-s`` file that is the vmlinux of ``prog``'s kernel build, told cheaply from build
    IDs: its GNU build ID note (:func:`~drgn_ss.kernel.images.elf_build_id`) is the kernel's
    (VMCOREINFO's ``BUILD-ID``, of a dump or of the running kernel). None if no file's is,
    or the kernel's cannot be read (a damaged dump): then drgn loads the files and checks
    them itself.
    """
    build_id = kernel_facts(prog).build_id
    if build_id:
        for path in paths:
            if elf_build_id(path) == build_id:
                return path
    return None


def _release(prog: Program) -> str:
    """The kernel's release for a message, escaped (:func:`escape_name`): it is the dump's."""
    try:
        return escape_name(prog["UTS_RELEASE"].string_().decode(errors="surrogateescape"))
    except Exception as e:
        if not is_damage(e):
            raise
    release = vmcoreinfo(prog).get("OSRELEASE")
    if release:
        return escape_name(release)
    return os.uname().release if is_local_live(prog) else "RELEASE"


#: ss's one-letter options (ss --help): a ``-s`` "file" made of them only (drgn-ss -st) is
#: ss's -s (summary) and more, read as drgn's -s VMLINUX.
SS_SHORT_OPTIONS = frozenset("hVnraloempTisbEZzN460tMSudwxfKHOADF")
