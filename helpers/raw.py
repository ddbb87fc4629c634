"""Offsets resolved once, values decoded from raw bytes: the fast way to read many structs.

Reading a member through a drgn Object costs microseconds; reading a struct's
bytes once with ``prog.read()`` and unpacking integers at known offsets costs
far less. :func:`field` resolves a member path of a type (through anonymous
unions, nested structs and bitfields) to a :class:`Field` that decodes it from
a buffer.
"""

from __future__ import annotations

import bisect
import mmap
import operator
import os
import struct
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import NamedTuple

from drgn import FaultError, Program, Type, TypeKind

try:
    from drgn_ss import _fast
except ImportError:  # not built (no compiler at install time): the Python paths do it all
    _fast = None  # type: ignore[assignment]


def native() -> ModuleType | None:
    """
    :mod:`drgn_ss._fast`, the hot loops in C, if it is built and DRGN_SS_PURE_PYTHON is
    not set to 1; else None, and callers take their Python path (the reference).
    """
    return _fast if os.environ.get("DRGN_SS_PURE_PYTHON", "") in ("", "0") else None


class Field(NamedTuple):
    """An integer member at a fixed place in a struct: bytes, and bits for bitfields."""

    #: Byte offset from the start of the struct, and how many bytes hold the value.
    offset: int
    size: int
    signed: bool = False
    #: For bitfields: the shift within those bytes and the width in bits (0: not a bitfield).
    shift: int = 0
    bits: int = 0

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def native(self) -> tuple[int, int, int, int, int]:
        """The field as :mod:`drgn_ss._fast` takes it: (offset, size, signed, shift, bits)."""
        return (self.offset, self.size, int(self.signed), self.shift, self.bits)

    def get(self, buf: bytes | memoryview, base: int = 0) -> int:
        """The value in ``buf``, whose byte ``base`` is the struct's first byte."""
        start = base + self.offset
        value = int.from_bytes(buf[start : start + self.size], "little", signed=self.signed and not self.bits)
        if self.bits:
            value = (value >> self.shift) & ((1 << self.bits) - 1)
        return value


def _resolve(type_: Type, path: str) -> tuple[int, Type, int | None]:
    """Bit offset of a member path from the start of ``type_``, its type and bitfield size."""
    bit_offset = 0
    current = type_
    bit_field_size = None
    for name in path.split("."):
        index = None
        if "[" in name:
            name, rest = name.split("[", 1)
            index = int(rest.rstrip("]"))
        member = current.unaliased().member(name)
        bit_offset += member.bit_offset
        current = member.type
        bit_field_size = member.bit_field_size
        if index is not None:
            array = current.unaliased()
            if array.kind != TypeKind.ARRAY:
                raise TypeError(f"{name} is not an array")
            current = array.type
            bit_offset += index * 8 * current.size
    return bit_offset, current, bit_field_size


def field(prog: Program, type_name: str, path: str) -> Field:
    """
    Resolve a member path such as ``__sk_common.skc_state`` of ``struct sock``.

    :raises LookupError: if a member on the path does not exist
    """
    bit_offset, type_, bits = _resolve(prog.type(type_name), path)
    t = type_.unaliased()
    if t.kind == TypeKind.ENUM:
        t = t.type.unaliased() if t.type is not None else t
    if t.kind == TypeKind.POINTER:
        return Field(bit_offset // 8, t.size, False)
    if t.kind not in (TypeKind.INT, TypeKind.BOOL):
        raise TypeError(f"{type_name}.{path} is not an integer or pointer ({type_})")
    signed = bool(getattr(t, "is_signed", False))
    if bits:
        start = bit_offset // 8
        shift = bit_offset % 8
        size = (shift + bits + 7) // 8
        return Field(start, size, signed, shift, bits)
    return Field(bit_offset // 8, t.size, signed)


def span(prog: Program, type_name: str, path: str) -> tuple[int, int]:
    """Byte offset and size of any member (an array, a struct), e.g. an IPv6 address."""
    bit_offset, type_, _ = _resolve(prog.type(type_name), path)
    return bit_offset // 8, type_.size


def offset(prog: Program, type_name: str, path: str) -> int:
    """Byte offset of a member path."""
    return _resolve(prog.type(type_name), path)[0] // 8


class Unpacker:
    """
    Decode several fields of one struct with one precompiled ``struct.Struct`` call.
    Fields may share bytes exactly (the same member under two names, or bitfields of
    one storage unit); other overlaps are an error.
    """

    def __init__(self, fields: dict[str, Field]) -> None:
        self.names = list(fields)
        units = sorted({(f.offset, f.size, f.signed and not f.bits) for f in fields.values()})
        fmt = "<"
        pos = 0
        codes = {1: "b", 2: "h", 4: "i", 8: "q"}
        slot = {}
        for n, (off, size, signed) in enumerate(units):
            if off < pos or size not in codes:
                raise ValueError(f"fields overlap or have size {size} at offset {off}")
            fmt += f"{off - pos}x" if off > pos else ""
            fmt += codes[size] if signed else codes[size].upper()
            pos = off + size
            slot[off] = n
        self.struct = struct.Struct(fmt)
        self.size = pos
        index = [slot[fields[name].offset] for name in self.names]
        self._get = operator.itemgetter(*index) if len(index) > 1 else lambda raw: (raw[index[0]],)
        #: (index in the result, shift, mask) for bitfields.
        self._post = [(i, fields[name].shift, (1 << fields[name].bits) - 1)
                      for i, name in enumerate(self.names) if fields[name].bits]

        if not self._post:
            # No bitfields: unpack is two C calls, with no Python frame of its own.
            get, unpack_from = self._get, self.struct.unpack_from
            self.unpack = lambda buf: get(unpack_from(buf))  # type: ignore[method-assign]

    def unpack(self, buf: bytes) -> tuple[int, ...]:
        """The values, in the order the fields were given."""
        values = self._get(self.struct.unpack_from(buf))
        if self._post:
            out = list(values)
            for i, shift, mask in self._post:
                out[i] = (out[i] >> shift) & mask
            return tuple(out)
        return values


class ElfImage:
    """
    The physical memory an ELF core file holds (its PT_LOAD segments), mapped into this
    process: a read is a slice of the file's pages, with no call into drgn.
    """

    def __init__(self, path: str) -> None:
        with open(path, "rb") as f:
            self.map = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        head = self.map[:64]
        if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            raise ValueError(f"{path} is not a little-endian ELF64 file")
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        segments = []
        for i in range(phnum):
            p_type, _flags, offset, _vaddr, paddr, filesz = struct.unpack_from(
                "<IIQQQQ", self.map, phoff + i * phentsize)
            if p_type == 1 and filesz and offset + filesz <= len(self.map):  # PT_LOAD
                segments.append((paddr, paddr + filesz, offset))
        segments.sort()
        self.starts = [s[0] for s in segments]
        self.ends = [s[1] for s in segments]
        self.offsets = [s[2] for s in segments]

    def reader(self, fallback: Callable[[int, int], bytes]) -> Callable[[int, int], bytes]:
        """``read(phys, size)``: a slice where one segment holds it all, else ``fallback``."""
        starts, ends, offsets, data = self.starts, self.ends, self.offsets, self.map
        find = bisect.bisect_right

        def read(phys: int, size: int) -> bytes:
            i = find(starts, phys) - 1
            if i >= 0 and phys + size <= ends[i]:
                start = offsets[i] + phys - starts[i]
                return data[start : start + size]
            return fallback(phys, size)

        return read


class Memory:
    """
    Read kernel memory fast. An address in the direct map is read by its physical
    address, which spares drgn a page-table walk per read (about half the cost of a
    small read); if physical reads do not work for this program, virtual ones are used.
    With the ELF core file the program reads, physical reads are slices of its mapping.

    :param direct_map: the direct map's [start, end) virtual addresses, if known.
    :param image: the program's core file, mapped.
    """

    def __init__(self, prog: Program, direct_map: tuple[int, int] | None,
                 image: ElfImage | None = None) -> None:
        self.prog = prog
        self.image = image
        self.lo, self.hi = direct_map or (0, 0)
        #: ``read(addr, size) -> bytes``. Until a direct-map read shows whether physical reads
        #: work, the probing method; then a lean function for the hot loops (chain walks,
        #: fd arrays) to call without a method's overhead.
        self.read: Callable[[int, int], bytes] = self._probe if self.hi else prog.read
        #: ``image``, once a read showed that it holds the direct map's pages.
        self.mapped: ElfImage | None = None

    def native(self) -> tuple[object, ...]:
        """
        How :mod:`drgn_ss._fast` reads this memory: the mapped core file and its segments
        (physical addresses) with the direct map's bounds, or None; and :attr:`read` for
        everything else.
        """
        image = self.mapped
        if image is None:
            return (None, [], [], [], 0, 0, self.read, FaultError)
        return (image.map, image.starts, image.ends, image.offsets, self.lo, self.hi, self.read,
                FaultError)

    def _probe(self, addr: int, size: int) -> bytes:
        read = self.prog.read
        if not self.lo <= addr < self.hi:
            return read(addr, size)
        try:
            data = read(addr - self.lo, size, True)
        except (FaultError, ValueError):
            # Do physical reads work at all here? If the virtual read works, they do not.
            data = read(addr, size)  # raises if the page is really not there: probe again
            self.lo = self.hi = 0
            self.read = read
            return data
        lo, hi = self.lo, self.hi

        def drgn_physical(phys: int, size: int) -> bytes:
            return read(phys, size, True)

        physical: Callable[[int, int], bytes] = drgn_physical
        image = self.image
        if image is not None and image.reader(lambda phys, size: b"")(addr - lo, size) == data:
            physical = image.reader(drgn_physical)  # the file drgn reads, and it maps as assumed
            self.mapped = image

        def direct(addr: int, size: int) -> bytes:
            return physical(addr - lo, size) if lo <= addr < hi else read(addr, size)

        self.read = direct
        return data

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


def list_nodes(mem: Memory, head: int, limit: int, what: str) -> Iterator[int]:
    """
    The addresses of the nodes of a circular kernel list (``struct list_head``), after
    ``head``. More than ``limit`` nodes is taken for a loop through freed memory.

    :raises FaultError: if a node cannot be read, or there are too many
    """
    pos = mem.read_u64(head)
    for _ in range(limit):
        if pos == head:
            return
        yield pos
        pos = mem.read_u64(pos)  # list_head.next comes first
    raise FaultError(f"{what} too long: a loop?", pos)


def c_string(buf: bytes, start: int, size: int) -> str:
    """The NUL-terminated string in a ``char[size]`` at ``start`` (a task's comm, a device's name)."""
    return buf[start : start + size].split(b"\0", 1)[0].decode(errors="replace")
