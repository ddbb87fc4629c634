"""
The facts cache against damaged and forged kernels (no VM): what a dump says is never a path,
facts from a dump's own BTF or clocks never reach another dump or a DWARF run, DWARF wins
over anything cached, and files that are not what drgn-ss wrote are ignored, never followed.

The kernel here is a fake: a small hand-made BTF (tests/test_btf.py's builder) serves as
its types, from "DWARF" (a program whose types are those) or from "BTF"; its vmlinux is a
small ELF file made here with a build ID note and a ``clocksource_jiffies``.
"""

from __future__ import annotations

import glob
import json
import os
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from drgn import ProgramFlags
from drgn_ss.kernel import clock, features, program
from drgn_ss.kernel import facts as facts_module
from drgn_ss.kernel.btf import KIND_INT, KIND_STRUCT, Btf
from drgn_ss.kernel.clock import hz_evidence, hz_of_clocksource, initial_jiffies, kernel_hz, tick_nsec
from drgn_ss.kernel.facts import KernelFacts, kernel_facts
from drgn_ss.kernel.facts_file import FACT_KINDS, plausible_fact
from drgn_ss.kernel.images import elf_build_id, elf_file_bytes
from drgn_ss.kernel.program import valid_build_id
from drgn_ss.kernel.type_sources import BtfTypes

from tests.test_btf import _Builder

BUILD_ID = "3b43fad5034874490492495d552c0af6a5fab235"
OTHER_BUILD_ID = "00112233445566778899aabbccddeeff00112233"
RELEASE = "6.1.0-56-cloud-amd64"
#: Link addresses of the fake kernel's variables.
SYMBOLS = {"init_net": 0xFFFFFFFF82000000, "clocksource_jiffies": 0xFFFFFFFF82B2B340}
HELPERS = Path(__file__).resolve().parent.parent / "helpers"


def fake_btf(swapped: bool = False) -> Btf:
    """struct sock { u32 sk_a; u32 sk_b; u64 sk_c; }, struct clocksource { ...; u32 mult; u32 shift; }."""
    b = _Builder()
    member = struct.Struct("<III")
    u32 = b.add(KIND_INT, "unsigned int", 4, extra=struct.pack("<I", 32))
    u64 = b.add(KIND_INT, "long long unsigned int", 8, extra=struct.pack("<I", 64))
    a, c = ("sk_b", "sk_a") if swapped else ("sk_a", "sk_b")  # a forger swaps two names
    b.add(KIND_STRUCT, "sock", 16, vlen=3, extra=member.pack(b.name(a), u32, 0)
          + member.pack(b.name(c), u32, 32) + member.pack(b.name("sk_c"), u64, 64))
    b.add(KIND_STRUCT, "clocksource", 24, vlen=2,
          extra=member.pack(b.name("mult"), u32, 128) + member.pack(b.name("shift"), u32, 160))
    return Btf(b.blob())


def tiny_vmlinux(path: Path, build_id: str, hz: int) -> str:
    """An ELF64 file with a GNU build ID note and one PT_LOAD holding clocksource_jiffies as built."""
    bid = bytes.fromhex(build_id)
    note = struct.pack("<III", 4, len(bid), 3) + b"GNU\0" + bid + b"\0" * (-len(bid) % 4)
    data = b"\0" * 16 + struct.pack("<II", tick_nsec(hz) << 8, 8) + b"\0" * 8
    header = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + b"\0" * 9, 2, 62, 1, 0, 64, 0, 0,
                         64, 56, 2, 64, 0, 0)
    note_at = 64 + 2 * 56
    data_at = note_at + len(note)
    phdrs = (struct.pack("<IIQQQQQQ", 4, 4, note_at, 0, 0, len(note), len(note), 4)
             + struct.pack("<IIQQQQQQ", 1, 6, data_at, SYMBOLS["clocksource_jiffies"], 0, len(data),
                           len(data), 8))
    path.write_bytes(header + phdrs + note + data)
    return str(path)


class FakeObject:
    def __init__(self, address: int) -> None:
        self.address_ = address
        self.type_ = None


class FakeModule:
    def __init__(self, build_id: str, path: str, bias: int) -> None:
        self.build_id = bytes.fromhex(build_id)
        self.debug_file_path = path
        self.debug_file_bias = bias


class FakeProgram:
    """What KernelFacts asks of a drgn Program, with ``btf``'s types as its DWARF when ``dwarf``."""

    def __init__(self, info: dict[str, str], btf: Btf, vmlinux: str | None = None,
                 flags: ProgramFlags = ProgramFlags.IS_LINUX_KERNEL) -> None:
        self.cache: dict[str, Any] = {"drgn_ss.vmcoreinfo": info}
        self.flags = flags
        self.btf = btf
        self.vmlinux = vmlinux
        self.kaslr = int(info.get("KERNELOFFSET", "0"), 16)
        self.loads = 0

    def type(self, name: str) -> Any:
        if self.vmlinux is None:
            raise LookupError(f"could not find {name!r}")
        return self.btf.type(name)

    def object(self, name: str) -> FakeObject:
        if self.vmlinux is None or name not in SYMBOLS:
            raise LookupError(name)
        return FakeObject(SYMBOLS[name] + self.kaslr)

    def main_module(self) -> FakeModule:
        if self.vmlinux is None:
            raise LookupError("no main module")
        return FakeModule(elf_build_id(self.vmlinux) or "", self.vmlinux, self.kaslr)


def kernel(tmp_path: Path, *, build_id: str = BUILD_ID, release: str = RELEASE, dwarf: bool = False,
           vmlinux_build_id: str = BUILD_ID, btf: Btf | None = None, dump: str | None = "1:2:3:4:5",
           live: bool = False, kaslr: int = 0) -> FakeProgram:
    """A fake kernel: its facts from DWARF (a vmlinux of ``vmlinux_build_id``) or from ``btf``."""
    info = {"BUILD-ID": build_id, "OSRELEASE": release, "KERNELOFFSET": f"{kaslr:x}"}
    flags = ProgramFlags.IS_LINUX_KERNEL
    if live:
        flags |= ProgramFlags.IS_LIVE | ProgramFlags.IS_LOCAL
    vmlinux = tiny_vmlinux(tmp_path / f"vmlinux-{vmlinux_build_id}", vmlinux_build_id, 250) if dwarf else None
    prog = FakeProgram(info, btf or fake_btf(), vmlinux, flags)
    if dump is not None and not live:
        prog.cache["drgn_ss.core_identity"] = dump
    if not dwarf:
        prog.cache["drgn_ss.btf_only"] = True
    return prog


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache directory of this test's, and BTF read from the fake program's."""
    path = tmp_path / "cache"
    monkeypatch.setenv("DRGN_SS_CACHE", str(path))

    def btf_types(prog: Any) -> BtfTypes:
        return BtfTypes(prog, prog.btf,
                        lambda name: None if name not in SYMBOLS else SYMBOLS[name] + prog.kaslr)

    monkeypatch.setattr(facts_module, "btf_types", btf_types)
    return path


def facts_of(prog: FakeProgram) -> KernelFacts:
    return kernel_facts(prog)


def run(prog: FakeProgram, read: Callable[[KernelFacts], Any] | None = None) -> Any:
    """One run of drgn-ss on ``prog``: what ``read`` reads (sk_b's offset), then the facts saved."""
    facts = facts_of(prog)
    found = read(facts) if read else facts.offset("struct sock", "sk_b")
    facts.save()
    return found


def files(cache: Path) -> dict[str, dict[str, Any]]:
    """The facts files by name, as JSON."""
    out = {}
    for path in glob.glob(str(cache / "facts" / "*")):
        with open(path) as f:
            out[os.path.basename(path)] = json.load(f)
    return out


def everything_under(root: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, n), root)
            for d, dirs, names in os.walk(root) for n in names + dirs}


# -- names: nothing a dump says becomes a path ----------------------------------------------

def test_release_with_dot_dot_is_not_a_path(tmp_path: Path, cache: Path) -> None:
    """OSRELEASE=../../../../tmp/x: the file is named by the build ID alone, in the cache."""
    prog = kernel(tmp_path, release="../../../../tmp/x", dwarf=True)
    before = everything_under(tmp_path)
    assert run(prog) == 4
    facts = facts_of(prog)
    assert facts.path is not None and os.path.dirname(facts.path) == str(cache / "facts")
    assert re.fullmatch(rf"{BUILD_ID}-[0-9a-f]{{8}}\.json", os.path.basename(facts.path))
    made = everything_under(tmp_path) - before
    assert all(p.startswith("cache") for p in made), made
    assert files(cache)[os.path.basename(facts.path)]["release"] == "../../../../tmp/x"  # kept as data


@pytest.mark.parametrize("build_id", ["../../../../tmp/x", "3b43fad5/../../x", BUILD_ID + "/", "abc",
                                      "g" * 40, BUILD_ID[:-1], "a" * 130, "", "3b43 fad5 0348 7449 0492"])
def test_forged_build_id_names_no_file(tmp_path: Path, cache: Path, build_id: str) -> None:
    """A BUILD-ID that is not hex of a sane length: facts are worked out, nothing is cached."""
    prog = kernel(tmp_path, build_id=build_id)
    assert run(prog) == 4
    assert facts_of(prog).path is None
    assert not cache.exists() or not any(cache.rglob("*.json"))


def test_valid_build_id() -> None:
    assert valid_build_id(BUILD_ID.upper()) == BUILD_ID
    assert valid_build_id(f" {BUILD_ID}\n") == BUILD_ID
    assert valid_build_id("a" * 16) == "a" * 16 and valid_build_id("a" * 128) == "a" * 128
    for bad in ("a" * 15, "a" * 17, "a" * 130, "../a", "0x" + "a" * 38, "a/" * 20):
        assert valid_build_id(bad) == ""


def test_bad_kerneloffset_caches_nothing(tmp_path: Path, cache: Path) -> None:
    prog = kernel(tmp_path)
    prog.cache["drgn_ss.vmcoreinfo"]["KERNELOFFSET"] = "../x"
    assert run(prog) == 4
    assert facts_of(prog).path is None and not any(cache.rglob("*.json"))


# -- files that are not what drgn-ss wrote ----------------------------------------------------

def poisoned(cache: Path, name: str, content: Any) -> Path:
    (cache / "facts").mkdir(parents=True, exist_ok=True, mode=0o700)
    path = cache / "facts" / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def shared_name(tmp_path: Path) -> str:
    path = facts_of(kernel(tmp_path / "probe", dump=None)).path
    assert path is not None
    return os.path.basename(path)


def test_symlinked_facts_file_is_not_followed(tmp_path: Path, cache: Path) -> None:
    """A facts file that is a link to a file outside: not read, and replaced (not written through)."""
    (tmp_path / "probe").mkdir()
    name = shared_name(tmp_path)
    outside = tmp_path / "outside.json"
    text = json.dumps({"build_id": BUILD_ID, "release": RELEASE, "dwarf": {"offset:struct sock:sk_b": 12}})
    outside.write_text(text)
    (cache / "facts").mkdir(parents=True, mode=0o700)
    os.symlink(outside, cache / "facts" / name)
    prog = kernel(tmp_path, dwarf=True)
    assert run(prog) == 4  # not the 12 the link's target says
    assert outside.read_text() == text
    assert not (cache / "facts" / name).is_symlink()
    assert files(cache)[name]["dwarf"]["offset:struct sock:sk_b"] == 4


def test_symlinked_facts_directory_is_not_used(tmp_path: Path, cache: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    cache.mkdir()
    os.symlink(outside, cache / "facts")
    prog = kernel(tmp_path, dwarf=True)
    assert run(prog) == 4
    assert list(outside.iterdir()) == []


def test_facts_directory_others_can_write_is_not_used(tmp_path: Path, cache: Path) -> None:
    (cache / "facts").mkdir(parents=True)
    os.chmod(cache / "facts", 0o777)
    prog = kernel(tmp_path, dwarf=True)
    assert run(prog) == 4
    assert list((cache / "facts").iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="gives files to another user")
def test_facts_of_another_user_are_not_read(tmp_path: Path, cache: Path) -> None:
    """Root reading a cache another user can write (sudo keeping HOME): their facts are not used."""
    (tmp_path / "probe").mkdir()
    name = shared_name(tmp_path)
    path = poisoned(cache, name, {"build_id": BUILD_ID, "release": RELEASE,
                                  "dwarf": {"offset:struct sock:sk_b": 12}})
    os.chown(path, 65534, 65534)
    assert run(kernel(tmp_path / "probe", dump=None)) == 4  # the file is not theirs to give
    os.chown(cache / "facts", 65534, 65534)
    assert run(kernel(tmp_path, dwarf=True)) == 4  # nor is the directory
    assert os.stat(path).st_uid == 65534
    assert json.loads(path.read_text())["dwarf"]["offset:struct sock:sk_b"] == 12  # and left alone


def test_fifo_as_facts_file_does_not_hang(tmp_path: Path, cache: Path) -> None:
    (tmp_path / "probe").mkdir()
    name = shared_name(tmp_path)
    (cache / "facts").mkdir(parents=True, mode=0o700)
    os.mkfifo(cache / "facts" / name)
    prog = kernel(tmp_path, dwarf=True)
    assert run(prog) == 4
    assert files(cache)[name]["dwarf"]["offset:struct sock:sk_b"] == 4


@pytest.mark.parametrize("content", [
    '{"build_id": "' + BUILD_ID + '", "release": "' + RELEASE + '", "dwarf": {"offset:struct sock:sk_b": 4',
    "[1, 2, 3]", "null", "\"text\"", "\xff\xfe", "[" * 100_000,
    {"build_id": BUILD_ID, "release": RELEASE, "dwarf": []},
    {"build_id": BUILD_ID, "release": RELEASE, "dwarf": "x"},
    {"build_id": BUILD_ID, "release": "5.10.0", "dwarf": {"offset:struct sock:sk_b": 12}},
    {"build_id": OTHER_BUILD_ID, "release": RELEASE, "dwarf": {"offset:struct sock:sk_b": 12}},
    {"release": RELEASE, "dwarf": {"offset:struct sock:sk_b": 12}},
])
def test_corrupt_facts_file_is_rebuilt(tmp_path: Path, cache: Path, content: Any) -> None:
    """Truncated JSON, not an object, sections of the wrong type, another build's: ignored, rewritten."""
    (tmp_path / "probe").mkdir()
    name = shared_name(tmp_path)
    poisoned(cache, name, content)
    prog = kernel(tmp_path, dwarf=True)
    assert run(prog) == 4
    written = files(cache)[name]
    assert written["build_id"] == BUILD_ID and written["release"] == RELEASE
    assert written["dwarf"]["offset:struct sock:sk_b"] == 4


@pytest.mark.parametrize("key, value", [
    ("offset:struct sock:sk_b", "4"), ("offset:struct sock:sk_b", -4), ("offset:struct sock:sk_b", 4.0),
    ("offset:struct sock:sk_b", True), ("offset:struct sock:sk_b", 1 << 20),
    ("offset:struct sock:sk_b", None),
    ("size:struct sock", 0), ("size:struct sock", 1 << 20), ("size:struct sock", [16]),
    ("field:struct sock:sk_b", [4, 4, False, 0]), ("field:struct sock:sk_b", [4, 4, 0, 0, 0]),
    ("field:struct sock:sk_b", {"offset": 4}), ("field:struct sock:sk_b", [4, 0, False, 0, 0]),
    ("symbol:init_net", "0xffffffff82000000"), ("symbol:init_net", -1), ("symbol:init_net", 1 << 64),
    ("hz", 1000000), ("hz", "250"), ("hz", 0),
])
def test_cached_value_of_the_wrong_kind_is_worked_out_again(tmp_path: Path, cache: Path, key: str,
                                                            value: Any) -> None:
    """A cached value that is not one its kind of fact can have: not used (no crash), replaced."""
    (tmp_path / "probe").mkdir()
    name = shared_name(tmp_path)
    poisoned(cache, name, {"build_id": BUILD_ID, "release": RELEASE, "dwarf": {key: value}})
    prog = kernel(tmp_path, dump=None)  # a run that trusts the dwarf section: BTF, no DWARF

    def read(facts: KernelFacts) -> Any:
        if key.startswith("size"):
            return facts.size("struct sock")
        if key.startswith("field"):
            return tuple(facts.field("struct sock", "sk_b"))
        if key.startswith("symbol"):
            return facts.symbol("init_net")
        if key == "hz":
            return None
        return facts.offset("struct sock", "sk_b")

    expected = {"size": 16, "field": (4, 4, False, 0, 0), "symbol": SYMBOLS["init_net"], "hz": None,
                "offset": 4}[key.split(":")[0]]
    assert run(prog, read) == expected


def test_layout_of_the_wrong_shape_is_not_used() -> None:
    good = {name: False for name in features.KernelLayout._fields}
    assert plausible_fact("layout", good)
    assert not plausible_fact("layout", {**good, "extra": True})
    assert not plausible_fact("layout", {k: 0 for k in good})
    assert not plausible_fact("layout", list(good))


def test_every_kind_of_fact_the_helpers_ask_for_is_checked() -> None:
    """Each key prefix of a facts.value() call (and of KernelFacts' own) has a check in FACT_KINDS."""
    used = set()
    for path in HELPERS.rglob("*.py"):
        used |= set(re.findall(r"\.value\(f?\"([a-z]+)[:\"]", path.read_text()))
    assert used and used <= FACT_KINDS.keys(), used - FACT_KINDS.keys()
    assert {"field", "offset", "size", "symbol", "percpu", "hz", "layout"} <= FACT_KINDS.keys()


def test_writing_is_atomic_and_private(tmp_path: Path, cache: Path) -> None:
    """The file is renamed into place from a new file of its own: no temporary file is left."""
    prog = kernel(tmp_path, dwarf=True)
    run(prog)
    names = os.listdir(cache / "facts")
    assert len(names) == 1 and names[0].endswith(".json") and not names[0].startswith(".")
    assert os.stat(cache / "facts" / names[0]).st_mode & 0o077 == 0
    assert os.stat(cache / "facts").st_mode & 0o077 == 0


# -- DWARF wins -------------------------------------------------------------------------------

def test_dwarf_replaces_a_cached_value_it_contradicts(tmp_path: Path, cache: Path) -> None:
    """
    A run with DWARF works every fact out from it: a cached value that differs, in either
    section, is not used, and the file is rewritten with DWARF's.
    """
    (tmp_path / "probe").mkdir()
    name = shared_name(tmp_path)
    poisoned(cache, name, {"build_id": BUILD_ID, "release": RELEASE,
                           "dwarf": {"offset:struct sock:sk_b": 12, "hz": 1000},
                           "live": {"offset:struct sock:sk_b": 12, "size:struct sock": 16}})
    prog = kernel(tmp_path, dwarf=True)
    assert run(prog, lambda facts: (facts.offset("struct sock", "sk_b"), kernel_hz(prog))) == (4, 250)
    written = files(cache)[name]
    assert written["dwarf"]["offset:struct sock:sk_b"] == 4 and written["dwarf"]["hz"] == 250
    assert written["live"] == {"size:struct sock": 16}  # the contradicted one is gone


def lazily_loaded_kernel(tmp_path: Path) -> FakeProgram:
    """A kernel whose DWARF is found but not loaded yet: the debug info loader loads it."""
    prog = kernel(tmp_path, dwarf=True)
    vmlinux, prog.vmlinux = prog.vmlinux, None

    def load() -> None:
        prog.vmlinux = vmlinux

    program.set_debug_info_loader(prog, load)
    return prog


def test_dwarf_found_on_a_miss_wins_from_then_on(tmp_path: Path, cache: Path) -> None:
    """
    Without -s, cached facts are used until one is missing; when debug info is then found
    and loaded, every later fact comes from DWARF, not from the cache.
    """
    (tmp_path / "probe").mkdir()
    name = shared_name(tmp_path)
    poisoned(cache, name, {"build_id": BUILD_ID, "release": RELEASE, "live": {"offset:struct sock:sk_b": 12}})
    prog = lazily_loaded_kernel(tmp_path)
    facts = facts_of(prog)
    assert facts.offset("struct sock", "sk_b") == 12  # cached: nothing loaded DWARF yet
    assert facts.size("struct sock") == 16  # a miss: DWARF is loaded
    assert facts.loaded_debug_info and facts.source == "DWARF"
    assert facts.offset("struct sock", "sk_b") == 4  # from DWARF now
    facts.save()
    assert files(cache)[name]["dwarf"]["offset:struct sock:sk_b"] == 4
    assert "offset:struct sock:sk_b" not in files(cache)[name]["live"]


def test_a_checked_vmlinux_not_loaded_uses_dwarf_facts_alone(tmp_path: Path, cache: Path) -> None:
    """
    -s of the build's own vmlinux on a warm cache (:meth:`KernelFacts.defer_debug_info`): the
    facts from its DWARF are used without loading it; one only the live kernel's BTF gave
    is not (a DWARF run would not use it): DWARF is loaded for it, and wins from then on.
    """
    (tmp_path / "probe").mkdir()
    name = shared_name(tmp_path)
    poisoned(cache, name, {"build_id": BUILD_ID, "release": RELEASE, "dwarf": {"offset:struct sock:sk_b": 4},
                           "live": {"size:struct sock": 32}})
    prog = lazily_loaded_kernel(tmp_path)
    facts = facts_of(prog)
    assert facts.defer_debug_info()
    assert facts.offset("struct sock", "sk_b") == 4 and not facts.loaded_debug_info
    assert facts.size("struct sock") == 16  # not the live section's 32: loaded, from DWARF
    assert facts.loaded_debug_info and facts.source == "DWARF"
    facts.save()
    assert files(cache)[name]["dwarf"] == {"offset:struct sock:sk_b": 4, "size:struct sock": 16}
    assert files(cache)[name]["live"] == {}  # DWARF contradicted it


@pytest.mark.parametrize("sections, loader", [
    ({"live": {"offset:struct sock:sk_b": 4}}, True),  # the build's BTF facts only: DWARF must replace them
    ({"dwarf": {"offset:struct sock:sk_b": 4}}, False),  # nothing would load DWARF on a miss
])
def test_dwarf_is_not_deferred_without_dwarf_facts_and_a_loader(
        tmp_path: Path, cache: Path, sections: dict[str, Any], loader: bool) -> None:
    (tmp_path / "probe").mkdir()
    poisoned(cache, shared_name(tmp_path), {"build_id": BUILD_ID, "release": RELEASE, **sections})
    prog = kernel(tmp_path, dwarf=True)
    if loader:
        program.set_debug_info_loader(prog, lambda: None)
    assert not facts_of(prog).defer_debug_info()


def test_dwarf_of_another_build_is_not_cached(tmp_path: Path, cache: Path) -> None:
    """DWARF whose file has another build ID than the kernel's (drgn refuses it; if not): used, not cached."""
    prog = kernel(tmp_path, dwarf=True, vmlinux_build_id=OTHER_BUILD_ID)
    assert run(prog) == 4
    assert not any(cache.rglob("*.json"))


def test_dwarf_facts_serve_later_runs_without_debug_info(tmp_path: Path, cache: Path) -> None:
    run(kernel(tmp_path, dwarf=True, kaslr=0x1000000), lambda facts: (facts.offset("struct sock", "sk_b"),
                                                                      facts.symbol("init_net")))
    prog = kernel(tmp_path, btf=fake_btf(swapped=True), kaslr=0x2000000, dump="9:9:9:9:9")
    # The dump's own BTF swaps sk_a and sk_b: the checked DWARF fact wins; symbols are relocated.
    assert run(prog, lambda facts: (facts.offset("struct sock", "sk_b"), facts.symbol("init_net"))) == (
        4, SYMBOLS["init_net"] + 0x2000000)
    assert facts_of(prog).source is None  # all from the cache


# -- a dump's own BTF and clocks serve that dump alone ------------------------------------------

def test_btf_facts_of_a_dump_do_not_reach_another_dump(tmp_path: Path, cache: Path) -> None:
    """A dump whose BTF swaps two members of one size (undetectable): its facts are its own."""
    forged = kernel(tmp_path, btf=fake_btf(swapped=True), dump="1:100:5:6:7")
    assert run(forged) == 0
    good = kernel(tmp_path, dump="1:200:5:6:7")  # another file, same build
    assert run(good) == 4
    again = kernel(tmp_path, btf=fake_btf(swapped=True), dump="1:100:5:6:7")
    assert run(again) == 0 and facts_of(again).source is None  # the forged file's own, cached
    written = files(cache)
    assert not any(f.get("dwarf") or f.get("live") for f in written.values())
    assert sorted(f["file"] for f in written.values() if "dump" in f) == ["1:100:5:6:7", "1:200:5:6:7"]


def test_btf_facts_of_a_dump_are_not_used_by_a_dwarf_run(tmp_path: Path, cache: Path) -> None:
    run(kernel(tmp_path, btf=fake_btf(swapped=True)))
    assert run(kernel(tmp_path, dwarf=True)) == 4


def test_btf_facts_of_a_qemu_guest_are_not_cached(tmp_path: Path, cache: Path) -> None:
    prog = kernel(tmp_path, dump=None)
    assert run(prog) == 4
    assert not any(cache.rglob("*.json"))


def test_btf_facts_of_the_live_kernel_are_shared(tmp_path: Path, cache: Path) -> None:
    run(kernel(tmp_path, live=True))
    (written,) = files(cache).values()
    assert written["live"] == {"offset:struct sock:sk_b": 4} and written["dwarf"] == {}


def test_implausible_btf_is_refused(tmp_path: Path) -> None:
    """A struct size no kernel has is damage: an error, not a fact."""
    b = _Builder()
    b.add(KIND_STRUCT, "sock", 1 << 20, vlen=0)
    prog = kernel(tmp_path, btf=Btf(b.blob()))
    with pytest.raises(ValueError, match="which no kernel has"):
        facts_of(prog).size("struct sock")
    facts_of(prog).save()
    assert not any((tmp_path / "cache").rglob("*.json"))


# -- HZ -----------------------------------------------------------------------------------------

def clocks(monkeypatch: pytest.MonkeyPatch, jiffies: int, mono_ns: int, constant: int | None) -> None:
    """The fake kernel's jiffies_64, monotonic clock, and clocksource_jiffies' HZ in memory."""
    monkeypatch.setattr(clock, "jiffies", lambda prog: jiffies)
    monkeypatch.setattr(clock, "_mono_ns", lambda types: mono_ns)
    monkeypatch.setattr(clock, "_memory_hz", lambda facts: constant)


#: A 6.1 dump's clocks (HZ 250): jiffies lag the monotonic clock by 0.83 s.
JIFFIES, MONO_NS = 4294911540, 76148889780


def test_hz_evidence() -> None:
    assert hz_evidence(JIFFIES, MONO_NS) == (250, True)
    assert hz_evidence(0, MONO_NS).strong is False  # jiffies_64 zeroed
    assert hz_evidence(JIFFIES, 0).strong is False
    at_300 = initial_jiffies(250) + 250 * 299
    assert hz_evidence(at_300, 299_500_000_000).strong is False  # every HZ explains jiffies alike
    hour = initial_jiffies(1000) + 1000 * 3600
    assert hz_evidence(hour, 3600 * 10**9) == (1000, True)


def test_hz_of_clocksource() -> None:
    assert hz_of_clocksource(1024000000, 8) == 250  # a 6.1 vmlinux's
    assert {hz_of_clocksource(tick_nsec(hz) << 8, 8) for hz in (100, 250, 300, 1000)} == {100, 250, 300, 1000}
    assert hz_of_clocksource(0, 0) is None and hz_of_clocksource(1024000000, 7) is None


def test_weak_hz_evidence_is_not_cached(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """jiffies_64 = 0 (the red team's dump): HZ from clocksource_jiffies for this run, nothing cached."""
    clocks(monkeypatch, 0, MONO_NS, 250)
    prog = kernel(tmp_path)
    assert run(prog, lambda facts: kernel_hz(prog)) == 250
    assert all("hz" not in section for f in files(cache).values() for section in f.values()
               if isinstance(section, dict))


def test_weak_hz_evidence_without_the_clocksource_warns(tmp_path: Path, cache: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    clocks(monkeypatch, 0, MONO_NS, None)
    prog = kernel(tmp_path)
    prog.cache["drgn_ss.announce"] = said.append
    hz = run(prog, lambda facts: kernel_hz(prog))
    assert said == [f"warning: cannot tell the kernel's HZ (no readable jiffies clocksource, and its jiffies "
                    f"do not fit its monotonic clock): timers assume HZ={hz}"]
    assert all("hz" not in f.get("dump", {}) for f in files(cache).values())


def test_strong_hz_evidence_is_cached_for_that_dump(tmp_path: Path, cache: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    clocks(monkeypatch, JIFFIES, MONO_NS, 250)
    prog = kernel(tmp_path)
    assert run(prog, lambda facts: kernel_hz(prog)) == 250
    assert [f["dump"]["hz"] for f in files(cache).values() if "dump" in f] == [250]
    clocks(monkeypatch, JIFFIES, MONO_NS, 1000)  # the clocksource disagrees: this run only
    said: list[str] = []
    other = kernel(tmp_path, dump="7:7:7:7:7")
    other.cache["drgn_ss.announce"] = said.append
    assert run(other, lambda facts: kernel_hz(other)) == 1000
    assert said and "timers assume HZ=1000" in said[0]
    dumps = [(f["file"], f["dump"]["hz"]) for f in files(cache).values() if "dump" in f]
    assert dumps == [("1:2:3:4:5", 250)]  # the other learnt nothing to keep


def test_hz_from_dwarf_is_the_vmlinux_files(tmp_path: Path, cache: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """With DWARF, HZ is clocksource_jiffies as the vmlinux file holds it: not the dump's clocks."""
    clocks(monkeypatch, 0, MONO_NS, 1000)  # a dump whose jiffies and clocksource are both damaged
    prog = kernel(tmp_path, dwarf=True)
    assert run(prog, lambda facts: kernel_hz(prog)) == 250
    (written,) = files(cache).values()
    assert written["dwarf"]["hz"] == 250


def test_elf_file_bytes(tmp_path: Path) -> None:
    path = tiny_vmlinux(tmp_path / "vmlinux", BUILD_ID, 300)
    at = SYMBOLS["clocksource_jiffies"]
    assert elf_file_bytes(path, at + 16, 8) == struct.pack("<II", tick_nsec(300) << 8, 8)
    assert elf_file_bytes(path, at + 30, 8) is None  # past the segment
    assert elf_file_bytes(path, at - 8, 8) is None
    assert elf_file_bytes(str(tmp_path / "nosuch"), at, 8) is None
    assert elf_build_id(path) == BUILD_ID


# -- a cache that cannot be written -------------------------------------------------------------

def test_a_cache_that_cannot_be_written_is_said_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DRGN_SS_CACHE a regular file (mkdir fails, ENOTDIR, as root too): one warning, as a save was needed."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    monkeypatch.setenv("DRGN_SS_CACHE", str(not_a_dir))
    said: list[str] = []
    prog = kernel(tmp_path, dwarf=True)
    prog.cache["drgn_ss.announce"] = said.append
    assert run(prog) == 4
    assert said == [f"warning: cannot write the facts cache in {not_a_dir}/facts (Not a directory): "
                    "every run works facts out again"]
    facts_of(prog).save()  # said once a run
    assert len(said) == 1


def test_a_read_only_cache_is_said(tmp_path: Path, cache: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes in a read-only directory: the ENOTDIR test covers the warning")
    cache.mkdir()
    cache.chmod(0o500)
    said: list[str] = []
    prog = kernel(tmp_path, dwarf=True)
    prog.cache["drgn_ss.announce"] = said.append
    run(prog)
    assert said == [f"warning: cannot write the facts cache in {cache}/facts (Permission denied): "
                    "every run works facts out again"]
