"""drgn reads the right kernel, in every mode: live, dumps and ``drgn --qemu``."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import drgn
import pytest
from drgn_ss.kernel.clock import kernel_hz, timekeeper, wall_clock_seconds
from drgn_ss.kernel.damage import WalkErrors
from drgn_ss.kernel.facts import kernel_facts
from drgn_ss.kernel.images import ElfImage, KcoreImage, PhysicalImage, QemuImage
from drgn_ss.kernel.native import native
from drgn_ss.kernel.target import kernel_memory
from drgn_ss.namespaces import ifnames, netns_by_inode
from drgn_ss.sockets.inet import InetDecoder, inet_sockets

from tests.kernel import reference
from tests.kernel.conftest import Target

REPO = Path(__file__).resolve().parents[2]


def test_release(prog: drgn.Program, workload: dict[str, Any]) -> None:
    release = prog["init_uts_ns"].name.release.string_().decode()
    assert release == workload["release"]


def complete_or_skip(errors: WalkErrors, workload: dict[str, Any]) -> None:
    """On a dump whose makedumpfile level dropped kernel pages, tables cannot be checked whole."""
    if errors and workload.get("dump_level", 0) & 8:
        pytest.skip(f"tables partly missing from this dump: {errors.describe()}")
    assert not errors, errors.describe()


def test_hz_is_a_debian_config_value(prog: drgn.Program) -> None:
    # Debian's x86_64 kernels are built with CONFIG_HZ=250.
    assert kernel_hz(prog) == 250


def test_host_share_is_read_only_from_the_host_side(target: Target) -> None:
    if target.kind != "live":
        pytest.skip("checks the guest's view of the host's files")
    mounts = Path("/proc/mounts").read_text().split("\n")
    root = [m.split() for m in mounts if m.split()[1:2] == ["/"]][-1]
    assert root[2] == "virtiofs", f"not a vmtests guest: / is {root}"
    # The guest mounts the share read-write: a refusal can only come from the host.
    assert "rw" in root[3].split(","), root
    probe = REPO / f".vmtests-write-probe-{os.getpid()}"
    with pytest.raises(OSError) as exc:
        probe.write_text("written from the guest")
    assert exc.value.errno == errno.EROFS


#: The ports of the workload's MPTCP sockets (tests/kernel/workload.py open_mptcp()).
MPTCP_PORTS = {7010, 7011}


def test_raw_decoder_equals_reference(prog: drgn.Program, target: Target, workload: dict[str, Any]) -> None:
    """
    drgn-ss's sockets against tests/kernel/reference.py's: drgn's helpers, reaching full
    sockets through their processes' files rather than the hash tables, and the inode
    through the struct socket (never sk_ino).
    """
    net = prog["init_net"].address_of_()
    # A running kernel (live, --qemu) may open, close or expire a socket between the two
    # readings: they are taken again, up to three times in all; a dump's must agree at once.
    for _ in range(1 if target.kind == "core" else 3):
        errors = WalkErrors()
        # MPTCP's subflows are TCP sockets no file holds (their MPTCP socket's file holds that
        # socket, shared): the reference, which reaches sockets through files, cannot tell
        # them apart. The MPTCP workload's ports are left out of both readings.
        raw = sorted((s.proto, s.family, s.state, s.src, s.sport, s.dst, s.dport, s.ino)
                     for s in inet_sockets(prog, net.value_(), errors=errors)
                     if not {s.sport, s.dport} & MPTCP_PORTS)
        ref = [r for r in reference.sockets(prog, net, errors) if not {r[4], r[6]} & MPTCP_PORTS]
        if raw == ref:
            break
    complete_or_skip(errors, workload)
    assert len(raw) >= 25
    assert raw == ref


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_native_walk_equals_python_walk(prog: drgn.Program, target: Target, workload: dict[str, Any],
                                        proto: str) -> None:
    """
    drgn_ss._fast (C) decodes the records the Python decoder decodes, faults included: as
    records, and as a SockTable's rows (``rows``), whose records are made on demand.
    """
    fast = native()
    if fast is None:
        pytest.skip("drgn_ss._fast is not built")
    net = prog["init_net"].address_of_().value_()
    records = []
    for in_c, rows in ((True, False), (True, True), (False, False)):
        errors = WalkErrors()
        decoder = InetDecoder(prog, inodes=True, cgroups=False, in_c=in_c, rows=rows)
        socks = decoder.socks(net, proto, errors=errors)
        assert isinstance(socks, fast.SockTable) == rows
        records.append((list(socks), errors))
    (c, c_errors), (table, table_errors), (py, py_errors) = records
    complete_or_skip(py_errors, workload)
    assert c_errors == py_errors == table_errors
    assert len(py) >= (3 if proto == "udp" else 25)
    if target.kind != "core":
        # A running kernel (live, --qemu): timers re-arm between the passes, and a socket
        # probing a zero window changes its probe count (timer, retrans); dumps compare all.
        c, table, py = ([s._replace(timer=0, timer_ms=0, retrans=0) for s in socks]
                        for socks in (c, table, py))
    assert c == py
    assert table == py


def _segments_read_as_drgn_reads_them(prog: drgn.Program, image: PhysicalImage) -> int:
    """Check 512 bytes a page into each segment of two pages or more (physical): how many were."""
    read = image.reader(lambda phys, size: b"")
    checked = 0
    for start, end in zip(image.starts, image.ends):
        if start + 8192 <= end:
            assert read(start + 4096, 512) == prog.read(start + 4096, 512, True), hex(start)
            checked += 1
    return checked


def test_image_read_through_a_file_descriptor_reads_what_drgn_reads(target: Any, prog: drgn.Program) -> None:
    """
    PhysicalImage's pread() path (QEMU's /proc/PID/mem when guest RAM is not a shared
    mapping), checked on the ELF dump's own segments read with pread() instead of mmap.
    """
    image = prog.cache.get("drgn_ss.image")
    if not isinstance(image, ElfImage):
        pytest.skip("needs an ELF dump")
    by_fd = PhysicalImage(list(zip(image.starts, image.ends, image.offsets)))
    by_fd.fd = os.open(target.path, os.O_RDONLY)
    try:
        assert _segments_read_as_drgn_reads_them(prog, by_fd) >= 2
        past_the_end = by_fd.reader(lambda phys, size: b"")(image.ends[-1] - 8, 16)
        assert past_the_end == b""  # past a segment's end: the fallback
    finally:
        os.close(by_fd.fd)


def test_kcore_is_read_as_drgn_reads_it(target: Any, prog: drgn.Program) -> None:
    """
    A live kernel's direct map read from /proc/kcore with pread() (KcoreImage, what the C
    walks read) is what drgn reads, in every RAM segment, and the walks use it.
    """
    image = prog.cache.get("drgn_ss.image")
    if target.kind != "live" or not isinstance(image, KcoreImage):
        pytest.skip("reads a live kernel's /proc/kcore")
    mem = kernel_memory(prog)
    mem.read(mem.lo + 0x100000, 8)  # a first read in the direct map: how it is read
    direct = mem.mapped
    assert direct is not None and direct.fd == image.fd and direct.starts
    assert _segments_read_as_drgn_reads_them(prog, direct) >= 1
    assert mem.native()[1] == image.fd  # the C walks pread() it


def test_raw_interface_names_equal_drgns(prog: drgn.Program) -> None:
    """The raw dev_base_head walk names interfaces as drgn's netdev helpers do."""
    from drgn.helpers.linux.net import for_each_netdev

    net = prog["init_net"].address_of_()
    expected = {int(dev.ifindex): dev.name.string_().decode() for dev in for_each_netdev(net)}
    assert expected.get(1) == "lo"
    assert ifnames(prog, net.value_()) == expected


def test_raw_netns_lookup_finds_init_net(prog: drgn.Program) -> None:
    net = prog["init_net"].address_of_()
    assert netns_by_inode(prog, int(net.ns.inum)) == net.value_()
    # Walks the whole list: no namespace has inode 1.
    assert netns_by_inode(prog, 1) is None


def test_facts_agree_with_dwarf(prog: drgn.Program) -> None:
    """What the facts cache holds is what drgn's types and symbols say."""
    facts = kernel_facts(prog)
    assert facts.build_id and facts.release == prog["UTS_RELEASE"].string_().decode()
    assert facts.symbol("init_net") == prog["init_net"].address_
    assert facts.offset("struct sock", "__sk_common.skc_state") == drgn.offsetof(
        prog.type("struct sock"), "__sk_common.skc_state")
    assert facts.size("struct sock_common") == drgn.sizeof(prog.type("struct sock_common"))
    assert not facts.has_symbol("no_such_symbol_in_any_kernel")


def test_raw_wall_clock_is_the_timekeepers(target: Target, prog: drgn.Program) -> None:
    """
    The time the crash summary and --header print, read raw at addresses from the facts (no
    DWARF loaded on a warm cache), is the timekeeper's ``xtime_sec`` as drgn reads it.
    """
    raw = wall_clock_seconds(prog)
    seen = timekeeper(prog).xtime_sec.value_()
    assert 0 <= seen - raw <= (2 if target.kind == "live" else 0)  # a live clock moves on


def test_image_reads_what_drgn_reads(target: Any, prog: drgn.Program) -> None:
    """
    The image drgn-ss reads physical memory from (an ELF dump mapped by ElfImage, a QEMU
    guest's RAM in the QEMU process by QemuImage) gives the bytes drgn gives.
    """
    if target.kind == "live":
        pytest.skip("no image of a live kernel's memory")
    image = prog.cache.get("drgn_ss.image")
    if image is None and target.kind == "core":
        with pytest.raises(ValueError):  # not ELF: kdump-compressed
            ElfImage(target.path)
        pytest.skip("not an ELF dump")
    assert isinstance(image, ElfImage if target.kind == "core" else QemuImage)
    read = image.reader(lambda phys, size: b"")
    init_net = prog["init_net"].address_of_().value_()
    base = prog["page_offset_base"].value_()
    addresses = [init_net - base] + [start + 4096 for start, end in zip(image.starts, image.ends)
                                     if start + 8192 <= end]
    checked = 0
    for phys in addresses:
        try:
            expected = prog.read(phys, 256, True)
        except drgn.FaultError:
            continue
        assert read(phys, 256) == expected, hex(phys)
        checked += 1
    assert checked >= 2
