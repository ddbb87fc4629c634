"""The kernel's own type information, BTF: struct layouts without DWARF.

Every kernel of the matrix is built with CONFIG_DEBUG_INFO_BTF: /sys/kernel/btf/vmlinux
(and the ``.BTF`` section of vmlinux, ``__start_BTF`` .. ``__stop_BTF`` in its memory)
describes every struct the project reads. The format is the kernel's
Documentation/bpf/btf.rst: a header, a section of types (type ids count from 1; 0 is
void) and a section of NUL-terminated names.

:class:`Btf` indexes the types in one pass and resolves names lazily. Its types answer
the part of drgn's :class:`drgn.Type` interface that the layout code uses (``kind``,
``size``, ``type``, ``length``, ``is_signed``, ``members``, ``member()``,
``unaliased()``), so the same code works out offsets from DWARF or from BTF.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

from drgn import TypeKind
from drgn_ss.kernel.native import native

__all__ = [
    "BTF_MAGIC", "Btf", "BtfError", "BtfMember", "BtfType", "KIND_ARRAY", "KIND_CONST", "KIND_DATASEC",
    "KIND_DECL_TAG", "KIND_ENUM", "KIND_ENUM64", "KIND_FLOAT", "KIND_FUNC", "KIND_FUNC_PROTO", "KIND_FWD",
    "KIND_INT", "KIND_PTR", "KIND_RESTRICT", "KIND_STRUCT", "KIND_TYPEDEF", "KIND_TYPE_TAG", "KIND_UNION",
    "KIND_VAR", "KIND_VOLATILE", "POINTER_SIZE", "vmlinux_btf",
]

BTF_MAGIC = 0xEB9F

# include/uapi/linux/btf.h
KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_FWD, KIND_TYPEDEF = range(1, 9)
KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_FUNC, KIND_FUNC_PROTO, KIND_VAR, KIND_DATASEC = range(9, 16)
KIND_FLOAT, KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64 = range(16, 20)

#: Bytes after the 12-byte struct btf_type: fixed, and per vlen item.
_EXTRA = {KIND_INT: (4, 0), KIND_ARRAY: (12, 0), KIND_STRUCT: (0, 12), KIND_UNION: (0, 12),
          KIND_ENUM: (0, 8), KIND_FUNC_PROTO: (0, 8), KIND_VAR: (4, 0), KIND_DATASEC: (0, 12),
          KIND_DECL_TAG: (4, 0), KIND_ENUM64: (0, 12)}

_DRGN_KIND = {KIND_INT: TypeKind.INT, KIND_PTR: TypeKind.POINTER, KIND_ARRAY: TypeKind.ARRAY,
              KIND_STRUCT: TypeKind.STRUCT, KIND_UNION: TypeKind.UNION, KIND_ENUM: TypeKind.ENUM,
              KIND_ENUM64: TypeKind.ENUM, KIND_FWD: TypeKind.STRUCT, KIND_TYPEDEF: TypeKind.TYPEDEF,
              KIND_FLOAT: TypeKind.FLOAT, KIND_FUNC_PROTO: TypeKind.FUNCTION}
#: Qualifiers and tags: drgn folds them into the type they qualify.
_QUALIFIERS = (KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG)

#: The pointer size of the architectures the project reads (x86_64).
POINTER_SIZE = 8

_HEADER = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")


class BtfError(ValueError):
    """Data that is not BTF, or a BTF the reader does not understand."""


class BtfMember(NamedTuple):
    """A struct or union member, as drgn's :class:`drgn.TypeMember`."""

    name: str | None
    type: BtfType
    bit_offset: int
    bit_field_size: int | None


class Btf:
    """
    A BTF blob (``/sys/kernel/btf/vmlinux``, vmlinux's ``.BTF`` section), indexed.

    :raises BtfError: if ``data`` is not BTF
    """

    def __init__(self, data: bytes, base: Btf | None = None) -> None:
        if len(data) < _HEADER.size:
            raise BtfError("too short for a BTF header")
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(data)
        if magic != BTF_MAGIC:
            raise BtfError(f"not BTF (magic {magic:#x})")
        if version != 1:
            raise BtfError(f"BTF version {version} (this reader knows 1)")
        start, end = hdr_len + type_off, hdr_len + type_off + type_len
        if end > len(data) or hdr_len + str_off + str_len > len(data):
            raise BtfError("BTF sections run past the end of the data")
        self.data = data
        self.strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
        #: For a module's split BTF, vmlinux's: its ids and names come first (the module's
        #: type ids go on from its last, its name offsets from the end of its names).
        self.base = base
        self._base_types = len(base) if base is not None else 0
        self._base_strings = len(base.strings) if base is not None else 0
        #: Where each type's struct btf_type starts, by id (id 0, void, has none; a split
        #: BTF's first ids are its base's).
        self.offsets = [0] * (self._base_types + 1)
        #: Named structs, unions and typedefs: (kind, name offset) -> first id.
        self._named: dict[tuple[int, int], int] = {}
        self._types: dict[int, BtfType] = {}
        self._by_name: dict[str, BtfType] = {}
        fast = native()
        if fast is not None and base is None:
            try:
                self.offsets, self._named = fast.btf_index(data, start, end)
            except ValueError as e:
                raise BtfError(str(e)) from None
        else:
            self._index(start, end)

    def _index(self, start: int, end: int) -> None:
        """The type index in Python (drgn_ss._fast.btf_index does the same in C)."""
        data = self.data
        unpack = _TYPE.unpack_from
        extra = _EXTRA
        offsets, named = self.offsets, self._named
        pos = start
        while pos < end:
            if pos + 12 > end:
                break
            name_off, info, _ = unpack(data, pos)
            kind = info >> 24 & 0x1F
            offsets.append(pos)
            if name_off and kind in (KIND_STRUCT, KIND_UNION, KIND_TYPEDEF, KIND_INT, KIND_ENUM, KIND_ENUM64):
                named.setdefault((kind, name_off), len(offsets) - 1)
            fixed, per_item = extra.get(kind, (0, 0))
            pos += 12 + fixed + per_item * (info & 0xFFFF)
        if pos != end:
            raise BtfError("BTF type section ends inside a type")

    def constant(self, name: str) -> int:
        """
        An enum constant's value by its name, in any enum, anonymous ones too (as
        :meth:`drgn.Program.constant`): a split BTF's own enums first, then its base's.

        :raises LookupError: if no enum has it
        """
        wanted = set(self._name_offsets(name))
        data, unpack = self.data, _TYPE.unpack_from
        for pos in self.offsets[self._base_types + 1:]:
            _name, info, _ = unpack(data, pos)
            kind, vlen = info >> 24 & 0x1F, info & 0xFFFF
            if kind in (KIND_ENUM, KIND_ENUM64):
                step = 8 if kind == KIND_ENUM else 12
                for i in range(vlen):
                    at = pos + 12 + step * i
                    if struct.unpack_from("<I", data, at)[0] in wanted:
                        if kind == KIND_ENUM:
                            return int(struct.unpack_from("<i", data, at + 4)[0])
                        lo, hi = struct.unpack_from("<II", data, at + 4)
                        return lo | hi << 32
        if self.base is not None:
            return self.base.constant(name)
        raise LookupError(f"no enum constant {name}")

    def __len__(self) -> int:
        """The number of types (ids 1 .. len), a split BTF's base's included."""
        return len(self.offsets) - 1

    def name(self, offset: int) -> str:
        if offset < self._base_strings and self.base is not None:
            return self.base.name(offset)
        offset -= self._base_strings
        end = self.strings.index(b"\0", offset)
        return self.strings[offset:end].decode()

    def _name_offsets(self, name: str) -> Iterator[int]:
        """Where ``name`` is in the string section (once, in a deduplicated BTF); a split
        BTF's own names first, then its base's."""
        needle = b"\0" + name.encode() + b"\0"
        pos = self.strings.find(needle)
        if pos < 0 and self.strings.startswith(needle[1:]):
            yield self._base_strings
        while pos >= 0:
            yield pos + 1 + self._base_strings
            pos = self.strings.find(needle, pos + 1)
        if self.base is not None:
            yield from self.base._name_offsets(name)

    def type(self, name: str) -> BtfType:
        """
        A type by its C name: ``struct sock``, ``union bpf_attr``, ``u32``, ``unsigned int``.

        :raises LookupError: if there is no such type
        """
        found = self._by_name.get(name)
        if found is None:
            found = self._by_name[name] = self._lookup(name)
        return found

    def _lookup(self, name: str) -> BtfType:
        kinds: tuple[int, ...]
        if name.startswith("struct "):
            kinds, base = (KIND_STRUCT,), name[7:]
        elif name.startswith("union "):
            kinds, base = (KIND_UNION,), name[6:]
        elif name.startswith("enum "):
            kinds, base = (KIND_ENUM, KIND_ENUM64), name[5:]
        else:
            kinds, base = (KIND_TYPEDEF, KIND_INT), name
        for off in self._name_offsets(base):
            for kind in kinds:
                type_id = self._named.get((kind, off))
                if type_id is not None:
                    return self.by_id(type_id)
        if self.base is not None:
            return self.base.type(name)
        raise LookupError(f"could not find {name!r} in BTF")

    def by_id(self, type_id: int) -> BtfType:
        """The type with this id (0: void)."""
        if 0 < type_id <= self._base_types and self.base is not None:
            return self.base.by_id(type_id)
        t = self._types.get(type_id)
        if t is None:
            if not 0 <= type_id < len(self.offsets):
                raise BtfError(f"BTF type id {type_id} out of range")
            t = self._types[type_id] = BtfType(self, type_id)
        return t


class BtfType:
    """One BTF type, seen as a :class:`drgn.Type`: qualifiers are skipped, as drgn does."""

    def __init__(self, btf: Btf, type_id: int) -> None:
        self.btf = btf
        self.id = type_id
        if type_id == 0:
            self.btf_kind, self.name_off, self.vlen, self.kind_flag, self._size_or_type = 0, 0, 0, False, 0
            self._pos = 0
            self._members: list[BtfMember] | None = None
            return
        self._pos = btf.offsets[type_id]
        self.name_off, info, self._size_or_type = _TYPE.unpack_from(btf.data, self._pos)
        self.btf_kind = info >> 24 & 0x1F
        self.vlen = info & 0xFFFF
        self.kind_flag = bool(info >> 31)
        self._members = None

    def __repr__(self) -> str:
        return f"BtfType({self.id}, kind={self.btf_kind}, name={self.name!r})"

    @property
    def name(self) -> str | None:
        return self.btf.name(self.name_off) if self.name_off else None

    def _target(self) -> BtfType:
        return self.btf.by_id(self._size_or_type)

    def _skip_qualifiers(self) -> BtfType:
        t = self
        for _ in range(64):
            if t.btf_kind not in _QUALIFIERS:
                return t
            t = t._target()
        raise BtfError("qualifier chain too long")

    @property
    def kind(self) -> TypeKind:
        t = self._skip_qualifiers()
        if t.btf_kind == 0:
            return TypeKind.VOID
        if t.btf_kind == KIND_INT and t._int_bits() == 8 and t._int_encoding() & 4:
            return TypeKind.BOOL
        try:
            return _DRGN_KIND[t.btf_kind]
        except KeyError:
            raise BtfError(f"BTF kind {t.btf_kind} is not a type of data") from None

    def unqualified(self) -> BtfType:
        """Without qualifiers, as :meth:`drgn.Type.unqualified`."""
        return self._skip_qualifiers()

    def unaliased(self) -> BtfType:
        """Through typedefs and qualifiers, as :meth:`drgn.Type.unaliased`."""
        t = self._skip_qualifiers()
        for _ in range(64):
            if t.btf_kind != KIND_TYPEDEF:
                return t
            t = t._target()._skip_qualifiers()
        raise BtfError("typedef chain too long")

    @property
    def type(self) -> BtfType | None:
        """What a pointer points to, an array holds, or a typedef names; None otherwise."""
        t = self._skip_qualifiers()
        if t.btf_kind in (KIND_PTR, KIND_TYPEDEF):
            return t._target()
        if t.btf_kind == KIND_ARRAY:
            return t.btf.by_id(t._array()[0])
        if t.btf_kind in (KIND_ENUM, KIND_ENUM64):
            return None  # BTF has no compatible type for enums: see is_signed and size
        return None

    @property
    def enumerators(self) -> tuple[tuple[str, int], ...] | None:
        """An enum's constants, (name, value) as :attr:`drgn.Type.enumerators`; None if not an enum."""
        t = self._skip_qualifiers()
        if t.btf_kind == KIND_ENUM:
            entries = [struct.unpack_from("<Ii", t.btf.data, t._pos + 12 + 8 * i) for i in range(t.vlen)]
        elif t.btf_kind == KIND_ENUM64:
            entries = [(name, lo | hi << 32) for name, lo, hi in (
                struct.unpack_from("<III", t.btf.data, t._pos + 12 + 12 * i) for i in range(t.vlen))]
        else:
            return None
        return tuple((t.btf.name(name), value) for name, value in entries)

    def _array(self) -> tuple[int, int, int]:
        """(element type, index type, number of elements)."""
        return struct.unpack_from("<III", self.btf.data, self._pos + 12)

    def _int_encoding(self) -> int:
        return struct.unpack_from("<I", self.btf.data, self._pos + 12)[0] >> 24 & 0xF

    def _int_bits(self) -> int:
        return struct.unpack_from("<I", self.btf.data, self._pos + 12)[0] & 0xFF

    @property
    def size(self) -> int:
        t = self.unaliased()
        if t.btf_kind == KIND_PTR:
            return POINTER_SIZE
        if t.btf_kind == KIND_ARRAY:
            elem, _, count = t._array()
            return count * t.btf.by_id(elem).size
        if t.btf_kind in (KIND_INT, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_ENUM64, KIND_FLOAT):
            return t._size_or_type
        raise BtfError(f"BTF type {t.id} (kind {t.btf_kind}) has no size")

    @property
    def length(self) -> int | None:
        """An array's number of elements."""
        t = self.unaliased()
        return t._array()[2] if t.btf_kind == KIND_ARRAY else None

    @property
    def is_signed(self) -> bool:
        t = self.unaliased()
        if t.btf_kind == KIND_INT:
            return bool(t._int_encoding() & 1)
        if t.btf_kind in (KIND_ENUM, KIND_ENUM64):
            return t.kind_flag  # set for signed enums (BTF since Linux 6.0; unsigned before)
        return False

    @property
    def members(self) -> list[BtfMember]:
        t = self.unaliased()
        if t._members is None:
            t._members = t._read_members()
        return t._members

    def _read_members(self) -> list[BtfMember]:
        t = self
        if t.btf_kind not in (KIND_STRUCT, KIND_UNION):
            raise BtfError(f"BTF type {t.id} is not a struct or union")
        out = []
        base = t._pos + 12
        for i in range(t.vlen):
            name_off, type_id, offset = struct.unpack_from("<III", t.btf.data, base + 12 * i)
            if t.kind_flag:  # bitfield size in the top byte
                bits, bit_offset = offset >> 24, offset & 0xFFFFFF
            else:
                bits, bit_offset = 0, offset
            out.append(BtfMember(t.btf.name(name_off) if name_off else None, t.btf.by_id(type_id),
                                 bit_offset, bits or None))
        t._check_members(out)
        return out

    def _check_members(self, members: list[BtfMember]) -> None:
        """
        What a compiler's layout cannot break, checked: every member lies inside its struct
        or union, and a struct's members come in the order of their offsets (C lays them out
        in the order they are declared). A damaged or forged BTF that moved one member over
        another, or out of the struct, is refused here rather than read at a wrong offset;
        two members of one size swapped whole cannot be told from a real layout.

        :raises BtfError: naming the struct and the member
        """
        end_bits = self._size_or_type * 8
        previous = 0
        for m in members:
            width = m.bit_field_size or m.type._bits()
            what = f"{self.name or f'an anonymous type (id {self.id})'}'s member {m.name or '(anonymous)'}"
            if m.bit_offset + width > end_bits:
                raise BtfError(f"damaged BTF: {what} (bits {m.bit_offset}-{m.bit_offset + width}) lies "
                               f"past its {self._size_or_type} bytes")
            if self.btf_kind == KIND_STRUCT and m.bit_offset < previous:
                raise BtfError(f"damaged BTF: {what} (bit {m.bit_offset}) comes before the member "
                               f"declared ahead of it (bit {previous})")
            previous = m.bit_offset

    def _bits(self) -> int:
        """The bits a member of this type takes: its size's, or an integer's own (a bitfield's)."""
        t = self.unaliased()
        if t.btf_kind == KIND_INT:
            return t._int_bits()
        return t.size * 8

    def member(self, name: str) -> BtfMember:
        """
        A member by name, through anonymous structs and unions (its offset from this
        type's start), as :meth:`drgn.Type.member`.

        :raises LookupError: if there is no such member
        """
        found = self._find(name)
        if found is None:
            raise LookupError(f"{self.name or self.id!s} has no member {name!r}")
        return found

    def _find(self, name: str) -> BtfMember | None:
        for m in self.members:
            if m.name == name:
                return m
            if m.name is None and m.type.unaliased().btf_kind in (KIND_STRUCT, KIND_UNION):
                inner = m.type._find(name)
                if inner is not None:
                    return inner._replace(bit_offset=m.bit_offset + inner.bit_offset)
        return None


# -- where a kernel's BTF and symbols come from, without debug info ----------------------

def vmlinux_btf(path: str) -> Btf:
    """
    The ``.BTF`` section of a vmlinux file (the same bytes as the running kernel's
    /sys/kernel/btf/vmlinux).

    :raises BtfError: if the file has no such section
    """
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            raise BtfError(f"{path} is not an ELF64 file")
        shoff, = struct.unpack_from("<Q", head, 40)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", head, 58)
        f.seek(shoff)
        table = f.read(shentsize * shnum)

        def section(i: int) -> tuple[int, int, int]:
            name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", table, i * shentsize)
            return name, offset, size

        _, names_at, names_size = section(shstrndx)
        f.seek(names_at)
        names = f.read(names_size)
        for i in range(shnum):
            name, offset, size = section(i)
            if names[name : names.index(b"\0", name)] == b".BTF":
                f.seek(offset)
                return Btf(f.read(size))
    raise BtfError(f"{path} has no .BTF section")
