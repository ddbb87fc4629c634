"""Offsets resolved once, values decoded from raw bytes: the fast way to read many structs.

Reading a member through a drgn Object costs microseconds; reading a struct's
bytes once with ``prog.read()`` and unpacking integers at known offsets costs
far less. :func:`field` resolves a member path of a type (through anonymous
unions, nested structs and bitfields) to a :class:`Field` that decodes it from
a buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

from drgn import Program, Type, TypeKind


@dataclass(frozen=True)
class Field:
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
    """Decode several fields of one struct with one precompiled ``struct.Struct`` call."""

    def __init__(self, fields: dict[str, Field]) -> None:
        import struct

        self.names = list(fields)
        order = sorted(range(len(self.names)), key=lambda i: fields[self.names[i]].offset)
        fmt = "<"
        pos = 0
        codes = {1: "b", 2: "h", 4: "i", 8: "q"}
        self._post: list[tuple[int, int, int]] = []  # (index in result, shift, mask) for bitfields
        result_index = {}
        for n, i in enumerate(order):
            f = fields[self.names[i]]
            if f.offset < pos or f.size not in codes:
                raise ValueError(f"{self.names[i]} overlaps another field or has size {f.size}")
            fmt += f"{f.offset - pos}x" if f.offset > pos else ""
            code = codes[f.size]
            fmt += code if f.signed and not f.bits else code.upper()
            pos = f.end
            result_index[i] = n
        self.struct = struct.Struct(fmt)
        self.size = pos
        self._index = [result_index[i] for i in range(len(self.names))]
        for i, name in enumerate(self.names):
            f = fields[name]
            if f.bits:
                self._post.append((i, f.shift, (1 << f.bits) - 1))

    def unpack(self, buf: bytes) -> list[int]:
        """The values, in the order the fields were given."""
        raw = self.struct.unpack_from(buf)
        values = [raw[j] for j in self._index]
        for i, shift, mask in self._post:
            values[i] = (values[i] >> shift) & mask
        return values
