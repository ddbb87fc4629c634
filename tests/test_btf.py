"""drgn_ss.kernel.btf on a small BTF made here by hand (the kernel matrix checks the reader against
DWARF on each kernel's own BTF): kinds, qualifiers, typedefs, bitfields, anonymous members."""

from __future__ import annotations

import os
import struct

import pytest
from drgn import TypeKind
from drgn_ss.kernel.btf import (
    BTF_MAGIC,
    KIND_ARRAY,
    KIND_CONST,
    KIND_INT,
    KIND_PTR,
    KIND_STRUCT,
    KIND_TYPEDEF,
    KIND_UNION,
    KIND_VOLATILE,
    Btf,
    BtfError,
)
from drgn_ss.kernel.fields import Field, field, offset


class _Builder:
    """A BTF blob, a type at a time (ids from 1, in the order added)."""

    def __init__(self) -> None:
        self.strings = b"\0"
        self.types = bytearray()
        self.at: list[int] = []  # where each type starts in self.types

    def name(self, text: str) -> int:
        if not text:
            return 0
        at = self.strings.find(b"\0" + text.encode() + b"\0")
        if at >= 0:
            return at + 1
        at = len(self.strings)
        self.strings += text.encode() + b"\0"
        return at

    def add(self, kind: int, name: str, size_or_type: int, vlen: int = 0, kind_flag: bool = False,
            extra: bytes = b"") -> int:
        info = kind << 24 | vlen | (1 << 31 if kind_flag else 0)
        self.at.append(len(self.types))
        self.types += struct.pack("<III", self.name(name), info, size_or_type) + extra
        return len(self.at)

    def set_target(self, type_id: int, target: int) -> None:
        struct.pack_into("<I", self.types, self.at[type_id - 1] + 8, target)

    def blob(self) -> bytes:
        header = struct.pack("<HBBIIIII", BTF_MAGIC, 1, 0, 24, 0, len(self.types), len(self.types),
                             len(self.strings))
        return header + bytes(self.types) + self.strings


def _fixture() -> Btf:
    b = _Builder()
    member = struct.Struct("<III")
    u8 = b.add(KIND_INT, "unsigned char", 1, extra=struct.pack("<I", 8))
    int_ = b.add(KIND_INT, "int", 4, extra=struct.pack("<I", 1 << 24 | 32))  # signed
    u64 = b.add(KIND_INT, "long long unsigned int", 8, extra=struct.pack("<I", 64))
    bool_ = b.add(KIND_INT, "_Bool", 1, extra=struct.pack("<I", 4 << 24 | 8))
    vu8 = b.add(KIND_VOLATILE, "", u8)
    u32 = b.add(KIND_TYPEDEF, "u32", 0)  # its target comes later, as in real BTF
    ptr = b.add(KIND_PTR, "", 0)  # void *
    arr = b.add(KIND_ARRAY, "", 0, extra=struct.pack("<III", u8, int_, 16))
    anon = b.add(KIND_UNION, "", 8, vlen=2,  # union { u64 cookie; int half; }
                 extra=member.pack(b.name("cookie"), u64, 0) + member.pack(b.name("half"), int_, 0))
    # struct common { volatile unsigned char state; reuse:4 and v6only:1 bitfields; union {...};
    #                 unsigned char addr[16]; void *next; }
    common = b.add(KIND_STRUCT, "common", 40, vlen=6, kind_flag=True,
                   extra=member.pack(b.name("state"), vu8, 0)
                   + member.pack(b.name("reuse"), u8, 4 << 24 | 8)
                   + member.pack(b.name("v6only"), u8, 1 << 24 | 13)
                   + member.pack(0, anon, 64)
                   + member.pack(b.name("addr"), arr, 128)
                   + member.pack(b.name("next"), ptr, 256))
    cconst = b.add(KIND_CONST, "", common)
    # struct sock { const struct common __sk_common; u32 sk_err; _Bool dead; }
    b.add(KIND_STRUCT, "sock", 48, vlen=3,
          extra=member.pack(b.name("__sk_common"), cconst, 0)
          + member.pack(b.name("sk_err"), u32, 320)
          + member.pack(b.name("dead"), bool_, 352))
    b.set_target(u32, int_)
    return Btf(b.blob())


class _Types:
    def __init__(self, btf: Btf) -> None:
        self.btf = btf

    def type(self, name: str) -> object:
        return self.btf.type(name)


def test_types_by_name_and_kind() -> None:
    btf = _fixture()
    assert len(btf) == 12
    sock = btf.type("struct sock")
    assert (sock.kind, sock.size, sock.name) == (TypeKind.STRUCT, 48, "sock")
    assert btf.type("u32").kind == TypeKind.TYPEDEF and btf.type("u32").unaliased().size == 4
    assert btf.type("_Bool").kind == TypeKind.BOOL
    with pytest.raises(LookupError):
        btf.type("struct nosuch")
    with pytest.raises(LookupError):
        btf.type("struct u32")  # a typedef is not a struct


def test_members_through_qualifiers_anonymous_unions_and_arrays() -> None:
    btf = _fixture()
    common = btf.type("struct sock").member("__sk_common").type
    assert common.unqualified().kind == TypeKind.STRUCT  # const struct common
    assert common.member("cookie").bit_offset == 64  # inside the anonymous union
    addr = common.member("addr").type
    assert addr.type is not None and addr.type.size == 1
    assert (addr.kind, addr.length, addr.size) == (TypeKind.ARRAY, 16, 16)
    nxt = common.member("next").type
    assert nxt.type is not None and nxt.type.kind == TypeKind.VOID
    assert (nxt.kind, nxt.size) == (TypeKind.POINTER, 8)
    with pytest.raises(LookupError):
        common.member("nosuch")


def test_fields_as_the_layout_code_reads_them() -> None:
    types = _Types(_fixture())
    assert field(types, "struct sock", "__sk_common.state") == Field(0, 1, False)
    assert field(types, "struct sock", "__sk_common.reuse") == Field(1, 1, False, 0, 4)
    assert field(types, "struct sock", "__sk_common.v6only") == Field(1, 1, False, 5, 1)
    assert field(types, "struct sock", "__sk_common.cookie") == Field(8, 8, False)
    assert field(types, "struct sock", "__sk_common.next") == Field(32, 8, False)
    assert field(types, "struct sock", "sk_err") == Field(40, 4, True)  # through the typedef
    assert field(types, "struct sock", "dead") == Field(44, 1, False)
    assert offset(types, "struct sock", "__sk_common.addr[3]") == 19


def test_not_btf_is_refused() -> None:
    with pytest.raises(BtfError):
        Btf(b"\0" * 64)
    with pytest.raises(BtfError):
        Btf(b"\x9f\xeb")
    blob = bytearray(_Builder().blob())
    struct.pack_into("<I", blob, 12, 1000)  # type_len past the end
    with pytest.raises(BtfError):
        Btf(bytes(blob))


def test_native_index_equals_python_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """drgn_ss._fast.btf_index indexes as the Python loop does (on the host kernel's BTF if any)."""
    from drgn_ss.kernel.native import native
    if native() is None:
        pytest.skip("drgn_ss._fast is not built")
    blobs = [_fixture().data]
    if os.path.exists("/sys/kernel/btf/vmlinux"):
        with open("/sys/kernel/btf/vmlinux", "rb") as f:
            blobs.append(f.read())
    for blob in blobs:
        fast = Btf(blob)
        monkeypatch.setenv("DRGN_SS_PURE_PYTHON", "1")
        slow = Btf(blob)
        monkeypatch.delenv("DRGN_SS_PURE_PYTHON")
        assert (fast.offsets, fast._named) == (slow.offsets, slow._named)
    truncated = bytearray(blobs[0])
    struct.pack_into("<I", truncated, 12, struct.unpack_from("<I", truncated, 12)[0] - 4)  # type_len - 4
    for pure in ("0", "1"):
        monkeypatch.setenv("DRGN_SS_PURE_PYTHON", pure)
        with pytest.raises(BtfError):
            Btf(bytes(truncated))


def _two_members(offsets: tuple[int, int], size: int = 8, bits: tuple[int, int] = (0, 0)) -> Btf:
    """struct pair { u32 a; u32 b; } with the members at these bit offsets (and bitfield sizes)."""
    b = _Builder()
    u32 = b.add(KIND_INT, "unsigned int", 4, extra=struct.pack("<I", 32))
    member = struct.Struct("<III")
    b.add(KIND_STRUCT, "pair", size, vlen=2, kind_flag=any(bits),
          extra=member.pack(b.name("a"), u32, bits[0] << 24 | offsets[0])
          + member.pack(b.name("b"), u32, bits[1] << 24 | offsets[1]))
    return Btf(b.blob())


def test_damaged_layouts_are_refused() -> None:
    """
    A member past its struct's end, or moved ahead of one declared before it (two members'
    offsets swapped): a BtfError naming it, not an offset to read at. Members swapped whole
    (names and all) look like a real layout: tests/test_facts.py shows they do not leave
    their dump.
    """
    assert _two_members((0, 32)).type("struct pair").member("b").bit_offset == 32
    assert _two_members((0, 4), size=4, bits=(4, 4)).type("struct pair").member("b").bit_offset == 4
    with pytest.raises(BtfError, match=r"pair's member b \(bits 64-96\) lies past its 8 bytes"):
        _two_members((0, 64)).type("struct pair").member("a")
    with pytest.raises(BtfError, match=r"pair's member b \(bit 0\) comes before the member declared ahead"):
        _two_members((32, 0)).type("struct pair").member("a")
    with pytest.raises(BtfError, match="lies past"):
        _two_members((0, 30), size=4, bits=(4, 4)).type("struct pair").member("b")
