"""The kallsyms reader on hand-made tables (tests/kernel/test_btf.py checks it on real kernels)."""

from __future__ import annotations

import glob
import os
import re
import struct
from collections.abc import Iterator

import pytest
from drgn_ss.kernel import kallsyms
from drgn_ss.kernel.kallsyms import SYMBOLS, KallsymsError, MemoryKallsyms, find_names
from drgn_ss.kernel.native import native

HELPERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "helpers")

# Tokens: the printable characters stand for themselves; a few bytes stand for common pieces.
TOKENS = [bytes([i]) if 0x20 < i < 0x7F else b"" for i in range(256)]
TOKENS[0x80], TOKENS[0x81], TOKENS[0x82], TOKENS[0x83] = b"Dinit_", b"net", b"_table", b"Tsys_"
for i, token in enumerate(TOKENS):
    if not token:
        TOKENS[i] = b"?%d" % i  # unused: every token needs a string
TOKEN_TABLE = b"".join(t + b"\0" for t in TOKENS)
TOKEN_INDEX = struct.pack("<256H", *[TOKEN_TABLE.index(t + b"\0") for t in TOKENS])


def encode(kind: str, name: str) -> bytes:
    """One kallsyms_names entry: the token count (two bytes past 127), then the tokens."""
    text = (kind + name).encode()
    tokens: list[int] = []
    while text:
        for i in (0x80, 0x81, 0x82, 0x83):
            if text.startswith(TOKENS[i]) and (i != 0x80 or not tokens):
                tokens.append(i)
                text = text[len(TOKENS[i]):]
                break
        else:
            tokens.append(text[0])
            text = text[1:]
    n = len(tokens)
    head = bytes([n]) if n < 0x80 else bytes([n & 0x7F | 0x80, n >> 7])
    return head + bytes(tokens)


SYMS = [("T", "_stext"), ("T", "sys_read"), ("D", "init_net"), ("d", "udp_table"), ("B", "x" * 200),
        ("D", "init_task"), ("b", "init_net"), ("D", "jiffies_64")]
NAMES = b"".join(encode(k, n) for k, n in SYMS)


@pytest.fixture(params=["c", "python"])
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "c":
        if native() is None:
            pytest.skip("drgn_ss._fast is not built")
    else:
        monkeypatch.setenv("DRGN_SS_PURE_PYTHON", "1")
    yield request.param


def test_encoding_uses_the_compound_tokens() -> None:
    assert encode("D", "init_net") == bytes([2, 0x80, 0x81])
    assert encode("B", "x" * 200)[:2] == bytes([201 & 0x7F | 0x80, 201 >> 7])


def test_find_names(impl: str) -> None:
    wanted = [b"init_net", b"udp_table", b"x" * 200, b"jiffies_64", b"nope", b"_stext", b"sys_read"]
    got = find_names(NAMES, len(SYMS), TOKEN_TABLE, TOKEN_INDEX, True, wanted)
    # The first of two symbols of one name; the type letter apart from the name.
    assert got == [(2, "D"), (3, "d"), (4, "B"), (7, "D"), None, (0, "T"), (1, "T")]


def test_find_names_stops_at_count(impl: str) -> None:
    got = find_names(NAMES, 2, TOKEN_TABLE, TOKEN_INDEX, True, [b"init_net", b"sys_read"])
    assert got == [None, (1, "T")]


def test_find_names_cut_short(impl: str) -> None:
    with pytest.raises(ValueError, match="ends inside a symbol"):
        find_names(NAMES[:-1], len(SYMS), TOKEN_TABLE, TOKEN_INDEX, True, [b"nope"])


def test_find_names_short_lengths(impl: str) -> None:
    """Before 6.1 a length byte is one byte whatever its value: a 200-token name misreads."""
    short = b"".join(encode(k, n) for k, n in SYMS if len(n) < 100)
    assert find_names(short, len(SYMS) - 1, TOKEN_TABLE, TOKEN_INDEX, False, [b"jiffies_64"]) == [(6, "D")]


class Memory:
    """Kernel memory made of a few placed byte strings."""

    def __init__(self) -> None:
        self.pieces: dict[int, bytes] = {}

    def put(self, address: int, data: bytes) -> int:
        self.pieces[address] = data
        return address

    def read(self, address: int, size: int) -> bytes:
        for start, data in self.pieces.items():
            if start <= address and address + size <= start + len(data):
                return data[address - start : address - start + size]
        raise OSError(f"no memory at {address:#x}")


BASE = 0xFFFFFFFF81000000


def kernel(encoding: str) -> tuple[Memory, dict[str, str], dict[str, int]]:
    """Tables for SYMS as a kernel of the given address encoding lays them out."""
    mem = Memory()
    at = {
        "kallsyms_num_syms": mem.put(BASE + 0x100000, struct.pack("<I", len(SYMS))),
        # Read up to the next table: kallsyms_markers (and more) lie between.
        "kallsyms_names": mem.put(BASE + 0x100010, NAMES.ljust(0xFFF0, b"\0")),
        "kallsyms_token_table": mem.put(BASE + 0x110000, TOKEN_TABLE + b"\0" * 300),
        "kallsyms_token_index": mem.put(BASE + 0x120000, TOKEN_INDEX),
    }
    values = [BASE + 0x1000 * i for i in range(len(SYMS))]
    if encoding == "absolute":
        at["kallsyms_addresses"] = mem.put(BASE + 0x130000, struct.pack(f"<{len(SYMS)}Q", *values))
    else:
        table = BASE + 0x140000
        if encoding == "base-relative":
            offsets = [v - BASE for v in values]
        elif encoding == "absolute-percpu":
            offsets = [BASE - 1 - v for v in values]  # negative: from the base
        else:  # place-relative
            offsets = [v - (table + 4 * i) for i, v in enumerate(values)]
        at["kallsyms_offsets"] = mem.put(table, struct.pack(f"<{len(SYMS)}i", *offsets))
        if encoding != "place-relative":
            at["kallsyms_relative_base"] = mem.put(BASE + 0x150000, struct.pack("<Q", BASE))
    info = {f"SYMBOL({name})": f"{address:x}" for name, address in at.items()}
    info["SYMBOL(_stext)"] = f"{BASE:x}"
    info["OSRELEASE"] = "6.12.0"
    return mem, info, {name: BASE + 0x1000 * i for i, (_, name) in reversed(list(enumerate(SYMS)))}


@pytest.mark.parametrize("encoding", ["absolute", "base-relative", "absolute-percpu", "place-relative"])
def test_memory_kallsyms(impl: str, encoding: str) -> None:
    mem, info, expected = kernel(encoding)
    symbol = MemoryKallsyms(mem.read, info)
    for name in ("init_net", "udp_table", "jiffies_64", "_stext", "sys_read"):
        assert symbol(name) == expected[name], name
    assert symbol("nope") is None
    assert symbol.addresses.keys() >= set(SYMBOLS)  # the first call looked for them all


def test_memory_kallsyms_needs_vmcoreinfo() -> None:
    with pytest.raises(KallsymsError, match="from Linux 6.0 on"):
        MemoryKallsyms(Memory().read, {"OSRELEASE": "5.10.0"})


def test_memory_kallsyms_wrong_stext() -> None:
    mem, info, _ = kernel("base-relative")
    info["SYMBOL(_stext)"] = f"{BASE + 8:x}"
    symbol = MemoryKallsyms(mem.read, info)
    with pytest.raises(KallsymsError, match="cannot tell how"):
        symbol("init_net")


def test_memory_kallsyms_unreadable() -> None:
    mem, info, _ = kernel("base-relative")
    del mem.pieces[int(info["SYMBOL(kallsyms_token_index)"], 16)]
    with pytest.raises(KallsymsError, match="cannot read the kallsyms tables"):
        MemoryKallsyms(mem.read, info)


def test_proc_kallsyms(tmp_path: pytest.TempPathFactory) -> None:
    path = os.path.join(str(tmp_path), "kallsyms")
    with open(path, "w") as f:
        f.write("ffffffff81000000 T _stext\nffffffff82000000 D init_net\n"
                "ffffffffc0000000 t init_net\t[mod]\nffffffff82001000 D init_net_x\n")
    symbol = kallsyms.proc_kallsyms(path)
    assert symbol("init_net") == 0xFFFFFFFF82000000
    assert symbol("_stext") == 0xFFFFFFFF81000000
    assert symbol("net") is None


def test_symbols_lists_what_the_helpers_read() -> None:
    """SYMBOLS is every name the helpers ask kallsyms for (one pass finds them all), no more."""
    used = set()
    for path in glob.glob(os.path.join(HELPERS, "**", "*.py"), recursive=True):
        with open(path) as f:
            used |= set(re.findall(r"symbol\(\"([A-Za-z_0-9]+)\"\)", f.read()))
    assert used == set(SYMBOLS)
