"""
Kernel symbol addresses without debug info: the kernel's own symbol table (kallsyms).

Two sources: the compressed tables in kernel memory, which VMCOREINFO locates from
Linux 6.0 on (dumps, QEMU guests, and the live kernel through /proc/kcore), and
/proc/kallsyms's text (the live local kernel, any version).

drgn can load the tables too (``drgn.helpers.linux.kallsyms``), but it reads
``kallsyms_names`` a byte at a time and indexes all ~150,000 names: 1 s in a TCG guest,
against ~0.05 s to read the tables in one piece and look for the dozen names drgn-ss
reads (:data:`SYMBOLS`) in one pass (in C, ``drgn_ss._fast.kallsyms_find``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

from drgn import BadDataError, FaultError
from drgn_ss.kernel.native import native

__all__ = [
    "Finder", "KallsymsError", "MemoryKallsyms", "Reader", "SYMBOLS", "TABLES", "find_names",
    "proc_kallsyms",
]

#: The kernel variables drgn-ss reads, found together in one pass over kallsyms: a name
#: not listed here is found too, at the cost of another pass (tests/test_kallsyms.py
#: checks the helpers ask for no other).
SYMBOLS = (
    "__cpu_possible_mask", "__per_cpu_offset", "__start_BTF", "__stop_BTF", "btf_modules", "cgrp_dfl_root",
    "clocksource_jiffies", "init_net", "modules", "init_pid_ns", "init_task", "jiffies_64", "max_pfn",
    "net_namespace_list", "nr_cpu_ids", "page_offset_base", "panic_cpu",
    "raw_prot", "rawv6_prot", "socket_file_ops", "tcp_orphan_count", "tcp_prot", "tcpv6_prot",
    "sysctl_tcp_max_orphans", "sysctl_tcp_mem", "sysctl_udp_mem", "tcp_memory_allocated",
    "tcp_memory_pressure", "udp_memory_allocated", "net_aligned_data",
    "timekeeper_data", "tk_core",
    "netlink_data_ready", "nl_table", "raw_v4_hashinfo", "raw_v6_hashinfo", "sock_def_readable",
    "subflow_ulp_ops", "token_hash", "token_mask",
    "udp_prot", "udp_table", "udpv6_prot",
    "unix_socket_table",
)

#: The tables VMCOREINFO locates (``SYMBOL(name)=address``), Linux 6.0+.
TABLES = ("kallsyms_names", "kallsyms_num_syms", "kallsyms_token_table", "kallsyms_token_index",
          "kallsyms_offsets", "kallsyms_relative_base", "kallsyms_addresses", "_stext")

Reader = Callable[[int, int], bytes]
Finder = Callable[[str], "int | None"]


class KallsymsError(LookupError):
    """The kallsyms tables cannot be read or make no sense."""


def find_names(names: bytes, count: int, token_table: bytes, token_index: bytes, long_names: bool,
               wanted: Sequence[bytes]) -> list[tuple[int, str] | None]:
    """
    One pass over ``kallsyms_names``: for each wanted name, the index and type letter of
    the first symbol of that name, or None (``drgn_ss._fast.kallsyms_find`` in C).

    :param names: the compressed names: per symbol, a token count (one byte, or two when
        ``long_names`` and the first has its top bit set: Linux 6.1+), then the tokens
    :param count: ``kallsyms_num_syms``
    :param token_table: the tokens, NUL-terminated, one after another
    :param token_index: 256 little-endian u16 offsets of the tokens in ``token_table``
    :raises ValueError: if ``names`` ends inside a symbol
    """
    fast = native()
    if fast is not None:
        return fast.kallsyms_find(names, count, token_table, token_index, long_names, tuple(wanted))
    tokens = [token_table[o : token_table.index(b"\0", o)] for o in struct.unpack_from("<256H", token_index)]
    want = {name: i for i, name in reversed(list(enumerate(wanted)))}
    found: list[tuple[int, str] | None] = [None] * len(wanted)
    left, pos = len(want), 0
    for i in range(count):
        if not left:
            break
        if pos >= len(names):
            raise ValueError("kallsyms_names ends inside a symbol")
        length = names[pos]
        pos += 1
        if length & 0x80 and long_names:
            if pos >= len(names):
                raise ValueError("kallsyms_names ends inside a symbol")
            length = length & 0x7F | names[pos] << 7
            pos += 1
        if pos + length > len(names):
            raise ValueError("kallsyms_names ends inside a symbol")
        name = b"".join([tokens[t] for t in names[pos : pos + length]])
        pos += length
        at = want.get(name[1:])
        if at is not None and found[at] is None:
            found[at] = (i, chr(name[0]))
            left -= 1
    return found


class MemoryKallsyms:
    """
    Symbol addresses from the kallsyms tables in kernel memory that VMCOREINFO points
    to (Linux 6.0+). Call it with a name: the address, or None. The first call looks
    for every name of :data:`SYMBOLS` as well.
    """

    def __init__(self, read: Reader, info: dict[str, str]) -> None:
        """
        :param read: reads ``size`` bytes of kernel memory at an address
        :param info: the kernel's VMCOREINFO (``SYMBOL(...)``, ``OSRELEASE``)
        :raises KallsymsError: if VMCOREINFO does not locate the tables or they cannot be read
        """
        self.read = read
        try:
            self.at = {name: int(info.get(f"SYMBOL({name})", "0"), 16) for name in TABLES}
        except ValueError:
            raise KallsymsError("VMCOREINFO locates the kallsyms tables at an address that is not "
                                "a number") from None
        if not all(self.at[n] for n in ("kallsyms_names", "kallsyms_num_syms", "kallsyms_token_table",
                                       "kallsyms_token_index", "_stext")):
            raise KallsymsError("no kallsyms: VMCOREINFO locates them from Linux 6.0 on")
        # Linux 6.1 (73bbb94466fd "kallsyms: support big kernel symbols") lets a name's
        # token count take two bytes, with nothing in memory to say so: as drgn does, by
        # release. Only names of 128 tokens or more read differently, and the search
        # for _stext's address below checks the result.
        release = info.get("OSRELEASE", "")
        self.long_names = not release.startswith(("6.0.", "6.0-")) and release != "6.0"
        try:
            self.count = struct.unpack("<I", read(self.at["kallsyms_num_syms"], 4))[0]
            self.token_index = read(self.at["kallsyms_token_index"], 512)
            last = max(struct.unpack("<256H", self.token_index))
            table = read(self.at["kallsyms_token_table"], last + 256)
            end = table.find(b"\0", last)
            if end < 0:
                raise KallsymsError("kallsyms token table not terminated")
            self.token_table = table[: end + 1]
            self.names = read(self.at["kallsyms_names"], self._names_bound())
        except (FaultError, BadDataError, OSError, ValueError, struct.error) as e:
            raise KallsymsError(f"cannot read the kallsyms tables ({e})") from None
        self.addresses: dict[str, int | None] = {}
        self._decode: Callable[[int], int] | None = None

    def _names_bound(self) -> int:
        """How much to read of kallsyms_names: up to the next table above it (the tables
        lie together in .rodata, in an order that changed between versions)."""
        start = self.at["kallsyms_names"]
        above = [a for n, a in self.at.items() if a > start and n != "_stext"]
        return min(above) - start if above and min(above) - start < 1 << 26 else 16 << 20

    def __call__(self, name: str) -> int | None:
        if name not in self.addresses:
            wanted = [name] + [n for n in SYMBOLS if n not in self.addresses and n != name]
            if self._decode is None:
                wanted.append("_stext")
            try:
                found = find_names(self.names, self.count, self.token_table, self.token_index,
                                   self.long_names, [n.encode() for n in wanted])
                if self._decode is None:
                    stext = found.pop()
                    if stext is None:
                        raise KallsymsError("no _stext in kallsyms")
                    self._decode = self._address_decoder(stext[0])
                for n, hit in zip(wanted, found):
                    self.addresses[n] = None if hit is None else self._decode(hit[0])
            except (FaultError, BadDataError, OSError, ValueError, struct.error) as e:
                raise KallsymsError(f"cannot read the kallsyms tables ({e})") from None
        return self.addresses[name]

    def _address_decoder(self, stext: int) -> Callable[[int], int]:
        """
        How this kernel stores addresses (see drgn's libdrgn/kallsyms.c): absolute
        (``kallsyms_addresses``, before 6.11), or 32-bit ``kallsyms_offsets`` from
        ``kallsyms_relative_base`` (base relative), as negated offsets from it where
        negative (absolute percpu, before 6.15), or from the offset's own address
        (place relative, 7.0+). Told apart by which gives ``_stext`` its VMCOREINFO address.
        """
        read, at = self.read, self.at
        if at["kallsyms_addresses"]:
            return lambda i: int(struct.unpack("<Q", read(at["kallsyms_addresses"] + 8 * i, 8))[0])
        table = at["kallsyms_offsets"]
        if not table:
            raise KallsymsError("no kallsyms_offsets or kallsyms_addresses in VMCOREINFO")

        def offset(i: int) -> int:
            return int(struct.unpack("<i", read(table + 4 * i, 4))[0])

        base = 0
        if at["kallsyms_relative_base"]:
            base = struct.unpack("<Q", read(at["kallsyms_relative_base"], 8))[0]
        mask = (1 << 64) - 1
        decoders: list[Callable[[int], int]] = [
            lambda i: (base + (offset(i) & 0xFFFFFFFF)) & mask,
            lambda i: (table + 4 * i + offset(i)) & mask,
        ]
        if base:
            decoders.insert(1, lambda i: offset(i) if offset(i) >= 0 else (base - 1 - offset(i)) & mask)
        for decode in decoders:
            if decode(stext) == at["_stext"]:
                return decode
        raise KallsymsError("cannot tell how this kernel stores kallsyms addresses")


def proc_kallsyms(path: str = "/proc/kallsyms") -> Finder:
    """
    Symbol addresses from /proc/kallsyms (the live local kernel; root, or it shows
    zeros), found in its text as they are asked for: indexing all ~150,000 costs more
    than reading the file (1.5 s against 0.3 s in a TCG guest).
    """
    with open(path, "rb") as f:
        text = f.read()

    def symbol(name: str) -> int | None:
        at = text.find(b" " + name.encode() + b"\n")  # vmlinux's: a module's ends "\t[mod]"
        if at < 2 or text[at - 2] != 0x20:  # "ADDRESS T NAME"
            return None
        start = text.rfind(b"\n", 0, at) + 1
        return int(text[start : at - 2], 16)

    return symbol
