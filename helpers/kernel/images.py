"""Memory images: an ELF core file's physical memory, mapped, and a QEMU guest's RAM,
mapped from the QEMU process; build IDs of ELF files.
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
from collections.abc import Callable

__all__ = [
    "ElfImage", "KcoreImage", "PhysicalImage", "QemuImage", "elf_build_id", "elf_file_bytes",
    "elf_program_headers", "qemu_ram_ranges",
]


class PhysicalImage:
    """
    Where a program's physical memory can be read without drgn: sorted segments of
    physical addresses [starts[i], ends[i]) found at offsets[i] onwards in a mapped
    file (:attr:`map`) or in a file read with pread() (:attr:`fd`).
    """

    def __init__(self, segments: list[tuple[int, int, int]]) -> None:
        segments.sort()
        self.starts = [s[0] for s in segments]
        self.ends = [s[1] for s in segments]
        self.offsets = [s[2] for s in segments]
        #: The mapped file, or None.
        self.map: mmap.mmap | None = None
        #: A file descriptor to pread(), or -1.
        self.fd = -1

    def for_direct_map(self, lo: int) -> PhysicalImage:
        """This image as it serves a direct map starting at virtual ``lo`` (the same, but for /proc/kcore)."""
        return self

    def _read_at(self, offset: int, size: int) -> bytes | None:
        if self.map is not None:
            return self.map[offset : offset + size]
        try:
            data = os.pread(self.fd, size, offset)
        except OSError:
            return None
        return data if len(data) == size else None

    def reader(self, fallback: Callable[[int, int], bytes]) -> Callable[[int, int], bytes]:
        """``read(phys, size)``: from the image where one segment holds it all, else ``fallback``."""
        starts, ends, offsets, read_at = self.starts, self.ends, self.offsets, self._read_at
        find = bisect.bisect_right

        def read(phys: int, size: int) -> bytes:
            i = find(starts, phys) - 1
            if i >= 0 and phys + size <= ends[i]:
                data = read_at(offsets[i] + phys - starts[i], size)
                if data is not None:
                    return data
            return fallback(phys, size)

        return read


def elf_program_headers(data: bytes | mmap.mmap) -> list[tuple[int, int, int, int]]:
    """
    (p_type, p_offset, p_paddr, p_filesz) of each program header of a little-endian ELF64
    file, given its bytes (or a mapping of them).

    :raises ValueError: if it is not one
    """
    head = data[:64]
    if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        raise ValueError("is not a little-endian ELF64 file")
    phoff, = struct.unpack_from("<Q", head, 32)
    phentsize, phnum = struct.unpack_from("<HH", head, 54)
    if phnum and (phentsize < 40 or phoff + phnum * phentsize > len(data)):
        raise ValueError("has program headers past its end (cut short?)")
    out = []
    for i in range(phnum):
        p_type, _flags, offset, _vaddr, paddr, filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize)
        out.append((p_type, offset, paddr, filesz))
    return out


def elf_file_bytes(path: str, address: int, size: int) -> bytes | None:
    """
    ``size`` bytes at virtual address ``address`` as an ELF64 file (a vmlinux) holds them in
    its PT_LOAD segments: a variable's initial value, as built. None if the file does not
    hold them (an address in .bss, a file without the segment, not ELF).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return None
            phoff, = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            for i in range(phnum):
                p_type, _flags, offset, vaddr, _paddr, filesz = struct.unpack_from(
                    "<IIQQQQ", table, i * phentsize)
                if p_type == 1 and vaddr <= address and address + size <= vaddr + filesz:  # PT_LOAD
                    f.seek(offset + address - vaddr)
                    data = f.read(size)
                    return data if len(data) == size else None
    except (OSError, ValueError, struct.error):
        pass
    return None


def elf_build_id(path: str) -> str | None:
    """The GNU build ID of an ELF file (a vmlinux), from its PT_NOTE segments; None if none is found."""
    try:
        with open(path, "rb") as f:
            data = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        with data:
            for p_type, offset, _paddr, filesz in elf_program_headers(data):
                if p_type != 4 or filesz > 1 << 20:  # PT_NOTE
                    continue
                notes, pos = data[offset : offset + filesz], 0
                while pos + 12 <= len(notes):
                    namesz, descsz, kind = struct.unpack_from("<III", notes, pos)
                    name_at = pos + 12
                    desc_at = name_at + (namesz + 3) // 4 * 4
                    if kind == 3 and notes[name_at : name_at + namesz] == b"GNU\0":  # NT_GNU_BUILD_ID
                        return notes[desc_at : desc_at + descsz].hex()
                    pos = desc_at + (descsz + 3) // 4 * 4
    except (OSError, ValueError, struct.error):
        pass
    return None


class ElfImage(PhysicalImage):
    """
    The physical memory an ELF core file holds (its PT_LOAD segments), mapped into this
    process: a read is a slice of the file's pages, with no call into drgn.
    """

    def __init__(self, path: str) -> None:
        with open(path, "rb") as f:
            data = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        try:
            headers = elf_program_headers(data)
        except ValueError as e:
            raise ValueError(f"{path} {e}") from None
        segments = []
        #: Bytes of memory the file's segments describe but it does not hold: a dump cut short.
        self.missing = 0
        for p_type, offset, paddr, filesz in headers:
            if p_type != 1 or not filesz:  # PT_LOAD
                continue
            if offset + filesz <= len(data):
                segments.append((paddr, paddr + filesz, offset))
            else:  # left to drgn, which reads what there is
                self.missing += offset + filesz - max(offset, len(data))
        super().__init__(segments)
        self.map = data


class KcoreImage(PhysicalImage):
    """
    The running kernel's RAM as /proc/kcore holds it (its KCORE_RAM PT_LOAD segments: the
    direct map, each with the physical address it maps), read with pread() by the C walks
    rather than through drgn, a Python call a read (fs/proc/kcore.c has no mmap). Memory
    checks its first read against drgn's, as for the other images.
    """

    def __init__(self, path: str = "/proc/kcore") -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            head = os.pread(fd, 64, 0)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                raise ValueError(f"{path} is not a little-endian ELF64 file")
            phoff, = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            if phentsize < 56 or phnum > 1 << 16:
                raise ValueError(f"{path} has no program headers that can be read")
            table = os.pread(fd, phentsize * phnum, phoff)
        except BaseException:
            os.close(fd)
            raise
        #: (physical start, end, file offset, virtual address) of each RAM segment.
        self.ram: list[tuple[int, int, int, int]] = []
        for i in range(len(table) // phentsize):
            p_type, _flags, offset, vaddr, paddr, filesz = struct.unpack_from("<IIQQQQ", table, i * phentsize)
            if p_type == 1 and filesz and paddr != (1 << 64) - 1:  # PT_LOAD with a physical address
                self.ram.append((paddr, paddr + filesz, offset, vaddr))
        super().__init__([(start, end, offset) for start, end, offset, _vaddr in self.ram])
        self.fd = fd

    def for_direct_map(self, lo: int) -> PhysicalImage:
        """Only the direct map's segments from ``lo`` (not the kernel text's: the same pages elsewhere)."""
        image = PhysicalImage([(start, end, offset) for start, end, offset, vaddr in self.ram
                               if vaddr == lo + start])
        image.fd = self.fd
        return image


class QemuImage(PhysicalImage):
    """
    A running QEMU guest's RAM: QEMU tells over QMP where each range of guest RAM is in
    its address space (``info mtree -f``, ``gpa2hva``; asked before drgn connects: a QMP
    socket serves one client at a time). Where that is a shared file mapping (a memfd, as
    virtiofs needs), the file is mapped here too and a read is a copy; else reads go
    through the QEMU process's memory (/proc/PID/mem), as ``drgn --qemu`` reads it.

    :raises OSError: if QEMU cannot be asked, or its memory cannot be opened
    :raises ValueError: if QEMU's answers are not understood
    """

    def __init__(self, qmp_path: str, timeout: float = 5.0) -> None:
        import json
        import socket  # only here: the module costs start-up

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(qmp_path)
            pid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
            replies = sock.makefile("rb")

            def execute(command: str, **arguments: str) -> object:
                request: dict[str, object] = {"execute": command}
                if arguments:
                    request["arguments"] = arguments
                sock.sendall(json.dumps(request).encode() + b"\n")
                while True:
                    line = replies.readline()
                    if not line:
                        raise OSError("QMP connection closed")
                    reply = json.loads(line)
                    if "return" in reply:
                        return reply["return"]
                    if "error" in reply:
                        raise ValueError(f"QMP {command}: {reply['error']}")

            replies.readline()  # the greeting
            execute("qmp_capabilities")
            segments = []
            for start, end in qemu_ram_ranges(str(execute("human-monitor-command",
                                                          **{"command-line": "info mtree -f"}))):
                answer = str(execute("human-monitor-command", **{"command-line": f"gpa2hva {start:#x}"}))
                # "Host virtual address for 0x100000 (pc.ram) is 0x7f5e0c100000"
                if answer.startswith("Host virtual address for ") and ") is " in answer:
                    segments.append((start, end, int(answer.rsplit(" is ", 1)[1].split()[0], 16)))
        if not segments or pid <= 0:
            raise ValueError("QEMU gave no guest RAM ranges")
        shared = _shared_mapping(pid, segments)
        if shared is not None:  # guest RAM in a file QEMU maps shared (memfd): map it too
            data, start = shared
            super().__init__([(first, last, hva - start) for first, last, hva in segments])
            self.map = data
        else:  # read through QEMU's memory, a system call a read
            super().__init__(segments)
            self.fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)


def _shared_mapping(pid: int, segments: list[tuple[int, int, int]]) -> tuple[mmap.mmap, int] | None:
    """
    If the host addresses of these (start, end, hva) segments all fall in one shared file
    mapping of process ``pid`` (QEMU's ``memory-backend-memfd,share=on``, or a file backend),
    that file mapped here, read-only, and the mapping's start in ``pid``; else None.
    """
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                fields = line.split()
                start, end = (int(x, 16) for x in fields[0].split("-"))
                if not all(start <= hva and hva + last - first <= end for first, last, hva in segments):
                    continue
                if len(fields) < 6 or fields[1][3] != "s":
                    return None
                fd = os.open(f"/proc/{pid}/map_files/{fields[0]}", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    return mmap.mmap(fd, end - start, mmap.MAP_SHARED, mmap.PROT_READ,
                                     offset=int(fields[2], 16)), start
                finally:
                    os.close(fd)
    except (OSError, ValueError):
        pass
    return None


def qemu_ram_ranges(mtree: str) -> list[tuple[int, int]]:
    """
    The [start, end) guest-physical ranges of RAM in QEMU's ``info mtree -f`` text: the
    "ram" regions of the flat view of the "memory" address space.
    """
    ranges = []
    in_memory = in_regions = False
    for line in mtree.splitlines():
        text = line.strip()
        if line.startswith("FlatView"):
            if in_memory:
                break
            continue
        if text.startswith('AS "memory"'):
            in_memory = True
        elif text.startswith("Root memory region:"):
            in_regions = in_memory
        elif in_regions and "-" in text and "(prio" in text:
            span, _, rest = text.partition(" ")
            kind = rest.split(",", 1)[1].split(")", 1)[0].strip() if "," in rest else ""
            if kind in ("ram", "nv-ram"):
                first, last = span.split("-")
                ranges.append((int(first, 16), int(last, 16) + 1))
    return ranges
