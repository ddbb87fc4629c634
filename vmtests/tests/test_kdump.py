"""Reassembling makedumpfile's flattened format."""

from __future__ import annotations

import io
import struct

import pytest

from vmtests import VMTestError
from vmtests.kdump import HEADER_SIZE, SIGNATURE, unflatten_stream


def flattened(records: list[tuple[int, bytes]], end: bool = True) -> bytes:
    out = bytearray(SIGNATURE + b"\0" * 4 + struct.pack(">qq", 1, 1))
    out += b"\0" * (HEADER_SIZE - len(out))
    for offset, data in records:
        out += struct.pack(">qq", offset, len(data)) + data
    if end:
        out += struct.pack(">qq", -1, -1)
    return bytes(out)


def test_records_land_at_their_offsets_in_any_order() -> None:
    src = io.BytesIO(flattened([(8, b"world"), (0, b"hello, "), (20, b"!" * 3)]))
    dst = io.BytesIO()
    assert unflatten_stream(src, dst) == 3
    assert dst.getvalue() == b"hello, \0world" + b"\0" * 7 + b"!!!"


def test_later_records_overwrite_earlier_ones() -> None:
    dst = io.BytesIO()
    unflatten_stream(io.BytesIO(flattened([(0, b"aaaa"), (1, b"bb")])), dst)
    assert dst.getvalue() == b"abba"


def test_truncated_stream_is_an_error() -> None:
    data = flattened([(0, b"hello")], end=False)
    with pytest.raises(VMTestError, match="truncated"):
        unflatten_stream(io.BytesIO(data), io.BytesIO())
    with pytest.raises(VMTestError, match="truncated"):
        unflatten_stream(io.BytesIO(data[:-2]), io.BytesIO())


def test_not_flattened_is_an_error() -> None:
    with pytest.raises(VMTestError, match="not a flattened"):
        unflatten_stream(io.BytesIO(b"KDUMP   " + b"\0" * 5000), io.BytesIO())
