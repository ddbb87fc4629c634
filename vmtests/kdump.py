"""Reassemble makedumpfile's "flattened" format into a plain kdump-compressed file.

QEMU's ``dump-guest-memory`` with a ``kdump-*`` format writes the flattened
stream (as ``makedumpfile -F`` does): a 4096-byte header starting with the
signature ``makedumpfile``, then records of (offset, size) as big-endian 64-bit
integers, each followed by ``size`` bytes to be written at ``offset``, ended by
a record of (-1, -1). ``makedumpfile -R`` turns it into the ordinary file that
crash and drgn open without extra options; :func:`unflatten` does the same.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from vmtests import VMTestError

SIGNATURE = b"makedumpfile"
HEADER_SIZE = 4096
_RECORD = struct.Struct(">qq")


def is_flattened(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(SIGNATURE)) == SIGNATURE


def unflatten_stream(src: BinaryIO, dst: BinaryIO) -> int:
    """Copy a flattened stream into ``dst`` (a seekable file); return the records written."""
    header = src.read(HEADER_SIZE)
    if len(header) != HEADER_SIZE or not header.startswith(SIGNATURE):
        raise VMTestError("not a flattened makedumpfile stream")
    count = 0
    while True:
        raw = src.read(_RECORD.size)
        if len(raw) != _RECORD.size:
            raise VMTestError("flattened dump is truncated (no end marker)")
        offset, size = _RECORD.unpack(raw)
        if offset == -1 and size == -1:
            return count
        if offset < 0 or size < 0:
            raise VMTestError(f"flattened dump has a bad record ({offset}, {size})")
        dst.seek(offset)
        while size:
            chunk = src.read(min(size, 1 << 20))
            if not chunk:
                raise VMTestError("flattened dump is truncated inside a record")
            dst.write(chunk)
            size -= len(chunk)
        count += 1


def unflatten(src: Path, dst: Path) -> None:
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        unflatten_stream(fi, fo)
