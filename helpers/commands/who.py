"""The options that say who holds a socket, past ss's -p: --kernel-users, --containers,
--addresses, --pid and --holders; they wire :mod:`drgn_ss.holders`,
:mod:`drgn_ss.kernel_users` and :mod:`drgn_ss.containers` into a listing's
:class:`~drgn_ss.output.text.Formatter`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from drgn import Program
from drgn_ss.commands.common import Failure, UsageError
from drgn_ss.kernel.damage import WalkErrors
from drgn_ss.kernel.strings import escape_name, json_name
from drgn_ss.output.text import Formatter
from drgn_ss.owners import OwnerMap
from drgn_ss.sockets.record import Socket

__all__ = ["prepare_who_options", "process_containers", "who_listing"]


def prepare_who_options(args: argparse.Namespace) -> None:
    """
    Check the options and set what they imply, before the sockets are selected: --pid and
    --holders list every family in every state (unless tables or states are named) with
    their holders from the kernel's file tables; --holders looks in every namespace.
    """
    if args.kernel_users and not (args.processes or args.pid or args.holders):
        raise UsageError("--kernel-users names who uses a socket beside its processes: give -p too")
    if args.containers and not (args.processes or args.all_netns or args.pid or args.holders):
        raise UsageError("--containers says what processes run in: give -p or --all-netns too")
    if args.pid and args.holders:
        raise UsageError("--pid lists a process's sockets, --holders a socket's processes: give one")
    if not (args.pid or args.holders):
        return
    if args.owners == "proc":
        raise UsageError("--pid and --holders read the kernel's file tables: not with --owners proc")
    if args.peers:
        raise UsageError("--peers does not go with --pid or --holders")
    if args.summary:
        raise UsageError("the summary is of every socket: it does not go with --pid or --holders")
    if not args.tables:
        args.tables = [("query", "all")]
    if not args.listening:
        args.all = True
    args.processes = True
    if args.holders:
        args.threads = True  # every thread whose file table holds it
        if args.netns is None and not args.named_netns:
            args.all_netns = True


def who_listing(prog: Program, args: argparse.Namespace, socks: list[Socket], owners: OwnerMap | None,
                fmt: Formatter, errors: WalkErrors) -> list[Socket]:
    """
    The sockets to show, and ``fmt`` told what the options add: for --pid, each (pid, fd)
    on a line of its own; for --holders, the one socket asked about.

    :raises Failure: a pid with no process, an address that is no socket's
    """
    by_sock = fmt.owners_by == "sock"  # else by inode (--owners proc); --pid, --holders: by sock
    addresses = None
    if args.holders:
        socks, addresses = _held_socket(prog, args.holders, socks, errors)
        # Its holders on its line, whatever its family (ss shows netlink sockets none).
        fmt.owners, fmt.owners_by = {1: (owners or {}).get(socks[0].address, [])}, "line"
    if args.pid:
        socks = _pid_lines(prog, args.pid, socks, owners or {}, fmt, errors)
    kernel = None
    if args.kernel_users or args.holders:
        from drgn_ss.kernel_users import kernel_users

        held = owners or {}
        unheld = [s for s in socks if not held.get(s.address if by_sock else s.ino)]
        kernel = kernel_users(prog, unheld, errors)
    if args.addresses or args.holders:
        from drgn_ss.holders import socket_addresses

        addresses = addresses or socket_addresses(prog, socks, errors)
    if args.containers:
        _runs_in(prog, fmt, owners, errors)
    if kernel is not None or addresses is not None:
        fmt.annotate(*_annotations(kernel, addresses))
    return socks


def _held_socket(prog: Program, text: str, socks: list[Socket], errors: WalkErrors
                 ) -> tuple[list[Socket], dict[int, Any]]:
    """--holders: the socket at this address (or inode), alone, and the addresses of all."""
    from drgn_ss.holders import find_socket, parse_holder_address, socket_addresses

    try:
        kind, value = parse_holder_address(text)
    except ValueError as e:
        raise UsageError(str(e)) from None
    addresses = socket_addresses(prog, socks, errors)
    found = find_socket(socks, addresses, kind, value)
    if found is None:
        what = "inode number" if kind == "ino" else "struct sock, struct socket or struct file"
        raise Failure(f"--holders {text}: this is no socket's {what}"
                      + (" (the listing was partial)" if errors else ""))
    return [found[0]], addresses


def _pid_lines(prog: Program, pids: Sequence[int], socks: list[Socket], owners: OwnerMap, fmt: Formatter,
               errors: WalkErrors) -> list[Socket]:
    """--pid: one line per (pid, fd), each showing that holder alone."""
    from drgn_ss.holders import pid_sockets
    from drgn_ss.tasks import thread_group_leaders

    known = {pid for pid, _comm, _files in thread_group_leaders(prog, errors)}
    missing = [pid for pid in pids if pid not in known]
    if missing:
        partial = " (the task list was partial)" if errors else ""
        raise Failure(f"--pid {missing[0]}: no such process{partial}")
    held = pid_sockets(socks, owners, pids)
    fmt.owners = {line: [h.owner] for line, h in enumerate(held, 1)}
    fmt.owners_by = "line"
    return [h.sock for h in held]


def process_containers(prog: Program, errors: WalkErrors) -> dict[int, tuple[str, dict[str, Any]]]:
    """What each process runs in (a container, pod or unit: as text and as JSON), by pid; none if nothing."""
    from drgn_ss.containers import container_fields, container_of, container_text
    from drgn_ss.namespaces import process_cgroups

    runs_in: dict[int, tuple[str, dict[str, Any]]] = {}
    for pid, path in process_cgroups(prog, errors).items():
        found = container_of(path)
        text = container_text(found) if found is not None else ""
        if found is not None and text:
            runs_in[pid] = (text, container_fields(found))
    return runs_in


def _runs_in(prog: Program, fmt: Formatter, owners: OwnerMap | None, errors: WalkErrors) -> None:
    """--containers: what each holder's process, and each namespace's tag, runs in."""
    runs_in = process_containers(prog, errors)
    if owners is not None:
        fmt.runs_in = runs_in
    if fmt.netns_tags is not None:
        for inum, tag in fmt.netns_tags.items():
            if tag.process is not None and tag.process.pid in runs_in:
                fmt.netns_tags[inum] = tag._replace(runs_in=runs_in[tag.process.pid])


def _annotations(kernel: dict[int, Any] | None, addresses: dict[int, Any] | None) -> tuple[Any, Any]:
    """The text after a socket's users, and its JSON fields: kernel:(...) and kaddr:(...)."""
    def text(s: Socket) -> str:
        out = ""
        user = kernel.get(s.address) if kernel is not None else None
        if user is not None:
            detail = f",{escape_name(user.detail)}" if user.detail else ""
            out += f" kernel:({escape_name(user.name)}{detail})"
        where = addresses.get(s.address) if addresses is not None else None
        if where is not None:
            out += f" kaddr:(sock={where.sock:#x},socket={where.socket:#x},file={where.file:#x})"
        return out

    def fields(s: Socket) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if kernel is not None:
            user = kernel.get(s.address)
            out["kernel_user"] = None if user is None else {
                "name": json_name(user.name), "detail": json_name(user.detail) or None,
                "callback": json_name(user.callback)}
        if addresses is not None:
            where = addresses.get(s.address)
            out["kernel_addresses"] = None if where is None else {
                key: f"{value:#x}" if value else None for key, value in where._asdict().items()}
        return out

    return text, fields
