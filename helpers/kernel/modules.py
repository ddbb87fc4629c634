"""Loaded kernel modules, read raw from the kernel's ``modules`` list: each one's symbols (the
ELF symbol table the module loader keeps, ``mod->kallsyms``) and types (its split BTF,
``mod->btf_data``, on top of vmlinux's: 5.11+ with CONFIG_DEBUG_INFO_BTF_MODULES). The
families built as modules (SCTP, vsock) are read with them where the kernel's DWARF does
not describe the module. Addresses differ from boot to boot: nothing here is cached on disk.
"""

from __future__ import annotations

import contextlib
import struct
from typing import TYPE_CHECKING, Any

from drgn import FaultError, Program
from drgn_ss.kernel.damage import is_damage
from drgn_ss.kernel.facts import SourceFor, kernel_facts
from drgn_ss.kernel.memory import list_nodes
from drgn_ss.kernel.program import prog_cached
from drgn_ss.kernel.strings import c_string
from drgn_ss.kernel.target import kernel_memory, object_limit

if TYPE_CHECKING:
    from drgn_ss.kernel.btf import Btf
    from drgn_ss.kernel.type_sources import TypeSource

__all__ = ["KernelModule", "MAX_MODULE_BTF", "MAX_MODULE_SYMBOLS", "ModuleTypes", "kernel_module",
           "kernel_modules", "load_module_dwarf", "module_source"]

#: Bounds past which a module's tables are taken for damage.
MAX_MODULE_SYMBOLS = 1 << 20
MAX_MODULE_BTF = 1 << 26
_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym: st_name, st_info, st_other, st_shndx, st_value, st_size
_MAX_STRTAB = 1 << 24


class KernelModule:
    """A loaded module (``struct module`` at ``address``)."""

    def __init__(self, prog: Program, name: str, address: int) -> None:
        self.prog, self.name, self.address = prog, name, address
        self._symbols: dict[str, int] | None = None
        self._btf: Btf | None = None

    def symbols(self) -> dict[str, int]:
        """The module's symbols (functions and variables), by name; empty if it keeps none."""
        if self._symbols is None:
            facts, mem = kernel_facts(self.prog), kernel_memory(self.prog)
            K = "struct mod_kallsyms"
            table = mem.read_u64(self.address + facts.offset("struct module", "kallsyms"))
            head = mem.read(table, facts.size(K))
            symtab = int.from_bytes(head[facts.offset(K, "symtab"):][:8], "little")
            count = int.from_bytes(head[facts.offset(K, "num_symtab"):][:4], "little")
            strtab = int.from_bytes(head[facts.offset(K, "strtab"):][:8], "little")
            if count > MAX_MODULE_SYMBOLS:
                raise FaultError(f"module {self.name}'s symbol table is damaged ({count} symbols)", table)
            table_bytes = mem.read(symtab, count * _SYM.size) if count else b""
            entries = [_SYM.unpack_from(table_bytes, i * _SYM.size) for i in range(count)]
            span = min(max((e[0] for e in entries), default=0) + 256, _MAX_STRTAB)
            names = mem.read(strtab, span) if entries else b""
            self._symbols = {}
            for name_off, _info, _other, shndx, value, _size in entries:
                if shndx and value and name_off < len(names):
                    self._symbols.setdefault(c_string(names, name_off, 256), value)
        return self._symbols

    def _registered_btf(self) -> tuple[int, int]:
        try:
            return _btf_blob(self.prog, self.address)
        except LookupError:  # no btf_modules list in this kernel
            return 0, 0
        except FaultError as e:  # a dump without those pages says so rather than "no BTF"
            raise LookupError(f"module {self.name}'s BTF cannot be read ({e})") from None

    def variable(self, name: str) -> int | None:
        """A symbol's address in this boot (a variable's, a function's), or None."""
        return self.symbols().get(name)

    def btf(self) -> Btf:
        """
        The module's BTF, on top of vmlinux's.

        :raises LookupError: if this kernel keeps none for its modules, or it cannot be read
        """
        if self._btf is None:
            from drgn_ss.kernel.btf import Btf, BtfError
            from drgn_ss.kernel.type_sources import btf_types

            facts, mem = kernel_facts(self.prog), kernel_memory(self.prog)
            try:
                data_at = facts.offset("struct module", "btf_data")
                size_at = facts.offset("struct module", "btf_data_size")
            except LookupError:
                raise LookupError("this kernel keeps no BTF for its modules (before 5.11)") from None
            size = mem.read_u32(self.address + size_at)
            data = mem.read_u64(self.address + data_at)
            if not data:  # freed once loaded: the copy btf_module_notify() made, on btf_modules
                data, size = self._registered_btf()
            if not data or not 0 < size <= MAX_MODULE_BTF:
                raise LookupError(f"module {self.name} has no BTF")
            base = prog_cached(self.prog, "vmlinux_btf", btf_types).btf
            try:
                self._btf = Btf(mem.read(data, size), base)
            except (FaultError, BtfError) as e:
                raise LookupError(f"module {self.name}'s BTF cannot be read ({e})") from None
        return self._btf


class ModuleTypes:
    """A module's types (its BTF), as a :class:`~drgn_ss.kernel.type_sources.TypeSource`."""

    name = "BTF"
    origin = "memory"

    def __init__(self, prog: Program, module: KernelModule) -> None:
        self.prog = prog
        self.module = module

    def type(self, name: str) -> Any:
        return self.module.btf().type(name)

    def symbol(self, name: str) -> int | None:
        return self.module.variable(name)

    def variable_type(self, name: str) -> None:
        return None

    def constant(self, name: str) -> int:
        return self.module.btf().constant(name)


def _btf_blob(prog: Program, module: int) -> tuple[int, int]:
    """Where the BTF the kernel registered for a module is (``btf_modules``), and its size; (0, 0) if none."""
    facts, mem = kernel_facts(prog), kernel_memory(prog)
    M, B = "struct btf_module", "struct btf"
    link, module_at, btf_at = facts.offset(M, "list"), facts.offset(M, "module"), facts.offset(M, "btf")
    for node in list_nodes(mem, facts.symbol("btf_modules"), object_limit(prog, M, 1 << 16),
                           "the list of modules' BTF"):
        if mem.read_u64(node - link + module_at) == module:
            btf = mem.read_u64(node - link + btf_at)
            data, size = facts.offset(B, "data"), facts.offset(B, "data_size")
            return mem.read_u64(btf + data), mem.read_u32(btf + size)
    return 0, 0


def module_source(prog: Program, module: str) -> SourceFor:
    """
    Where a type of ``module`` is described, for :meth:`~drgn_ss.kernel.facts.KernelFacts.field`:
    this run's types if they have it (the module's DWARF loaded), else the module's BTF in
    memory.
    """
    def source(types: TypeSource, type_name: str) -> TypeSource:
        try:
            types.type(type_name)
            return types
        except LookupError:
            pass
        if types.name == "DWARF" and load_module_dwarf(prog, module):
            with contextlib.suppress(LookupError):
                types.type(type_name)
                return types
        loaded = kernel_module(prog, module)
        if loaded is None:
            raise LookupError(f"module {module} is not loaded")
        try:
            loaded.btf().type(type_name)
        except LookupError as e:
            raise LookupError(f"no type information for module {module}: no debug info, and {e}") from None
        return ModuleTypes(prog, loaded)

    return source


def kernel_modules(prog: Program) -> dict[str, KernelModule]:
    """
    The loaded modules by name, from the ``modules`` list (bounded, loop-checked).

    :raises FaultError: if the list cannot be read
    """
    def walk(p: Program) -> dict[str, KernelModule]:
        facts, mem = kernel_facts(p), kernel_memory(p)
        link = facts.offset("struct module", "list")
        name_at = facts.offset("struct module", "name")
        out: dict[str, KernelModule] = {}
        for node in list_nodes(mem, facts.symbol("modules"), object_limit(p, "struct module", 1 << 16),
                               "the module list"):
            address = node - link
            name = c_string(mem.read(address + name_at, 56), 0, 56)
            out.setdefault(name, KernelModule(p, name, address))
        return out

    return prog_cached(prog, "kernel_modules", walk)


def kernel_module(prog: Program, name: str) -> KernelModule | None:
    """The loaded module of this name (``sctp``, ``vsock``), or None if it is not loaded."""
    return kernel_modules(prog).get(name)


def load_module_dwarf(prog: Program, name: str) -> bool:
    """
    Load a module's debug info (DWARF) where drgn finds it (the -dbg package's path, or a
    file given with ``-s``), for a run that reads the kernel's DWARF; whether it is loaded.
    """
    try:
        for module, _new in prog.loaded_modules():
            if module.name != name:
                continue
            if module.wants_debug_file():
                prog.find_standard_debug_info([module])
            return not module.wants_debug_file()
    except Exception as e:  # drgn walks the module list itself: a damaged one, or no DWARF for it
        if not is_damage(e) and not isinstance(e, (LookupError, ValueError)):
            raise
    return False
