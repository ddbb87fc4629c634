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
from dataclasses import dataclass

from drgn import FaultError, Object, Program, ProgramFlags
from drgn.helpers.linux.fs import for_each_file
from drgn.helpers.linux.list import list_for_each_entry
from drgn_ss.tables import WalkErrors

OWNER_SOURCES = ("auto", "proc", "kernel")


@dataclass(frozen=True)
class Owner:
    """A process holding a socket open: its command name, pid and file descriptor."""

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
    return data[start + 1 : end].decode(errors="replace") if start >= 0 and end > start else ""


def task_comm(task: Object) -> str:
    """
    Get a task's command name (``comm``).

    :param task: ``struct task_struct *``
    """
    return bytes(task.comm.string_()).decode(errors="replace")


def thread_group_leaders(prog: Program, errors: WalkErrors | None = None) -> list[tuple[int, Object]]:
    """
    Get every process (thread group leader), from ``init_task.tasks``, in pid order.
    A list that cannot be followed to its end is cut there (counted in ``errors``).

    :return: (tgid, ``struct task_struct *``) pairs.
    """
    init = prog["init_task"]
    tasks = []
    try:
        for task in list_for_each_entry("struct task_struct", init.tasks.address_of_(), "tasks"):
            try:
                tasks.append((int(task.tgid.value_()), task))
            except FaultError as e:
                if errors is None:
                    raise
                errors.count("tasks", e)
    except FaultError as e:
        if errors is None:
            raise
        errors.count("tasks", e)
    tasks.sort(key=lambda t: t[0])
    return tasks


def _task_sockets(pid: int, task: Object) -> list[tuple[int, Owner]]:
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
            if errors is None:
                raise
            errors.count("tasks", e)
    return _ss_order(entries)


def is_local_live(prog: Program) -> bool:
    """Whether ``prog`` is the kernel this process runs on (so /proc describes it)."""
    flags = prog.flags
    return bool(flags & ProgramFlags.IS_LIVE and flags & ProgramFlags.IS_LOCAL)


def socket_owners(prog: Program, source: str = "auto",
                  errors: WalkErrors | None = None) -> OwnerMap:
    """
    Get the holders of every socket: by /proc on the local live kernel (``auto``),
    else by walking the kernel's tasks; ``proc`` or ``kernel`` forces a source.
    """
    if source not in OWNER_SOURCES:
        raise ValueError(f"unknown owner source {source!r}")
    if source == "proc" or (source == "auto" and is_local_live(prog)):
        if not is_local_live(prog):
            raise ValueError("/proc describes this machine's kernel, not the one being read")
        return proc_owners()
    return kernel_owners(prog, errors)
