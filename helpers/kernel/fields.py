"""Offsets resolved once, values decoded from raw bytes: the fast way to read many structs.

Reading a member through a drgn Object costs microseconds; reading a struct's
bytes once with ``prog.read()`` and unpacking integers at known offsets costs
far less. :func:`field` resolves a member path of a type (through anonymous
unions, nested structs and bitfields) to a :class:`Field` that decodes it from
a buffer.
"""

from __future__ import annotations

import operator
import struct
from typing import NamedTuple

from drgn import Program, Type, TypeKind

__all__ = ["Field", "Unpacker", "field", "offset", "s32", "span"]


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
        if t.type is None:  # BTF names no compatible integer type: an enum's own size and sign
            return Field(bit_offset // 8, t.size, bool(getattr(t, "is_signed", False)))
        t = t.type.unaliased()
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


def s32(value: int) -> int:
    """``value`` wrapped to a C ``int`` (32 bits, signed): what ``%d`` prints of a u32."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >> 31 else value
