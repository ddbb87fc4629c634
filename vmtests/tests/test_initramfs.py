"""The cpio writer, read back by a real cpio implementation (busybox)."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest

from vmtests.initramfs import CpioWriter


def archive() -> bytes:
    buf = io.BytesIO()
    w = CpioWriter(buf)
    w.directory("bin")
    w.file("bin/hello", b"#!/bin/sh\necho hi\n", 0o755)
    w.file("odd", b"x" * 5)  # sizes that need padding
    w.symlink("bin/sh", "busybox")
    w.chardev("dev-console", 5, 1)
    w.close()
    return buf.getvalue()


def test_newc_layout() -> None:
    data = archive()
    assert data.startswith(b"070701")
    assert len(data) % 4 == 0
    assert b"TRAILER!!!\0" in data


@pytest.mark.skipif(not shutil.which("busybox"), reason="busybox not installed")
def test_busybox_cpio_lists_and_extracts(tmp_path: Path) -> None:
    data = archive()
    listing = subprocess.run(["busybox", "cpio", "-t"], input=data, capture_output=True, check=True)
    assert listing.stdout.decode().split() == ["bin", "bin/hello", "odd", "bin/sh", "dev-console"]
    verbose = subprocess.run(["busybox", "cpio", "-tv"], input=data, capture_output=True, check=True)
    lines = verbose.stdout.decode().splitlines()
    assert lines[1].startswith("-rwxr-xr-x")
    assert lines[3].startswith("lrwxrwxrwx") and lines[3].endswith("bin/sh -> busybox")
    assert lines[4].startswith("crw-------")
    subprocess.run(["busybox", "cpio", "-i", "-d"], input=data, cwd=tmp_path, check=True,
                   capture_output=True)
    assert (tmp_path / "bin/hello").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (tmp_path / "odd").read_bytes() == b"xxxxx"
