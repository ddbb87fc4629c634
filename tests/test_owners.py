"""The raw walk of file tables on a damaged one: both paths (C and pure Python) refuse a
``max_fds`` that no kernel allows, as a fault counted for the task, instead of reading
gigabytes (pure Python: a MemoryError) for it.

The memory is a few fixture structs: files_struct -> fdtable -> fd array -> file."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from drgn import FaultError
from drgn_ss import owners
from drgn_ss.kernel.damage import WalkErrors
from drgn_ss.kernel.fields import Field
from drgn_ss.kernel.native import native
from drgn_ss.owners import MAX_FDS, Owner, kernel_owners

FILES, FDT, FDS, FILE, SOCKET_OPS, SOCKET, SK = 0x1000, 0x2000, 0x3000, 0x4000, 0x9000, 0x5000, 0x6000


class Memory:
    """Kernel memory of a few structs: a read outside them faults, as drgn's does."""

    def __init__(self, regions: dict[int, bytes]) -> None:
        self.regions = regions

    def read(self, addr: int, size: int) -> bytes:
        for start, data in self.regions.items():
            if start <= addr and addr + size <= start + len(data):
                return data[addr - start : addr - start + size]
        raise FaultError("could not read memory", addr)

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def native(self) -> tuple[object, ...]:
        return (None, -1, [], [], [], 0, 0, self.read, FaultError)


def layout() -> SimpleNamespace:
    """struct files_struct { ...; fdt at 8 }, struct fdtable { u32 max_fds; fd at 8 },
    struct file { f_op at 0; private_data at 8 }, struct socket { file at 0; sk at 8 },
    struct sock { sk_socket at 0 }."""
    max_fds = Field(0, 4)
    return SimpleNamespace(
        fdt=8, max_fds=max_fds, fd=8, f_op=0, private_data=8, file_span=16, socket_file_ops=SOCKET_OPS,
        socket_file=0, socket_sk=8, sk_socket=0,
        native={"max_fds": max_fds.native, "fdt": 8, "fd": 8, "f_op": 0, "private_data": 8,
                "file_span": 16, "socket_file_ops": SOCKET_OPS, "socket_file": 0, "socket_sk": 8,
                "sk_socket": 0})


def u64(value: int) -> bytes:
    return value.to_bytes(8, "little")


def memory(max_fds: int, socket_file: int = FILE, sk_socket: int = SOCKET) -> Memory:
    return Memory({
        FILES: bytes(8) + u64(FDT),
        FDT: max_fds.to_bytes(4, "little") + bytes(4) + u64(FDS),
        FDS: bytes(8 * 3) + u64(FILE),  # fd 3
        FILE: u64(SOCKET_OPS) + u64(SOCKET),
        SOCKET: u64(socket_file) + u64(SK),
        SK: u64(sk_socket),
    })


@pytest.fixture(params=["C", "Python"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "C" and native() is None:
        pytest.skip("drgn_ss._fast is not built")
    if request.param == "Python":
        monkeypatch.setenv("DRGN_SS_PURE_PYTHON", "1")
    monkeypatch.setattr(owners, "thread_group_leaders", lambda prog, errors: [(42, "srv", FILES)])
    return str(request.param)


def walk(mem: Memory) -> tuple[dict[int, list[Owner]], WalkErrors]:
    prog = SimpleNamespace(cache={"drgn_ss.task_layout": layout(), "drgn_ss.memory": mem})
    errors = WalkErrors()
    return kernel_owners(prog, errors), errors


def test_file_table_walk_finds_the_socket(path: str) -> None:
    found, errors = walk(memory(4))
    assert found == {SK: [Owner("srv", 42, 3)]} and not errors


@pytest.mark.parametrize(("socket_file", "sk_socket"), [(FILE + 0x100, SOCKET), (FILE, SOCKET + 0x100)])
def test_a_socket_that_does_not_point_back_has_no_owner(path: str, socket_file: int, sk_socket: int) -> None:
    """A file whose socket names another file, or whose sock names another socket: damage, counted."""
    found, errors = walk(memory(4, socket_file, sk_socket))
    assert found == {} and errors.files == 1 and errors.tasks == 0
    assert errors.first.startswith("a socket file, its socket and its sock do not point at each other")


@pytest.mark.parametrize("max_fds", [MAX_FDS + 1, 0xFFFFFFFF])
def test_a_file_table_too_large_is_a_fault_not_a_read(path: str, max_fds: int) -> None:
    found, errors = walk(memory(max_fds))
    assert found == {}
    assert errors.tasks == 1 and errors.first == f"file table too large: freed?: {FDT:#x}"
