"""Where a kernel's types come from: DWARF through drgn (:class:`DwarfTypes`) or the
kernel's own BTF and kallsyms (:class:`BtfTypes`); both answer the same questions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from drgn import BadDataError, FaultError, Program, Type
from drgn_ss.kernel.program import NoDebugInfo, is_local_live, vmcoreinfo

if TYPE_CHECKING:
    from drgn_ss.kernel.btf import Btf

__all__ = ["BtfTypes", "DwarfTypes", "Learnt", "OneType", "TypeSource", "btf_types"]

# -- where types come from: DWARF, or BTF and kallsyms --------------------------------------

class TypeSource(Protocol):
    """Types and symbol addresses of a kernel, from DWARF or from BTF and kallsyms."""

    #: "DWARF" or "BTF".
    name: str
    #: Where its facts come from, for the cache (see :meth:`KernelFacts.value`): "dwarf"
    #: (the debug info drgn loaded) or "memory" (the kernel's own BTF and kallsyms).
    origin: str
    prog: Program

    def type(self, name: str) -> Any:
        """A type by name (``struct sock``), as :meth:`drgn.Program.type`; LookupError if none."""

    def symbol(self, name: str) -> int | None:
        """A kernel variable's address in this boot, or None if there is no such symbol."""

    def variable_type(self, name: str) -> Any | None:
        """A kernel variable's type, where the source knows it."""

    def constant(self, name: str) -> int:
        """An enum constant's value, in any enum (anonymous ones too); LookupError if none."""


class OneType:
    """A TypeSource-like view of one type, named "" (for :func:`drgn_ss.kernel.fields.offset`)."""

    def __init__(self, type_: Any) -> None:
        self._type = type_

    def type(self, name: str) -> Any:
        return self._type


class DwarfTypes:
    """Types and symbols from the kernel's DWARF, loaded into ``prog``."""

    name = "DWARF"
    origin = "dwarf"

    def __init__(self, prog: Program) -> None:
        self.prog = prog
        try:
            prog.type("struct sock")  # here, not later, if there is no debug info
        except LookupError as e:
            raise NoDebugInfo(f"no debug info for the kernel ({e})") from None

    def type(self, name: str) -> Type:
        return self.prog.type(name)

    def symbol(self, name: str) -> int | None:
        try:
            return int(self.prog.object(name).address_)
        except LookupError:
            return None

    def variable_type(self, name: str) -> Type | None:
        try:
            return self.prog.object(name).type_
        except LookupError:
            return None

    def constant(self, name: str) -> int:
        return int(self.prog.constant(name).value_())


class BtfTypes:
    """
    Types from the kernel's BTF, symbols from its kallsyms: what a kernel carries itself
    (CONFIG_DEBUG_INFO_BTF, CONFIG_KALLSYMS_ALL), so no debug package is needed.
    """

    name = "BTF"
    origin = "memory"

    def __init__(self, prog: Program, btf: Btf, symbols: Callable[[str], int | None]) -> None:
        self.prog = prog
        self.btf = btf
        self._symbols = symbols

    def type(self, name: str) -> Any:
        return self.btf.type(name)

    def symbol(self, name: str) -> int | None:
        return self._symbols(name)

    def variable_type(self, name: str) -> None:
        return None  # vmlinux BTF describes per-CPU variables only

    def constant(self, name: str) -> int:
        return self.btf.constant(name)


def btf_types(prog: Program) -> BtfTypes:
    """
    The kernel's BTF and kallsyms. Symbols from the kallsyms tables in memory that
    VMCOREINFO points to (Linux 6.0+), else, on the live local kernel, /proc/kallsyms.
    BTF from /sys/kernel/btf/vmlinux on the live local kernel, else (a dump, a QEMU
    guest) the kernel's memory between ``__start_BTF`` and ``__stop_BTF``.

    :raises LookupError: saying why neither can be had
    """
    from drgn_ss.kernel.btf import Btf, BtfError  # only where BTF is read: start-up
    from drgn_ss.kernel.kallsyms import KallsymsError, MemoryKallsyms, proc_kallsyms

    live = is_local_live(prog)
    info = vmcoreinfo(prog)
    symbol: Callable[[str], int | None]
    try:
        # The tables in memory where VMCOREINFO has them (6.0+): faster than /proc/kallsyms
        # (0.08-0.14 s against 0.34-0.60 s in a TCG guest), which is for older live kernels.
        symbol = MemoryKallsyms(prog.read, info)
    except KallsymsError:
        if not live:
            raise
        try:
            symbol = proc_kallsyms()
        except OSError as e:
            raise LookupError(f"no kallsyms ({e})") from None
        if os.geteuid() != 0 or not symbol("init_net"):
            raise LookupError("no kallsyms: /proc/kallsyms shows addresses to root only") from None

    try:
        if live:
            with open("/sys/kernel/btf/vmlinux", "rb") as f:
                data = f.read()
        else:
            start, stop = symbol("__start_BTF"), symbol("__stop_BTF")
            if start is None or stop is None or not 0 < stop - start < 1 << 28:
                raise LookupError("no __start_BTF/__stop_BTF symbols: a kernel without BTF")
            data = prog.read(start, stop - start)
        return BtfTypes(prog, Btf(data), symbol)
    except (OSError, FaultError, BadDataError, BtfError) as e:
        raise LookupError(f"no BTF ({e})") from None


class Learnt(NamedTuple):
    """
    A fact worked out from something other than the types it was asked of (see
    :func:`_hz_fact`), with where it came from: "dwarf" (the build's own vmlinux), "memory"
    (the kernel's memory), or "" (this run only: it is not cached).
    """

    value: Any
    origin: str
