"""Which processes hold each socket: one interface, two sources.

- :func:`proc_owners`: a scan of /proc/PID/fd, what ss does; only for the live
  kernel this process runs on, and only the processes its /proc shows.
- :func:`kernel_owners`: a walk of the kernel's task list and file tables, for
  everything else (dumps, ``drgn --qemu``); it sees every process, in every pid
  namespace, numbered as in the initial pid namespace.

Both return, for each socket (an inode number from /proc, a ``struct sock`` address
from the kernel), its holders in ss's order: ss prepends each (pid, fd) it finds
while scanning /proc in ascending order, so the highest pid comes first and, within
a process, the highest fd.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import NamedTuple

from drgn import FaultError, Program
from drgn_ss.kernel.damage import WalkErrors, tolerate, tolerate_counted
from drgn_ss.kernel.memory import Memory
from drgn_ss.kernel.native import native
from drgn_ss.kernel.program import is_local_live, prog_cached
from drgn_ss.kernel.target import kernel_memory
from drgn_ss.tasks import TaskLayout, process_threads, thread_group_leaders

__all__ = [
    "MAX_FDS", "OWNER_SOURCES", "Owner", "OwnerMap", "SOCKET_FILE_DAMAGED", "kernel_owners",
    "kernel_thread_owners", "proc_owners", "socket_owners", "subflow_owners",
]

OWNER_SOURCES = ("auto", "proc", "kernel")


class Owner(NamedTuple):
    """A process holding a socket open: its command name, pid and file descriptor."""

    #: As the kernel has it, decoded with errors="surrogateescape" (every byte kept): the
    #: text output escapes it (:func:`drgn_ss.output.text.escape_name`).
    comm: str
    pid: int
    fd: int
    #: -T: the thread (its task's pid) whose file table holds it; 0 where threads are not asked.
    tid: int = 0


#: Socket inode number -> its holders, in ss's order.
OwnerMap = dict[int, list[Owner]]


def _ss_order(entries: Iterable[tuple[int, Owner]]) -> OwnerMap:
    out: OwnerMap = {}
    for ino, owner in entries:
        out.setdefault(ino, []).append(owner)
    for holders in out.values():
        holders.sort(key=lambda o: (o.pid, o.fd), reverse=True)
    return out


def _ss_thread_order(entries: Iterable[tuple[int, Owner]]) -> OwnerMap:
    """
    -T's holders in ss's order: ss prepends each (thread, fd) as it scans, pid by pid, each
    leader then its other threads, each in fd order; ``entries`` in that scan order.
    """
    out: OwnerMap = {}
    for key, owner in reversed(list(entries)):
        out.setdefault(key, []).append(owner)
    return out


def proc_owners(proc: str = "/proc", threads: bool = False) -> OwnerMap:
    """
    Scan ``proc``/PID/fd for socket links, as ss does; ``threads`` (-T): each other thread's
    too (``proc``/TID/fd for each TID of ``proc``/PID/task), in ss's order, the reverse of
    its scan.
    """
    entries: list[tuple[int, Owner]] = []
    pids = sorted(int(name) for name in os.listdir(proc) if name.isdigit())
    for pid in pids:
        entries += _proc_task_sockets(proc, pid, pid if threads else 0)
        if not threads:
            continue
        try:
            tids = [int(name) for name in os.listdir(f"{proc}/{pid}/task") if name.isdigit()]
        except OSError:
            continue
        for tid in tids:
            if tid != pid:
                entries += _proc_task_sockets(proc, pid, tid)
    return _ss_thread_order(entries) if threads else _ss_order(entries)


def _proc_task_sockets(proc: str, pid: int, tid: int) -> list[tuple[int, Owner]]:
    """The sockets in ``proc``/ID/fd (ID: ``tid``, or ``pid`` where it is 0), by inode, in fd order."""
    task = str(tid or pid)
    fd_dir = f"{proc}/{task}/fd"
    try:
        fds = sorted(int(name) for name in os.listdir(fd_dir) if name.isdigit())
    except OSError:
        return []
    comm = None
    out = []
    for fd in fds:
        try:
            link = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if not link.startswith("socket:["):
            continue
        if comm is None:
            comm = _proc_comm(proc, task)
        out.append((int(link[8:-1]), Owner(comm, pid, fd, tid)))
    return out


def _proc_comm(proc: str, pid: str) -> str:
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return ""
    # "PID (COMM) STATE ...": COMM may itself hold spaces and parentheses.
    start, end = data.find(b"("), data.rfind(b")")
    return data[start + 1 : end].decode(errors="surrogateescape") if start >= 0 and end > start else ""


#: A file table larger than this is damaged (or freed): drgn_ss._fast caps it alike. The
#: kernel's own limit, sysctl fs.nr_open, is at most 2^30, but 16M open files is a table of
#: 128 MB: more than any process here holds.
MAX_FDS = 1 << 24
#: drgn_ss._fast says the same.
SOCKET_FILE_DAMAGED = "a socket file, its socket and its sock do not point at each other: damaged"


def _socket_sock(mem: Memory, L: TaskLayout, file: int, sock: int) -> int:
    """
    The ``struct sock`` a socket file (``file``, its ``private_data`` ``sock``) holds, once
    each points at the other (socket->file, sk->sk_socket); 0 if the socket has none.

    :raises FaultError: if they do not point at each other (damage), or cannot be read
    """
    if mem.read_u64(sock + L.socket_file) != file:
        raise FaultError(SOCKET_FILE_DAMAGED, file)
    sk = mem.read_u64(sock + L.socket_sk)
    if sk and mem.read_u64(sk + L.sk_socket) != sock:
        raise FaultError(SOCKET_FILE_DAMAGED, file)
    return sk


def kernel_owners(prog: Program, errors: WalkErrors | None = None,
                  counts: dict[str, int] | None = None, compact: bool = False) -> OwnerMap:
    """
    Walk every process's file table for open sockets, with raw reads: each fd array in
    one read, each open file with one more. The map
    is keyed by ``struct sock`` address (an :class:`~drgn_ss.sockets.record.Socket`'s
    ``address``), which spares reading inodes: a socket file counts for the sock its
    ``struct socket`` points to only where each points back (socket->file is the file,
    sk->sk_socket the socket); a socket file where they do not is damaged, counted in
    ``errors`` as a file.

    :param counts: if given, ``counts["files"]`` is set to the number of open files read.
    :param compact: where the walk is in C, the map may be a ``drgn_ss._fast.HolderMap``: the
        same mapping, kept as an array, its lists made when asked for (a key that was found
        cannot be set again)
    """
    L = prog_cached(prog, "task_layout", TaskLayout)
    mem = kernel_memory(prog)
    tasks = thread_group_leaders(prog, errors)
    fast = native()
    if fast is not None:
        owners, nfiles, faults, file_faults, fault = fast.socket_holders(mem.native(), tasks, L.native, Owner,
                                                                         compact)
        tolerate_counted(errors, {"tasks": faults, "files": file_faults}, fault)
        if counts is not None:
            counts["files"] = nfiles
        return owners
    entries: list[tuple[int, Owner]] = []
    nfiles = [0]
    for pid, comm, files in tasks:
        if not files:
            continue
        try:
            for fd, sk in _socket_fds(mem, L, files, errors, nfiles):
                entries.append((sk, Owner(comm, pid, fd)))
        except FaultError as e:
            tolerate(errors, "tasks", e)
    if counts is not None:
        counts["files"] = nfiles[0]
    return _ss_order(entries)


def _socket_fds(mem: Memory, L: TaskLayout, files: int, errors: WalkErrors | None,
                nfiles: list[int]) -> list[tuple[int, int]]:
    """
    The sockets open in a file table (``struct files_struct`` at ``files``): (fd, ``struct
    sock`` address) in fd order. A damaged socket file is counted in ``errors``; the open
    files read are added to ``nfiles[0]``.

    :raises FaultError: if the table cannot be read
    """
    fdt = mem.read_u64(files + L.fdt)
    head = mem.read(fdt, L.fd + 8)
    max_fds = L.max_fds.get(head)
    if max_fds > MAX_FDS:
        raise FaultError("file table too large: freed?", fdt)
    array = int.from_bytes(head[L.fd : L.fd + 8], "little")
    fds = memoryview(mem.read(array, max_fds * 8)).cast("Q")
    f_op, private_data, span, sock_ops = L.f_op, L.private_data, L.file_span, L.socket_file_ops
    out = []
    for fd, file in enumerate(fds):
        if not file:
            continue
        nfiles[0] += 1
        buf = mem.read(file, span)
        if int.from_bytes(buf[f_op : f_op + 8], "little") != sock_ops:
            continue
        sock = int.from_bytes(buf[private_data : private_data + 8], "little")
        try:
            sk = _socket_sock(mem, L, file, sock)
        except FaultError as e:
            tolerate(errors, "files", e)
            continue
        if sk:
            out.append((fd, sk))
    return out


def kernel_thread_owners(prog: Program, errors: WalkErrors | None = None,
                         counts: dict[str, int] | None = None) -> OwnerMap:
    """
    ss -T: as :func:`kernel_owners`, one holder per thread whose file table has the socket
    (threads that share one table each hold it), with the thread's id and its own command
    name, in ss's order: the reverse of its scan (pid by pid, each leader then its threads,
    each table in fd order). Keyed by ``struct sock`` address.
    """
    L = prog_cached(prog, "task_layout", TaskLayout)
    mem = kernel_memory(prog)
    tables: dict[int, list[tuple[int, int]]] = {}
    entries: list[tuple[int, Owner]] = []
    nfiles = [0]
    for pid, threads in process_threads(prog, errors):
        for tid, comm, files in threads:
            if files and files not in tables:
                try:
                    tables[files] = _socket_fds(mem, L, files, errors, nfiles)
                except FaultError as e:
                    tolerate(errors, "tasks", e)
                    tables[files] = []
            entries += [(sk, Owner(comm, pid, fd, tid)) for fd, sk in tables.get(files, ())]
    if counts is not None:
        counts["files"] = nfiles[0]
    return _ss_thread_order(entries)


def socket_owners(prog: Program, source: str = "auto", errors: WalkErrors | None = None,
                  counts: dict[str, int] | None = None, threads: bool = False,
                  compact: bool = False) -> tuple[OwnerMap, str]:
    """
    Get the holders of every socket: by /proc (``proc``, the live local kernel only) or by
    walking the kernel's tasks (``kernel``); ``auto`` walks the kernel, which measures
    faster than the /proc scan wherever both work (see the benchmark).

    :param compact: see :func:`kernel_owners`
    :return: the map, and what it is keyed by: "ino" (socket inode numbers, from /proc)
        or "sock" (``struct sock`` addresses, from the kernel walk).
    """
    if source not in OWNER_SOURCES:
        raise ValueError(f"unknown owner source {source!r}")
    if source == "proc":
        if not is_local_live(prog):
            raise ValueError("/proc describes this machine's kernel, not the one being read")
        return proc_owners(threads=threads), "ino"
    if threads:
        return kernel_thread_owners(prog, errors, counts), "sock"
    return kernel_owners(prog, errors, counts, compact), "sock"


def subflow_owners(prog: Program, socks: Iterable[tuple[int, int]], owners: OwnerMap) -> None:
    """
    Give each MPTCP subflow (a TCP socket) the holders of its MPTCP socket, as ss shows
    them (a subflow's ``sk_socket`` is its MPTCP socket's, so /proc gives it the same
    inode), in ``owners`` keyed by ``struct sock``: for each (sock, socket) that has no
    holders, where its socket's sock is another one, that holds it as a subflow
    (``icsk_ulp_ops`` is MPTCP's and its ``ctx->conn`` is that sock).
    """
    from drgn_ss.kernel.facts import kernel_facts

    facts, mem = kernel_facts(prog), kernel_memory(prog)
    try:
        subflow_ops = facts.symbol("subflow_ulp_ops")
    except LookupError:  # no MPTCP
        return
    L = prog_cached(prog, "task_layout", TaskLayout)
    I = "struct inet_connection_sock"  # noqa: E741
    ulp_ops, ulp_data = facts.offset(I, "icsk_ulp_ops"), facts.offset(I, "icsk_ulp_data")
    conn = facts.offset("struct mptcp_subflow_context", "conn")
    for sk, sock in socks:
        if not sock or sk in owners:
            continue
        try:
            parent = mem.read_u64(sock + L.socket_sk)
            if (parent == sk or parent not in owners or mem.read_u64(sk + ulp_ops) != subflow_ops
                    or mem.read_u64(mem.read_u64(sk + ulp_data) + conn) != parent):
                continue
        except FaultError:
            continue  # not a subflow that can be read: no holders, as before
        owners[sk] = owners[parent]
