"""Who holds a socket, the questions crash's ``net`` answers: the kernel addresses of a
socket (``net -s``'s SOCK and SOCKET, and its file), the sockets one process holds, fd by
fd (``net -s PID``), and every task holding the socket at an address (``net -R``).

Built on the records every family makes (:class:`~drgn_ss.sockets.record.Socket`: the
``struct sock`` in ``address``, its ``struct socket`` in ``socket``) and on the owners
walk (:mod:`drgn_ss.owners`), so a family added later has all of it without a change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from drgn import FaultError, Program
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.program import prog_cached
from drgn_ss.kernel.target import kernel_memory
from drgn_ss.owners import Owner, OwnerMap
from drgn_ss.sockets.record import Socket
from drgn_ss.tasks import TaskLayout

__all__ = ["HeldSocket", "KernelAddresses", "find_socket", "parse_holder_address", "pid_sockets",
           "socket_addresses"]


class KernelAddresses(NamedTuple):
    """Where a socket is in kernel memory: what crash's ``net -s`` shows, and its file."""

    #: ``struct sock *`` (or the minisock's).
    sock: int
    #: ``struct socket *``; 0 where it has none (a minisock, an orphan, a child not yet accepted).
    socket: int
    #: ``struct file *`` of the socket; 0 where it has none (a socket the kernel made for itself).
    file: int


def socket_addresses(prog: Program, socks: Iterable[Socket], errors: WalkErrors | None = None
                     ) -> dict[int, KernelAddresses]:
    """
    The kernel addresses of each socket, by its ``struct sock`` address: the file is read
    from ``socket->file``, believed only where the file's ``private_data`` is that socket
    again (else it is counted in ``errors`` as a file, and given as 0).
    """
    L = prog_cached(prog, "task_layout", TaskLayout)
    mem = kernel_memory(prog)
    out: dict[int, KernelAddresses] = {}
    for s in socks:
        file = 0
        if s.socket:
            try:
                file = mem.read_u64(s.socket + L.socket_file)
                if file and mem.read_u64(file + L.private_data) != s.socket:
                    raise FaultError("a socket's file is not that socket's: damaged", file)
            except FaultError as e:
                tolerate(errors, "files", e)
                file = 0
        out[s.address] = KernelAddresses(s.address, s.socket, file)
    return out


class HeldSocket(NamedTuple):
    """One socket a process holds, on one of its file descriptors."""

    owner: Owner
    sock: Socket


def pid_sockets(socks: Sequence[Socket], owners: OwnerMap, pids: Sequence[int]) -> list[HeldSocket]:
    """
    crash's ``net -s PID``: the sockets the processes ``pids`` hold, one per (pid, fd), in
    the order the pids were given, each process's in fd order.

    :param owners: holders keyed by ``struct sock`` address (:func:`~drgn_ss.owners.kernel_owners`)
    """
    wanted = {pid: i for i, pid in enumerate(dict.fromkeys(pids))}
    held: dict[tuple[int, int], HeldSocket] = {}
    for s in socks:
        for owner in owners.get(s.address, ()):
            if owner.pid in wanted and (owner.pid, owner.fd) not in held:
                held[owner.pid, owner.fd] = HeldSocket(owner, s)
    return sorted(held.values(), key=lambda h: (wanted[h.owner.pid], h.owner.fd))


def parse_holder_address(text: str) -> tuple[str, int]:
    """
    ``--holders``'s argument: ("ino", INODE) for ``ino:INODE``, else ("address", ADDRESS)
    for a kernel address in hex (``0x`` optional) or decimal with ``0d``... as crash takes it.

    :raises ValueError: if it is neither, with what was wrong
    """
    text = text.strip()
    if text.startswith("ino:"):
        number = text[4:]
        if not number.isdigit() or not 0 < int(number) < 1 << 64:
            raise ValueError(f"--holders {text}: an inode number is a positive decimal number")
        return "ino", int(number)
    digits = text[2:] if text.lower().startswith("0x") else text
    try:
        address = int(digits, 16)
    except ValueError:
        raise ValueError(f"--holders {text}: give a kernel address in hex (0xffff...) or ino:INODE") from None
    if not 0 < address < 1 << 64:
        raise ValueError(f"--holders {text}: not a kernel address")
    return "address", address


def find_socket(socks: Sequence[Socket], addresses: dict[int, KernelAddresses], kind: str,
                value: int) -> tuple[Socket, str] | None:
    """
    The socket whose ``struct sock``, ``struct socket``, ``struct file`` or inode ``value``
    is, and which of those it is ("sock", "socket", "file", "inode"); None if none.

    :param kind: "ino" or "address", as :func:`parse_holder_address` says
    """
    found = []
    for s in socks:
        if kind == "ino":
            if s.ino == value:
                found.append((s, "inode"))
            continue
        where = addresses.get(s.address)
        if s.address == value:
            return s, "sock"
        if s.socket and s.socket == value:
            found.append((s, "socket"))
        elif where is not None and where.file and where.file == value:
            found.append((s, "file"))
    # An MPTCP socket's subflows (TCP) share its struct socket, file and inode: it is the one held.
    found.sort(key=lambda match: match[0].proto == "tcp")
    return found[0] if found else None
