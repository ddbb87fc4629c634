"""drgn_ss.kernel.images.KcoreImage on a file laid out as /proc/kcore is (fs/proc/kcore.c)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from drgn_ss.kernel.images import KcoreImage

PAGE_OFFSET = 0xFFFF888000000000
TEXT = 0xFFFFFFFF81000000


def _kcore(path: Path, segments: list[tuple[int, int, int, bytes]]) -> None:
    """An ELF64 core with a PT_NOTE and a PT_LOAD (p_type, vaddr, paddr, data) each."""
    phoff, phnum = 64, len(segments) + 1
    data_at = phoff + 56 * phnum
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 32, phoff)
    struct.pack_into("<HH", header, 54, 56, phnum)
    phdrs, blobs, offset = [struct.pack("<IIQQQQQQ", 4, 0, 0, 0, 0, 0, 0, 0)], b"", data_at
    for p_type, vaddr, paddr, blob in segments:
        phdrs.append(struct.pack("<IIQQQQQQ", p_type, 7, offset, vaddr, paddr, len(blob), len(blob), 4096))
        blobs += blob
        offset += len(blob)
    path.write_bytes(bytes(header) + b"".join(phdrs) + blobs)


def test_kcore_ram_is_read_by_physical_address_through_the_direct_map(tmp_path: Path) -> None:
    ram0, ram1, text = b"a" * 4096, b"b" * 8192, b"t" * 4096
    _kcore(tmp_path / "kcore", [
        (1, TEXT, 0x1000000, text),                      # the kernel text: the same pages elsewhere
        (1, PAGE_OFFSET + 0x100000, 0x100000, ram0),     # KCORE_RAM
        (1, PAGE_OFFSET + 0x200000, 0x200000, ram1),
        (1, 0xFFFFC90000000000, (1 << 64) - 1, b"v" * 4096),  # vmalloc: no physical address
    ])
    image = KcoreImage(str(tmp_path / "kcore"))
    assert image.fd >= 0 and len(image.starts) == 3
    direct = image.for_direct_map(PAGE_OFFSET)
    assert (direct.starts, direct.ends) == ([0x100000, 0x200000], [0x101000, 0x202000])
    read = direct.reader(lambda phys, size: b"?" * size)
    assert read(0x100010, 4) == b"aaaa" and read(0x201ffe, 2) == b"bb"
    assert read(0x101ffe, 4) == b"????"  # past a segment's end: the fallback (drgn)
    assert direct.fd == image.fd


def test_a_file_that_is_not_kcore_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"not an ELF file" * 10)
    with pytest.raises(ValueError):
        KcoreImage(str(tmp_path / "x"))
    with pytest.raises(OSError):
        KcoreImage(str(tmp_path / "missing"))
