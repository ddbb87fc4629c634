"""The target's memory: :func:`kernel_memory` (an ELF dump or QEMU guest mapped, else
drgn), and the bounds of what it could hold (:func:`object_limit`).
"""

from __future__ import annotations

import contextlib
import os

from drgn import FaultError, Program
from drgn_ss.kernel.facts import kernel_facts
from drgn_ss.kernel.images import ElfImage, KcoreImage, QemuImage
from drgn_ss.kernel.memory import Memory
from drgn_ss.kernel.program import prog_cached, vmcoreinfo

__all__ = [
    "MAX_PHYSICAL_BYTES", "kernel_memory", "object_limit", "physical_memory_bytes", "set_qemu",
    "use_core_file", "use_kcore",
]


def kernel_memory(prog: Program) -> Memory:
    """
    A :class:`~drgn_ss.kernel.memory.Memory` for ``prog``, reading the direct map (where the slab
    allocator puts sockets, files and tasks) by physical address when the kernel says
    where it is: ``page_offset_base`` (CONFIG_RANDOMIZE_MEMORY) and MAX_PHYSMEM_BITS.
    """
    def make(p: Program) -> Memory:
        facts = kernel_facts(p)
        bits = vmcoreinfo(p).get("NUMBER(MAX_PHYSMEM_BITS)")
        direct_map = None
        if bits and facts.has_symbol("page_offset_base"):
            try:
                base = p.read_u64(facts.symbol("page_offset_base"))
                direct_map = (base, base + (1 << int(bits)))
            except FaultError:
                pass
        return Memory(p, direct_map, p.cache.get("drgn_ss.image"))

    return prog_cached(prog, "memory", make)


def use_core_file(prog: Program, path: str) -> None:
    """
    Let :func:`kernel_memory` read ``prog``'s physical memory straight from its core
    file, ``path``, when that is an ELF file (not kdump-compressed): a small read costs
    about a quarter of drgn's. Note which file it is (device, inode, size, modification and
    change times), so that facts from its own BTF are cached for it alone.
    """
    with contextlib.suppress(OSError, ValueError):  # if not, drgn reads it
        prog.cache["drgn_ss.image"] = ElfImage(path)
    with contextlib.suppress(OSError):
        st = os.stat(path)
        prog.cache["drgn_ss.core_identity"] = (f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:"
                                               f"{st.st_ctime_ns}")


def use_kcore(prog: Program) -> None:
    """
    ``prog.set_kernel()``, having first opened /proc/kcore for :func:`kernel_memory` to
    read the direct map with pread() (the C walks without a call into drgn per read). If
    it cannot be read that way, drgn reads it all.
    """
    with contextlib.suppress(OSError, ValueError):
        prog.cache["drgn_ss.image"] = KcoreImage()
    prog.set_kernel()


def set_qemu(prog: Program, qmp_path: str) -> None:
    """
    ``prog.set_qemu_qmp(qmp_path)``, having first asked QEMU where the guest's RAM is in
    its process, so that :func:`kernel_memory` reads it there (as drgn does, without a
    call into drgn per read). If QEMU cannot tell, drgn reads it all.
    """
    with contextlib.suppress(OSError, ValueError):
        prog.cache["drgn_ss.image"] = QemuImage(qmp_path)
    prog.set_qemu_qmp(qmp_path)


#: x86_64's largest physical address space (MAX_PHYSMEM_BITS with 5-level paging): what a
#: damaged ``max_pfn`` is cut to.
MAX_PHYSICAL_BYTES = 1 << 52


def physical_memory_bytes(prog: Program) -> int:
    """
    How much physical memory the kernel has: ``max_pfn`` pages (the highest page frame,
    mm/memblock.c, every kernel), bounded by x86_64's physical address space. What bounds
    the number of objects any list or table in it can hold.
    """
    def read(p: Program) -> int:
        try:
            pages = kernel_memory(p).read_u64(kernel_facts(p).symbol("max_pfn"))
        except (FaultError, LookupError):
            return MAX_PHYSICAL_BYTES
        return min(max(pages, 1) << 12, MAX_PHYSICAL_BYTES)

    return prog_cached(prog, "physical_memory", read)


def object_limit(prog: Program, type_name: str, cap: int | None = None) -> int:
    """
    The most objects of a type the kernel could hold: its physical memory filled with them
    (a slab can hold no more), or ``cap`` (a limit of the kernel's own) if that is fewer. A
    list or table longer than this is damaged.
    """
    limit = physical_memory_bytes(prog) // max(kernel_facts(prog).size(type_name), 1)
    return min(limit, cap) if cap is not None else limit
