"""The raw walk of file tables on a damaged one: both paths (C and pure Python) refuse a
``max_fds`` that no kernel allows, as a fault counted for the task, instead of reading
gigabytes (pure Python: a MemoryError) for it.

The memory is a few fixture structs: files_struct -> fdtable -> fd array -> file."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from drgn import FaultError
from drgn_ss import owners
from drgn_ss.owners import MAX_FDS, Owner, raw_kernel_owners
from drgn_ss.raw import Field, native
from drgn_ss.tables import WalkErrors

FILES, FDT, FDS, FILE, SOCKET_OPS, SOCKET = 0x1000, 0x2000, 0x3000, 0x4000, 0x9000, 0x5000


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
    struct file { f_op at 0; private_data at 8 }."""
    max_fds = Field(0, 4)
    return SimpleNamespace(
        fdt=8, max_fds=max_fds, fd=8, f_op=0, private_data=8, file_span=16, socket_file_ops=SOCKET_OPS,
        native={"max_fds": max_fds.native, "fdt": 8, "fd": 8, "f_op": 0, "private_data": 8,
                "file_span": 16, "socket_file_ops": SOCKET_OPS})


def memory(max_fds: int) -> Memory:
    return Memory({
        FILES: bytes(8) + FDT.to_bytes(8, "little"),
        FDT: max_fds.to_bytes(4, "little") + bytes(4) + FDS.to_bytes(8, "little"),
        FDS: bytes(8 * 3) + FILE.to_bytes(8, "little"),  # fd 3
        FILE: SOCKET_OPS.to_bytes(8, "little") + SOCKET.to_bytes(8, "little"),
    })


@pytest.fixture(params=["C", "Python"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "C" and native() is None:
        pytest.skip("drgn_ss._fast is not built")
    if request.param == "Python":
        monkeypatch.setenv("DRGN_SS_PURE_PYTHON", "1")
    monkeypatch.setattr(owners, "raw_thread_group_leaders", lambda prog, errors: [(42, "srv", FILES)])
    return str(request.param)


def walk(mem: Memory) -> tuple[dict[int, list[Owner]], WalkErrors]:
    prog = SimpleNamespace(cache={"drgn_ss.task_layout": layout(), "drgn_ss.memory": mem})
    errors = WalkErrors()
    return raw_kernel_owners(prog, errors), errors


def test_file_table_walk_finds_the_socket(path: str) -> None:
    found, errors = walk(memory(4))
    assert found == {SOCKET: [Owner("srv", 42, 3)]} and not errors


@pytest.mark.parametrize("max_fds", [MAX_FDS + 1, 0xFFFFFFFF])
def test_a_file_table_too_large_is_a_fault_not_a_read(path: str, max_fds: int) -> None:
    found, errors = walk(memory(max_fds))
    assert found == {}
    assert errors.tasks == 1 and errors.first == f"file table too large: freed?: {FDT:#x}"
