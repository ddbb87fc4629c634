"""Kernel memory read raw (:class:`Memory`), with every read bounded, and the
loop-checked walks of kernel lists (``struct list_head``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from drgn import FaultError, Program
from drgn_ss.kernel.images import PhysicalImage

__all__ = ["MAX_READ_BYTES", "Memory", "checked_reader", "list_nodes", "list_reachable", "read_c_string"]

#: The most one read may ask for (a bucket array, an fd array): more is taken for damage (a
#: mask or count read from a damaged dump), refused as a fault rather than allocated.
MAX_READ_BYTES = 1 << 28


def checked_reader(read: Callable[..., bytes]) -> Callable[..., bytes]:
    """
    ``read`` (drgn's ``Program.read``) for addresses that came from kernel memory: one that
    is not a 64-bit address (a damaged pointer less an offset) or a size past
    :data:`MAX_READ_BYTES` raise :class:`FaultError`, as an unreadable address does, instead
    of OverflowError or MemoryError.
    """
    def checked(addr: int, size: int, *physical: bool) -> bytes:
        if not (0 <= addr < 1 << 64 and 0 <= size <= MAX_READ_BYTES):
            raise FaultError(f"not a readable span: {size} bytes at {addr:#x}", addr & (1 << 64) - 1)
        return read(addr, size, *physical)

    return checked


class Memory:
    """
    Read kernel memory fast. An address in the direct map is read by its physical
    address, which spares drgn a page-table walk per read (about half the cost of a
    small read); if physical reads do not work for this program, virtual ones are used.
    With an image of the program's physical memory (the ELF core file it reads, mapped;
    a QEMU guest's RAM in the QEMU process), physical reads skip drgn.

    :param direct_map: the direct map's [start, end) virtual addresses, if known.
    :param image: the program's core file, mapped.
    """

    def __init__(self, prog: Program, direct_map: tuple[int, int] | None,
                 image: PhysicalImage | None = None) -> None:
        self.prog = prog
        self.image = image
        self.lo, self.hi = direct_map or (0, 0)
        #: drgn's read, for addresses that may be damaged (see :func:`checked_reader`).
        self._read = checked_reader(prog.read)
        #: ``read(addr, size) -> bytes``. Until a direct-map read shows whether physical reads
        #: work, the probing method; then a lean function for the hot loops (chain walks,
        #: fd arrays) to call without a method's overhead.
        self.read: Callable[[int, int], bytes] = self._probe if self.hi else self._read
        #: ``image``, once a read showed that it holds the direct map's pages.
        self.mapped: PhysicalImage | None = None

    def native(self) -> tuple[object, ...]:
        """
        How :mod:`drgn_ss._fast` reads this memory: the image's mapping or file descriptor
        and its segments (physical addresses) with the direct map's bounds, or None; and
        :attr:`read` for everything else.
        """
        image = self.mapped
        if image is None:
            return (None, -1, [], [], [], 0, 0, self.read, FaultError)
        return (image.map, image.fd, image.starts, image.ends, image.offsets, self.lo, self.hi,
                self.read, FaultError)

    def _probe(self, addr: int, size: int) -> bytes:
        read = self._read
        if not self.lo <= addr < self.hi:
            return read(addr, size)
        try:
            data = read(addr - self.lo, size, True)
        except (FaultError, ValueError, OverflowError):
            # Do physical reads work at all here? If the virtual read works, they do not.
            data = read(addr, size)  # raises if the page is really not there: probe again
            self.lo = self.hi = 0
            self.read = read
            return data
        lo, hi = self.lo, self.hi

        def drgn_physical(phys: int, size: int) -> bytes:
            return read(phys, size, True)

        physical: Callable[[int, int], bytes] = drgn_physical
        image = self.image.for_direct_map(lo) if self.image is not None else None
        if image is not None and image.reader(lambda phys, size: b"")(addr - lo, size) == data:
            physical = image.reader(drgn_physical)  # what drgn reads, and it maps as assumed
            self.mapped = image

        def direct(addr: int, size: int) -> bytes:
            return physical(addr - lo, size) if lo <= addr < hi else read(addr, size)

        self.read = direct
        return data

    @property
    def probing(self) -> bool:
        """Whether it is not yet known how the direct map is read (no read there has worked)."""
        return self.read == self._probe

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def read_u32(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little")

    def read_some(self, addr: int, size: int, least: int) -> bytes:
        """``size`` bytes at ``addr`` or, if that reaches a missing page, ``least``."""
        try:
            return self.read(addr, size)
        except FaultError:
            return self.read(addr, least)


def list_nodes(mem: Memory, head: int, limit: int, what: str, backwards: bool = False) -> Iterator[int]:
    """
    The addresses of the nodes of a circular kernel list (``struct list_head``), after
    ``head`` (``next`` pointers; ``prev`` with ``backwards``). A node met twice (a loop
    that does not come back to the head: a freed node reused) or more than ``limit``
    nodes is damage.

    :raises FaultError: if a node cannot be read, the list loops, or it is too long
    """
    step = 8 if backwards else 0  # struct list_head { next, prev }
    seen: set[int] = set()
    pos = mem.read_u64(head + step)
    while pos != head:
        if pos in seen:
            raise FaultError(f"{what} loops back: a freed node?", pos)
        if len(seen) >= limit:
            raise FaultError(f"{what} longer than the kernel could hold: a loop?", pos)
        after = mem.read_u64(pos + step)  # a node that cannot be read is not yielded
        seen.add(pos)
        yield pos
        pos = after


def list_reachable(mem: Memory, head: int, limit: int, what: str) -> tuple[list[int], FaultError | None]:
    """
    Every node of a circular kernel list that can be reached from ``head``: forwards, and
    where that breaks (a node that cannot be read, a loop), backwards from the head too, up
    to the nodes already found. Each node once, in list order as far as it is known.

    :return: the nodes' addresses, and the first fault met (None: the list was whole)
    """
    forwards: list[int] = []
    try:
        for pos in list_nodes(mem, head, limit, what):
            forwards.append(pos)
        return forwards, None
    except FaultError as e:
        fault = e
    known = set(forwards)
    backwards: list[int] = []
    try:
        for pos in list_nodes(mem, head, limit, what, backwards=True):
            if pos in known:
                break
            backwards.append(pos)
    except FaultError:
        pass  # the first fault stands for the break
    return forwards + backwards[::-1], fault


def read_c_string(mem: Memory, addr: int, limit: int = 4096) -> bytes:
    """
    The NUL-terminated string at ``addr`` (a ``char *``'s target), read a page at most at
    a time so that no read reaches past the page the string ends in; at most ``limit`` bytes.

    :raises FaultError: if it cannot be read
    """
    out = b""
    while len(out) < limit:
        size = min(4096 - (addr + len(out)) % 4096, limit - len(out))
        chunk = mem.read(addr + len(out), size)
        end = chunk.find(b"\0")
        if end >= 0:
            return out + chunk[:end]
        out += chunk
    return out
