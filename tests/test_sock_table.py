"""
drgn_ss._fast.SockTable, the C walk's compact rows, and drgn_ss._fast.HolderMap, the owners
kept as an array, on a small image of memory written here: each row holds what was written,
its record is the record the walk makes without a table, and what a listing does with the
rows (ss's order of families, the selection, the owners' keys, the cells, the users cells)
is what it does with the records and a dict of owners. The kernel matrix compares both with
the Python walks on every kernel (tests/kernel/test_kernel.py, test_ss.py).
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from drgn import FaultError
from drgn_ss.kernel.native import native
from drgn_ss.output.text import _STATE_CELLS, Formatter
from drgn_ss.selection.states import Selection
from drgn_ss.sockets.record import Socket

DIRECT_MAP = 0xFFFF888000000000
NET, INUM = DIRECT_MAP + 0x100, 4026531840
KINDS = ("full", "timewait", "request")
LINK, SIZE, LEAST, NODE = 56, 256, 72, 1024
NOW, HZ = 1_000_000, 250
# Where this image's "struct sock" keeps each field: (offset, size, signed, shift, bits).
F = {
    "net": (0, 8), "family": (16, 2), "state": (18, 1), "rcv_saddr": (20, 4), "daddr": (24, 4),
    "num": (28, 2), "dport": (30, 2), "bound_dev_if": (32, 4, 1), "cookie": (40, 8, 1), "ipv6only": (48, 1),
    "refcnt": (52, 4), "tw_substate": (104, 1), "tw_expires": (112, 8), "req_retrans": (120, 1),
    "req_expires": (128, 8), "uid": (136, 4), "shutdown": (140, 1), "sk_socket": (144, 8), "sk_ino": (152, 8),
    "protocol": (160, 2), "ack_backlog": (164, 4), "max_ack_backlog": (168, 4), "rcv_nxt": (172, 4),
    "copied_seq": (176, 4), "write_seq": (180, 4), "snd_una": (184, 4), "pending": (188, 1),
    "retransmits": (189, 1), "probes_out": (190, 1), "timeout": (192, 8), "keepalive_pprev": (200, 8),
    "keepalive_expires": (208, 8), "rmem_alloc": (216, 4), "wmem_alloc": (220, 4),
    "forward_deficit": (224, 4),
}
LAYOUT: dict[str, Any] = {name: (f[0], f[1], f[2] if len(f) > 2 else 0, 0, 0) for name, f in F.items()}
LAYOUT.update(v6_rcv_saddr=72, v6_daddr=88, tw_end=136, req_end=136, inode_from_socket=0)

V6 = bytes.fromhex("20010db8000000000000000000000001")
# The sockets written: the fields of each (the rest 0), and its record's expected fields.
SOCKETS: list[dict[str, Any]] = [
    {"family": 2, "state": 1, "rcv_saddr": 0x0100007F, "daddr": 0x0100007F, "num": 22, "dport": 0xA0C3,
     "rcv_nxt": 110, "copied_seq": 100, "write_seq": 7, "snd_una": 2, "sk_ino": 1234, "uid": 1000,
     "cookie": 77, "sk_socket": DIRECT_MAP + 0x8000, "pending": 1, "timeout": NOW + 500, "retransmits": 2},
    {"family": 10, "state": 10, "num": 443, "ack_backlog": 3, "max_ack_backlog": 128, "ipv6only": 1,
     "sk_ino": 99, "v6": (V6, bytes(16))},
    {"family": 2, "state": 6, "tw_substate": 6, "rcv_saddr": 0x0100007F, "daddr": 0x0200007F, "num": 40000,
     "dport": 0x5000, "tw_expires": NOW + 2500},
    {"family": 2, "state": 12, "num": 8080, "dport": 0x3930, "req_retrans": 1, "req_expires": NOW - 5},
    {"family": 10, "state": 1, "num": 5000, "dport": 0x8913, "bound_dev_if": -5, "cookie": -2,
     "v6": (bytes(16), V6), "keepalive_pprev": 1, "keepalive_expires": NOW + 250, "probes_out": 3},
    {"family": 2, "state": 7, "num": 53, "rmem_alloc": 10, "forward_deficit": 4, "wmem_alloc": 1,
     "udp": True},
]


def _fast() -> Any:
    fast = native()
    if fast is None:
        pytest.skip("drgn_ss._fast is not built")
    return fast


def _image(sockets: list[dict[str, Any]]) -> tuple[bytearray, list[int]]:
    """An image holding the sockets on one nulls chain, and the bucket's first pointer."""
    image = bytearray(NODE * (len(sockets) + 1))
    for k, values in enumerate(sockets):
        base = NODE * (k + 1)
        fields = {"net": NET, "refcnt": 1, "protocol": 17 if values.get("udp") else 6, **values}
        for name, value in fields.items():
            if name in F:
                offset, size, *signed = F[name]
                data = value.to_bytes(size, "little", signed=bool(signed))
                image[base + offset:base + offset + size] = data
        src, dst = values.get("v6", (bytes(16), bytes(16)))
        image[base + 72:base + 88], image[base + 88:base + 104] = src, dst
        last = k == len(sockets) - 1
        nxt = (7 << 1 | 1) if last else DIRECT_MAP + NODE * (k + 2) + LINK  # a nulls marker ends the chain
        image[base + LINK:base + LINK + 8] = struct.pack("<Q", nxt)
    return image, [DIRECT_MAP + NODE + LINK]


def _mem(image: bytearray) -> tuple[Any, ...]:
    """How drgn_ss._fast reads the image: mapped at the direct map, nothing else readable."""
    def read(addr: int, size: int) -> bytes:
        raise FaultError("not in the image", addr)

    return (bytes(image), -1, [0], [len(image)], [0], DIRECT_MAP, DIRECT_MAP + len(image), read, FaultError)


def _walk(sockets: list[dict[str, Any]], tcp: bool = True, table: Any = None) -> Any:
    fast = _fast()
    image, heads = _image(sockets)
    mem = _mem(image)
    records, buckets, faults, first = fast.walk_sockets(
        mem, heads, LINK, True, SIZE, LEAST, len(sockets) + 1, LAYOUT, {NET: INUM}, tcp, True, NOW, HZ,
        Socket,
        "tcp" if tcp else "udp", KINDS, -1, None, fast.AddressSet(), DIRECT_MAP, DIRECT_MAP + len(image),
        None, {}, 0, 0, table)
    assert (buckets, faults, first) == (0, 0, None)
    return records


def _table() -> Any:
    return _fast().SockTable(Socket, KINDS, NOW, HZ)


def _copy(table: Any) -> Any:
    copy = _table()
    copy.extend(table)
    return copy


def test_rows_hold_what_was_written() -> None:
    tcp = [s for s in SOCKETS if not s.get("udp")]
    table = _walk(tcp, table=_table())
    assert len(table) == 5
    est, listen, tw, req, v6 = list(table)
    assert (est.src, est.sport, est.dst, est.dport) == (b"\x7f\0\0\x01", 22, b"\x7f\0\0\x01", 50080)
    assert (est.recv_q, est.send_q, est.ino, est.uid, est.cookie, est.netns) == (10, 5, 1234, 1000, 77, INUM)
    assert (est.timer, est.timer_ms, est.retrans, est.kind, est.shutdown) == (1, 2000, 2, "full", 0)
    assert (listen.src, listen.recv_q, listen.send_q, listen.v6only) == (V6, 3, 128, True)
    assert (tw.state, tw.kind, tw.timer, tw.timer_ms, tw.shutdown) == (6, "timewait", 3, 10000, None)
    assert (req.state, req.kind, req.timer_ms, req.retrans) == (3, "request", 0, 1)
    assert (v6.ifindex, v6.cookie, v6.dst, v6.v6only, v6.timer, v6.timer_ms) == (-5, -2, V6, None, 2, 1000)
    assert [s.address for s in table] == [DIRECT_MAP + NODE * (k + 1) for k in range(5)]


def test_rows_make_the_records_the_walk_makes_without_a_table() -> None:
    tcp = [s for s in SOCKETS if not s.get("udp")]
    assert list(_walk(tcp, table=_table())) == _walk(tcp)
    udp = [s for s in SOCKETS if s.get("udp")]
    rows = _walk(udp, tcp=False, table=_table())
    assert list(rows) == _walk(udp, tcp=False) and (rows[0].recv_q, rows[0].send_q) == (6, 0)


def test_table_operations_are_those_of_the_records() -> None:
    table = _walk([s for s in SOCKETS if not s.get("udp")], table=_table())
    _walk([s for s in SOCKETS if s.get("udp")], tcp=False, table=table)  # a second walk appends
    records = list(table)
    assert [r.proto for r in records] == ["tcp"] * 5 + ["udp"] and set(table.protos()) == {"tcp", "udp"}
    ordered = _copy(table)
    assert ordered.order_families((2, 10)) is None
    assert list(ordered) == [r for r in records if r.family == 2] + [r for r in records if r.family == 10]
    v6_first = _copy(table)
    v6_first.order_families((10, 2))
    assert list(v6_first) == [r for r in records if r.family == 10] + [r for r in records if r.family == 2]
    v6_first.order_families((10,))
    assert list(v6_first) == [r for r in records if r.family == 10]
    assert table.keys("ino") == [r.ino for r in records]
    assert table.keys("address") == [r.address for r in records]
    v4 = _copy(table)
    v4.order_families((2,))
    assert table.any_ifindex() and not v4.any_ifindex()
    for selection in (Selection(("udp", "tcp"), (2, 10), -1), Selection(("tcp",), (2, 10), 1 << 1),
                      Selection(("udp", "tcp"), (10,), -1 & ~(1 << 6))):
        selected = selection.select(table)
        assert list(selected) == selection.select(records)
    assert selection.select(ordered) is not ordered
    assert Selection(("udp", "tcp"), (2, 10), -1).select(table) is table  # every row: no copy
    both = _table()
    both.extend(table)
    both.extend(both)
    assert list(both) == records + records
    with pytest.raises(IndexError):
        table[len(table)]
    with pytest.raises(TypeError):
        table.extend(records)


@pytest.mark.parametrize("numeric", [True, False])
def test_table_cells_are_socket_cells(numeric: bool) -> None:
    fast = _fast()
    table = _walk([s for s in SOCKETS if not s.get("udp")], table=_table())
    _walk([s for s in SOCKETS if s.get("udp")], tcp=False, table=table)
    fmt = Formatter(numeric, (32768, 60999), lambda n, i: "lo")
    made = fast.table_cells(table, fmt._host_cells, fmt._service_cells, fmt._queues, _STATE_CELLS,
                            numeric, fmt.ephemeral)
    fmt2 = Formatter(numeric, (32768, 60999), lambda n, i: "lo")
    assert made == fmt2._socket_cells(list(table))  # the Python reference


# -- holders: drgn_ss._fast.HolderMap and the users cells of rows ----------------------

FILE_OPS = 0xFFFFFFFF81000000
HOLDERS_LAYOUT = {"max_fds": (0, 4, 0, 0, 0), "fdt": 0, "fd": 8, "f_op": 0, "private_data": 8,
                  "file_span": 16, "socket_file": 0, "socket_sk": 8, "sk_socket": 144,
                  "socket_file_ops": FILE_OPS}


def _held_image(held: dict[int, list[tuple[int, int]]]) -> tuple[bytearray, list[tuple[int, str, int]]]:
    """
    The TCP sockets' image with, after it, a file and a struct socket for each socket held
    ({socket index: [(pid, fd), ...]}), the socket's sk_socket pointing back, and a task for
    each pid: files_struct, fdtable and fd array, each fd at its socket's file.
    """
    image, _ = _image([s for s in SOCKETS if not s.get("udp")])
    file_of = {}
    for k in held:
        file, sock = len(image), len(image) + 32
        image += bytes(64)
        struct.pack_into("<QQ", image, file, FILE_OPS, DIRECT_MAP + sock)
        struct.pack_into("<QQ", image, sock, DIRECT_MAP + file, DIRECT_MAP + NODE * (k + 1))
        struct.pack_into("<Q", image, NODE * (k + 1) + 144, DIRECT_MAP + sock)
        file_of[k] = file
    tasks = []
    for pid in sorted({pid for holders in held.values() for pid, _ in holders}):
        fds = {fd: k for k, holders in held.items() for p, fd in holders if p == pid}
        files = len(image)
        image += bytes(64 + 8 * (max(fds) + 1))
        struct.pack_into("<Q", image, files, DIRECT_MAP + files + 16)  # files->fdt
        struct.pack_into("<IIQ", image, files + 16, max(fds) + 1, 0, DIRECT_MAP + files + 64)
        for fd, k in fds.items():
            struct.pack_into("<Q", image, files + 64 + 8 * fd, DIRECT_MAP + file_of[k])
        tasks.append((pid, f"proc{pid}", DIRECT_MAP + files))
    return image, tasks


def test_holder_map_is_the_owners_dict() -> None:
    from drgn_ss.owners import Owner

    fast = _fast()
    image, tasks = _held_image({0: [(10, 3), (20, 5)], 1: [(10, 4)], 4: [(30, 7)]})
    mem = _mem(image)
    owners, files, task_faults, file_faults, first = fast.socket_holders(mem, tasks, HOLDERS_LAYOUT, Owner)
    held = fast.socket_holders(mem, tasks, HOLDERS_LAYOUT, Owner, True)[0]
    assert (files, task_faults, file_faults, first) == (4, 0, 0, None)
    sk0, sk1, sk4 = (DIRECT_MAP + NODE * (k + 1) for k in (0, 1, 4))
    assert owners[sk0] == [Owner("proc20", 20, 5), Owner("proc10", 10, 3)]  # ss's order: highest pid first
    assert isinstance(held, fast.HolderMap) and dict(held.items()) == owners and len(held) == 3
    assert list(held) == sorted(owners) and held.keys() == owners.keys() and sk1 in held and 5 not in held
    assert held.get(5) is None and held.get(5, ()) == () and held[sk4] == owners[sk4]
    with pytest.raises(KeyError):
        held[5]
    with pytest.raises(TypeError):
        held[sk0] = []  # a key found is not changed
    with pytest.raises(TypeError):
        del held[sk0]
    held[7] = owners[sk1]  # one set (an MPTCP subflow's) is kept apart
    assert held[7] == owners[sk1] and 7 in held and len(held) == 4 and list(held)[-1] == 7


def test_users_cells_of_rows_are_those_of_the_records() -> None:
    from drgn_ss.owners import Owner

    fast = _fast()
    image, tasks = _held_image({0: [(10, 3), (20, 5)], 1: [(10, 4)], 4: [(30, 7)]})
    mem = _mem(image)
    owners = fast.socket_holders(mem, tasks, HOLDERS_LAYOUT, Owner)[0]
    held = fast.socket_holders(mem, tasks, HOLDERS_LAYOUT, Owner, True)[0]
    table = _walk([s for s in SOCKETS if not s.get("udp")], table=_table())
    sk3 = table[3].address
    held[sk3] = owners[table[1].address]  # a subflow given its MPTCP socket's holders
    owners[sk3] = owners[table[1].address]
    fmt = Formatter(True, (1, 2), lambda n, i: "lo", owners, owners_by="sock")
    cells = fast.table_users_cells(table, held, fmt._comm_names)
    assert cells == [fmt.users(s.address) for s in table]
    assert cells[0] == ' users:(("proc20",pid=20,fd=5),("proc10",pid=10,fd=3))' and cells[2] == ""
    assert table.unheld("tcp", held) == [(s.address, s.socket) for s in table
                                         if s.socket and s.address not in owners]


# -- lines: drgn_ss._fast.row_lines against the records' layout -------------------------

def _be16(port: int) -> int:
    """A port as the kernel keeps it (network order), read as a little-endian field."""
    return int.from_bytes(port.to_bytes(2, "big"), "little")


def _many(n: int) -> list[dict[str, Any]]:
    """n established IPv4 sockets of varied ports and queues after a listener, a TIME-WAIT and a request."""
    out = [dict(SOCKETS[k]) for k in (1, 2, 3)]  # (not 4: bound to a device, laid out by Python)
    for k in range(n):
        out.append({"family": 2, "state": 1, "rcv_saddr": 0x0100007F, "daddr": 0x0100007F + (k % 7 << 24),
                    "num": 20000 + k % 300, "dport": _be16(40000 + k % 20000),
                    "rcv_nxt": k % 5000 if k < n - 1000 else 10_000_000 + k,  # wider cells at the end
                    "write_seq": k % 3, "sk_ino": k + 1})
    return out


@pytest.mark.parametrize("header", [True, False])
@pytest.mark.parametrize("disabled", [frozenset(), frozenset({0, 1})])
def test_row_lines_are_the_records_lines(header: bool, disabled: frozenset[int]) -> None:
    """Past ss's render points (5 MB of cells: some 45,000 lines), with and without holders."""
    from drgn_ss.output.rows import row_lines
    from drgn_ss.output.text import render_sockets
    from drgn_ss.owners import Owner

    fast = _fast()
    sockets = _many(90000)
    table = _walk(sockets, table=_table())
    assert len(table) == len(sockets)
    image, tasks = _held_image({0: [(10, 3), (20, 5)], 1: [(10, 4)], 3: [(30, 7)]})  # rows 0, 1, 3
    tasks = [(pid, "wörker" if pid == 30 else comm, files) for pid, comm, files in tasks]  # a non-ASCII name
    mem = _mem(image)
    for held in (None, fast.socket_holders(mem, tasks, HOLDERS_LAYOUT, Owner, True)[0]):
        owners = None if held is None else fast.socket_holders(mem, tasks, HOLDERS_LAYOUT, Owner)[0]
        fmt = Formatter(True, (32768, 60999), lambda n, i: "lo", held, owners_by="sock")
        keep = [i for i in range(10) if i not in disabled]
        assert row_lines(fmt, table, keep, header, _STATE_CELLS) is not None  # C lays these out
        made = "".join(render_sockets(table, fmt, disabled, header, None))
        ref = Formatter(True, (32768, 60999), lambda n, i: "lo", owners, owners_by="sock")
        expected = "".join(render_sockets(list(table), ref, disabled, header, None))
        assert made == expected
        assert len(made.splitlines()) == len(sockets) + header
        lines = made.splitlines()
        assert len(lines[2]) < len(lines[-2])  # the columns grew at a render point
        assert ('"w??rker",pid=30' in made) == (held is not None)  # each byte of the name, as ss 7
