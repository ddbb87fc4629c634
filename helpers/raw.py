"""Offsets resolved once, values decoded from raw bytes: the fast way to read many structs.

Reading a member through a drgn Object costs microseconds; reading a struct's
bytes once with ``prog.read()`` and unpacking integers at known offsets costs
far less. :func:`field` resolves a member path of a type (through anonymous
unions, nested structs and bitfields) to a :class:`Field` that decodes it from
a buffer.
"""

from __future__ import annotations

import bisect
import json
import mmap
import operator
import os
import struct
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import NamedTuple

from drgn import FaultError, Program, Type, TypeKind

try:
    from drgn_ss import _fast
except ImportError as e:  # not built (no compiler at install time): the Python paths do it all
    _fast = None  # type: ignore[assignment]
    #: Why a module that is there does not load (one of another Python, say).
    _fast_error = "" if isinstance(e, ModuleNotFoundError) else str(e)
else:
    _fast_error = ""

#: What the install recorded of the C part (helpers/build_fast.py, at build time).
BUILD_RECORD = "_build.json"


def native() -> ModuleType | None:
    """
    :mod:`drgn_ss._fast`, the hot loops in C, if it is built and DRGN_SS_PURE_PYTHON is
    not set to 1; else None, and callers take their Python path (the reference).
    """
    return _fast if os.environ.get("DRGN_SS_PURE_PYTHON", "") in ("", "0") else None


class NativeBuild(NamedTuple):
    """Whether :mod:`drgn_ss._fast` was built, and whether it loads."""

    #: Whether the install built it (where it recorded nothing, a checkout: whether it loads).
    built: bool
    #: Whether it imports (then it runs, unless DRGN_SS_PURE_PYTHON=1: :func:`native`).
    loaded: bool
    #: Why it was not built (the install's record: what was missing, or the compiler's first
    #: error), or why it does not load; "" where nothing says.
    reason: str


def native_build(directory: str | None = None) -> NativeBuild:
    """
    What became of the C part: the record the install left beside the package's modules
    (``drgn_ss/_build.json``: ``{"native": false, "reason": "..."}``), and whether
    :mod:`drgn_ss._fast` imports. A checkout (an editable install) has no record.

    :param directory: where the record is; by default, this package's directory
    """
    path = os.path.join(directory or os.path.dirname(os.path.abspath(__file__)), BUILD_RECORD)
    try:
        with open(path, "rb") as f:
            record = json.loads(f.read(1 << 16))
    except (OSError, ValueError):
        record = None
    loaded = _fast is not None
    if not isinstance(record, dict) or not isinstance(record.get("native"), bool):
        return NativeBuild(loaded, loaded, "" if loaded else _fast_error)
    built = record["native"]
    reason = record.get("reason") if not built else _fast_error
    return NativeBuild(built, loaded, " ".join(str(reason or "").split()))


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


#: The most one read may ask for (a bucket array, an fd array): more is taken for damage (a
#: mask or count read from a damaged dump), refused as a fault rather than allocated.
MAX_READ_BYTES = 1 << 28


def checked_reader(read: Callable[..., bytes]) -> Callable[..., bytes]:
    """
    ``read`` (drgn's ``Program.read``) for addresses that came from kernel memory: one that
    is not a 64-bit address (a damaged pointer less an offset) or a size past
    :data:`MAX_READ_BYTES` raise :class:`FaultError`, as an unreadable address does, instead
    of OverflowError or MemoryError.
    """
    def checked(addr: int, size: int, *physical: bool) -> bytes:
        if not (0 <= addr < 1 << 64 and 0 <= size <= MAX_READ_BYTES):
            raise FaultError(f"not a readable span: {size} bytes at {addr:#x}", addr & (1 << 64) - 1)
        return read(addr, size, *physical)

    return checked


class Memory:
    """
    Read kernel memory fast. An address in the direct map is read by its physical
    address, which spares drgn a page-table walk per read (about half the cost of a
    small read); if physical reads do not work for this program, virtual ones are used.
    With an image of the program's physical memory (the ELF core file it reads, mapped;
    a QEMU guest's RAM in the QEMU process), physical reads skip drgn.

    :param direct_map: the direct map's [start, end) virtual addresses, if known.
    :param image: the program's core file, mapped.
    """

    def __init__(self, prog: Program, direct_map: tuple[int, int] | None,
                 image: PhysicalImage | None = None) -> None:
        self.prog = prog
        self.image = image
        self.lo, self.hi = direct_map or (0, 0)
        #: drgn's read, for addresses that may be damaged (see :func:`checked_reader`).
        self._read = checked_reader(prog.read)
        #: ``read(addr, size) -> bytes``. Until a direct-map read shows whether physical reads
        #: work, the probing method; then a lean function for the hot loops (chain walks,
        #: fd arrays) to call without a method's overhead.
        self.read: Callable[[int, int], bytes] = self._probe if self.hi else self._read
        #: ``image``, once a read showed that it holds the direct map's pages.
        self.mapped: PhysicalImage | None = None

    def native(self) -> tuple[object, ...]:
        """
        How :mod:`drgn_ss._fast` reads this memory: the image's mapping or file descriptor
        and its segments (physical addresses) with the direct map's bounds, or None; and
        :attr:`read` for everything else.
        """
        image = self.mapped
        if image is None:
            return (None, -1, [], [], [], 0, 0, self.read, FaultError)
        return (image.map, image.fd, image.starts, image.ends, image.offsets, self.lo, self.hi,
                self.read, FaultError)

    def _probe(self, addr: int, size: int) -> bytes:
        read = self._read
        if not self.lo <= addr < self.hi:
            return read(addr, size)
        try:
            data = read(addr - self.lo, size, True)
        except (FaultError, ValueError, OverflowError):
            # Do physical reads work at all here? If the virtual read works, they do not.
            data = read(addr, size)  # raises if the page is really not there: probe again
            self.lo = self.hi = 0
            self.read = read
            return data
        lo, hi = self.lo, self.hi

        def drgn_physical(phys: int, size: int) -> bytes:
            return read(phys, size, True)

        physical: Callable[[int, int], bytes] = drgn_physical
        image = self.image
        if image is not None and image.reader(lambda phys, size: b"")(addr - lo, size) == data:
            physical = image.reader(drgn_physical)  # what drgn reads, and it maps as assumed
            self.mapped = image

        def direct(addr: int, size: int) -> bytes:
            return physical(addr - lo, size) if lo <= addr < hi else read(addr, size)

        self.read = direct
        return data

    @property
    def probing(self) -> bool:
        """Whether it is not yet known how the direct map is read (no read there has worked)."""
        return self.read == self._probe

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def read_u32(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little")

    def read_some(self, addr: int, size: int, least: int) -> bytes:
        """``size`` bytes at ``addr`` or, if that reaches a missing page, ``least``."""
        try:
            return self.read(addr, size)
        except FaultError:
            return self.read(addr, least)


def list_nodes(mem: Memory, head: int, limit: int, what: str, backwards: bool = False) -> Iterator[int]:
    """
    The addresses of the nodes of a circular kernel list (``struct list_head``), after
    ``head`` (``next`` pointers; ``prev`` with ``backwards``). A node met twice (a loop
    that does not come back to the head: a freed node reused) or more than ``limit``
    nodes is damage.

    :raises FaultError: if a node cannot be read, the list loops, or it is too long
    """
    step = 8 if backwards else 0  # struct list_head { next, prev }
    seen: set[int] = set()
    pos = mem.read_u64(head + step)
    while pos != head:
        if pos in seen:
            raise FaultError(f"{what} loops back: a freed node?", pos)
        if len(seen) >= limit:
            raise FaultError(f"{what} longer than the kernel could hold: a loop?", pos)
        after = mem.read_u64(pos + step)  # a node that cannot be read is not yielded
        seen.add(pos)
        yield pos
        pos = after


def list_reachable(mem: Memory, head: int, limit: int, what: str) -> tuple[list[int], FaultError | None]:
    """
    Every node of a circular kernel list that can be reached from ``head``: forwards, and
    where that breaks (a node that cannot be read, a loop), backwards from the head too, up
    to the nodes already found. Each node once, in list order as far as it is known.

    :return: the nodes' addresses, and the first fault met (None: the list was whole)
    """
    forwards: list[int] = []
    try:
        for pos in list_nodes(mem, head, limit, what):
            forwards.append(pos)
        return forwards, None
    except FaultError as e:
        fault = e
    known = set(forwards)
    backwards: list[int] = []
    try:
        for pos in list_nodes(mem, head, limit, what, backwards=True):
            if pos in known:
                break
            backwards.append(pos)
    except FaultError:
        pass  # the first fault stands for the break
    return forwards + backwards[::-1], fault


def read_c_string(mem: Memory, addr: int, limit: int = 4096) -> bytes:
    """
    The NUL-terminated string at ``addr`` (a ``char *``'s target), read a page at most at
    a time so that no read reaches past the page the string ends in; at most ``limit`` bytes.

    :raises FaultError: if it cannot be read
    """
    out = b""
    while len(out) < limit:
        size = min(4096 - (addr + len(out)) % 4096, limit - len(out))
        chunk = mem.read(addr + len(out), size)
        end = chunk.find(b"\0")
        if end >= 0:
            return out + chunk[:end]
        out += chunk
    return out


def c_string(buf: bytes, start: int, size: int, errors: str = "replace") -> str:
    """
    The NUL-terminated string in a ``char[size]`` at ``start`` (a task's comm, a device's
    name), decoded from UTF-8 with ``errors`` ("surrogateescape" keeps every byte).
    """
    return buf[start : start + size].split(b"\0", 1)[0].decode(errors=errors)


def s32(value: int) -> int:
    """``value`` wrapped to a C ``int`` (32 bits, signed): what ``%d`` prints of a u32."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >> 31 else value
