"""Which processes hold each socket: one interface, two sources.

- :func:`proc_owners`: a scan of /proc/PID/fd, what ss does; only for the live
  kernel this process runs on, and only the processes its /proc shows.
- :func:`kernel_owners`: a walk of the kernel's task list and file tables, for
  everything else (dumps, ``drgn --qemu``); it sees every process, in every pid
  namespace, numbered as in the initial pid namespace.

Both return, for each socket inode, its holders in ss's order: ss prepends each
(pid, fd) it finds while scanning /proc in ascending order, so the highest pid
comes first and, within a process, the highest fd.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import NamedTuple

from drgn import FaultError, Object, Program
from drgn_ss.layout import is_local_live, kernel_facts, kernel_memory, prog_cached
from drgn_ss.raw import c_string, list_nodes, native
from drgn_ss.tables import WalkErrors, tolerate, tolerate_counted

OWNER_SOURCES = ("auto", "proc", "kernel")


class Owner(NamedTuple):
    """A process holding a socket open: its command name, pid and file descriptor."""

    #: As the kernel has it, decoded with errors="surrogateescape" (every byte kept): the
    #: text output escapes it (:func:`drgn_ss.render.escape_name`).
    comm: str
    pid: int
    fd: int


#: Socket inode number -> its holders, in ss's order.
OwnerMap = dict[int, list[Owner]]


def _ss_order(entries: Iterable[tuple[int, Owner]]) -> OwnerMap:
    out: OwnerMap = {}
    for ino, owner in entries:
        out.setdefault(ino, []).append(owner)
    for holders in out.values():
        holders.sort(key=lambda o: (o.pid, o.fd), reverse=True)
    return out


def proc_owners(proc: str = "/proc") -> OwnerMap:
    """Scan ``proc``/PID/fd for socket links, as ss does."""
    entries: list[tuple[int, Owner]] = []
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        pid = int(name)
        fd_dir = f"{proc}/{name}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        comm = None
        for fd_name in fds:
            try:
                link = os.readlink(f"{fd_dir}/{fd_name}")
            except OSError:
                continue
            if not link.startswith("socket:["):
                continue
            if comm is None:
                comm = _proc_comm(proc, name)
            entries.append((int(link[8:-1]), Owner(comm, pid, int(fd_name))))
    return _ss_order(entries)


def _proc_comm(proc: str, pid: str) -> str:
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return ""
    # "PID (COMM) STATE ...": COMM may itself hold spaces and parentheses.
    start, end = data.find(b"("), data.rfind(b")")
    return data[start + 1 : end].decode(errors="surrogateescape") if start >= 0 and end > start else ""


def task_comm(task: Object) -> str:
    """
    Get a task's command name (``comm``).

    :param task: ``struct task_struct *``
    """
    return bytes(task.comm.string_()).decode(errors="surrogateescape")


def thread_group_leaders(prog: Program, errors: WalkErrors | None = None) -> list[tuple[int, Object]]:
    """
    Get every process (thread group leader), from ``init_task.tasks``, in pid order.
    A list that cannot be followed to its end is cut there (counted in ``errors``).

    :return: (tgid, ``struct task_struct *``) pairs.
    """
    # Imported here: drgn.helpers.linux takes ~50 ms to import, which the fast path skips.
    from drgn.helpers.linux.list import list_for_each_entry
    init = prog["init_task"]
    tasks = []
    try:
        for task in list_for_each_entry("struct task_struct", init.tasks.address_of_(), "tasks"):
            try:
                tasks.append((int(task.tgid.value_()), task))
            except FaultError as e:
                tolerate(errors, "tasks", e)
    except FaultError as e:
        tolerate(errors, "tasks", e)
    tasks.sort(key=lambda t: t[0])
    return tasks


def _task_sockets(pid: int, task: Object) -> list[tuple[int, Owner]]:
    # Imported here: drgn.helpers.linux takes ~50 ms to import, which the fast path skips.
    from drgn.helpers.linux.fs import for_each_file
    out = []
    comm = None
    for fd, file in for_each_file(task):
        inode = file.f_inode.read_()
        if not inode or not stat.S_ISSOCK(inode.i_mode.value_()):
            continue
        if comm is None:
            comm = task_comm(task)
        out.append((int(inode.i_ino.value_()), Owner(comm, pid, fd)))
    return out


def kernel_owners(prog: Program, errors: WalkErrors | None = None) -> OwnerMap:
    """Walk every process's file table for open sockets; count tasks that cannot be read."""
    entries: list[tuple[int, Owner]] = []
    for pid, task in thread_group_leaders(prog, errors):
        try:
            entries += _task_sockets(pid, task)
        except FaultError as e:
            tolerate(errors, "tasks", e)
    return _ss_order(entries)


class _TaskLayout:
    """Offsets for the raw walk of tasks and their file tables, from the facts cache."""

    def __init__(self, prog: Program) -> None:
        facts = kernel_facts(prog)
        T = "struct task_struct"
        self.tasks = facts.offset(T, "tasks")
        self.tgid = facts.field(T, "tgid")
        self.comm = facts.offset(T, "comm")
        self.files = facts.field(T, "files")
        self.span = max(self.tgid.end, self.comm + 16, self.files.end)
        self.fdt = facts.offset("struct files_struct", "fdt")
        self.max_fds = facts.field("struct fdtable", "max_fds")
        self.fd = facts.offset("struct fdtable", "fd")
        self.f_op = facts.offset("struct file", "f_op")
        self.private_data = facts.offset("struct file", "private_data")
        self.file_span = max(self.f_op, self.private_data) + 8
        self.socket_file_ops = facts.symbol("socket_file_ops")
        self.init_task = facts.symbol("init_task")
        #: The same, for drgn_ss._fast.socket_holders.
        self.native = {
            "max_fds": self.max_fds.native,
            "fdt": self.fdt, "fd": self.fd, "f_op": self.f_op, "private_data": self.private_data,
            "file_span": self.file_span, "socket_file_ops": self.socket_file_ops,
        }


#: Most tasks followed before the task list is taken for a loop.
MAX_TASKS = 1 << 22
#: Largest file table read (``fdtable.max_fds``; the kernel's own limit, sysctl fs.nr_open,
#: is 2^20 by default): a larger one is freed or damaged memory.
MAX_FDS = 1 << 24


def raw_thread_group_leaders(prog: Program, errors: WalkErrors | None = None
                             ) -> list[tuple[int, str, int]]:
    """
    Every process, from ``init_task.tasks`` read raw (as :func:`thread_group_leaders`).

    :return: (tgid, comm, ``struct files_struct *`` address) triples, in pid order.
    """
    L = prog_cached(prog, "task_layout", _TaskLayout)
    mem = kernel_memory(prog)
    out = []
    try:
        for pos in list_nodes(mem, L.init_task + L.tasks, MAX_TASKS, "task list"):
            buf = mem.read(pos - L.tasks, L.span)
            out.append((L.tgid.get(buf), c_string(buf, L.comm, 16, "surrogateescape"), L.files.get(buf)))
    except FaultError as e:
        tolerate(errors, "tasks", e)
    out.sort(key=lambda t: t[0])
    return out


def raw_kernel_owners(prog: Program, errors: WalkErrors | None = None,
                      counts: dict[str, int] | None = None) -> OwnerMap:
    """
    Walk every process's file table for open sockets, as :func:`kernel_owners`, but
    with raw reads: each fd array in one read, each open file with one more. The map
    is keyed by ``struct socket`` address (a file's ``private_data``; an
    :class:`~drgn_ss.inet.InetSock`'s ``socket``), which spares reading inodes.

    :param counts: if given, ``counts["files"]`` is set to the number of open files read.
    """
    L = prog_cached(prog, "task_layout", _TaskLayout)
    mem = kernel_memory(prog)
    tasks = raw_thread_group_leaders(prog, errors)
    fast = native()
    if fast is not None:
        owners, nfiles, faults, fault = fast.socket_holders(mem.native(), tasks, L.native, Owner)
        tolerate_counted(errors, {"tasks": faults}, fault)
        if counts is not None:
            counts["files"] = nfiles
        return owners
    f_op, private_data, span, sock_ops = L.f_op, L.private_data, L.file_span, L.socket_file_ops
    entries: list[tuple[int, Owner]] = []
    nfiles = 0
    for pid, comm, files in tasks:
        if not files:
            continue
        try:
            fdt = mem.read_u64(files + L.fdt)
            head = mem.read(fdt, L.fd + 8)
            max_fds = L.max_fds.get(head)
            if max_fds > MAX_FDS:  # as drgn_ss._fast.socket_holders: not a read of gigabytes
                raise FaultError("file table too large: freed?", fdt)
            array = int.from_bytes(head[L.fd : L.fd + 8], "little")
            fds = memoryview(mem.read(array, max_fds * 8)).cast("Q")
            for fd, file in enumerate(fds):
                if not file:
                    continue
                nfiles += 1
                buf = mem.read(file, span)
                if int.from_bytes(buf[f_op : f_op + 8], "little") == sock_ops:
                    sock = int.from_bytes(buf[private_data : private_data + 8], "little")
                    entries.append((sock, Owner(comm, pid, fd)))
        except FaultError as e:
            tolerate(errors, "tasks", e)
    if counts is not None:
        counts["files"] = nfiles
    return _ss_order(entries)


def socket_owners(prog: Program, source: str = "auto", errors: WalkErrors | None = None,
                  counts: dict[str, int] | None = None) -> tuple[OwnerMap, str]:
    """
    Get the holders of every socket: by /proc (``proc``, the live local kernel only) or by
    walking the kernel's tasks (``kernel``); ``auto`` walks the kernel, which measures
    faster than the /proc scan wherever both work (see the benchmark).

    :return: the map, and what it is keyed by: "ino" (socket inode numbers, from /proc)
        or "socket" (``struct socket`` addresses, from the kernel walk).
    """
    if source not in OWNER_SOURCES:
        raise ValueError(f"unknown owner source {source!r}")
    if source == "proc":
        if not is_local_live(prog):
            raise ValueError("/proc describes this machine's kernel, not the one being read")
        return proc_owners(), "ino"
    return raw_kernel_owners(prog, errors, counts), "socket"
