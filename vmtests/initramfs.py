"""The guest's initramfs: Debian's static busybox, the kernel's modules and our ``init``.

Written directly in the cpio "newc" format (no cpio binary needed on the host).
"""

from __future__ import annotations

import io
import shutil
import stat
from pathlib import Path

from vmtests import VMTestError
from vmtests.kernels import Kernel

INIT_SCRIPT = Path(__file__).with_name("init.sh")


class CpioWriter:
    """Write a cpio archive in the "newc" format the kernel unpacks."""

    def __init__(self, out: io.BufferedIOBase | io.BytesIO) -> None:
        self.out = out
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        namebytes = name.encode() + b"\0"
        fields = [
            self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(namebytes), 0,
        ]
        self.ino += 1
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.out.write(header + namebytes)
        self.out.write(b"\0" * (-(len(header) + len(namebytes)) % 4))
        self.out.write(data)
        self.out.write(b"\0" * (-len(data) % 4))

    def directory(self, name: str, perm: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | perm)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def close(self) -> None:
        self._entry("TRAILER!!!", 0)


def find_busybox() -> Path:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        p = Path(candidate)
        if p.exists():
            return p
    found = shutil.which("busybox")
    if found:
        return Path(found)
    raise VMTestError("busybox not found: apt-get install busybox-static")


def build_initramfs(kernel: Kernel, dest: Path) -> Path:
    """Write the initramfs for ``kernel`` to ``dest``."""
    busybox = find_busybox()
    with open(dest, "wb") as f:
        w = CpioWriter(f)
        for d in ("bin", "dev", "proc", "sys", "newroot", "modules"):
            w.directory(d)
        w.chardev("dev/console", 5, 1)
        w.chardev("dev/null", 1, 3, 0o666)
        w.file("bin/busybox", busybox.read_bytes(), 0o755)
        w.symlink("bin/sh", "busybox")
        w.file("init", INIT_SCRIPT.read_bytes(), 0o755)
        w.file("modules/order", "".join(f"{m}\n" for m in kernel.modules).encode())
        for m in kernel.modules:
            w.file(f"modules/{m}.ko", kernel.module_path(m).read_bytes())
        w.close()
    return dest
