"""Every family's sockets in one listing, in the order ss lists them (misc/ss.c main():
netlink, packet, unix, raw, UDP, TCP, ...): each family's module walks its own tables.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

from drgn import FaultError, Program
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import kernel_facts
from drgn_ss.kernel.modules import kernel_module
from drgn_ss.kernel.target import kernel_memory
from drgn_ss.sockets.inet import inet_sockets
from drgn_ss.sockets.mptcp import mptcp_sockets
from drgn_ss.sockets.netlink import netlink_sockets
from drgn_ss.sockets.packet import packet_sockets
from drgn_ss.sockets.raw import raw_sockets
from drgn_ss.sockets.record import AF_INET, AF_INET6, Socket
from drgn_ss.sockets.sctp import sctp_sockets
from drgn_ss.sockets.unix import unix_sockets
from drgn_ss.sockets.vsock import vsock_sockets

__all__ = ["LISTED", "NOT_READ", "UNIX_NETIDS", "family_sockets"]

UNIX_NETIDS = ("u_str", "u_dgr", "u_seq")
#: The netids drgn-ss lists.
LISTED = ("nl", "p_raw", "p_dgr", *UNIX_NETIDS, "raw", "udp", "tcp", "sctp", "v_str", "v_dgr", "mptcp")


def family_sockets(prog: Program, nets: int | Sequence[int], protos: Sequence[str],
                   listening: bool = True, established: bool = True, errors: WalkErrors | None = None,
                   inodes: bool = True, cgroups: bool = True, details: bool = False,
                   families: Sequence[int] = (AF_INET, AF_INET6), states: int = -1,
                   rows: bool = False) -> list[Socket]:
    """
    The sockets of the tables ``protos`` names (ss's netids), of a namespace or of several,
    in ss's order; of several, each namespace's in turn, in the order given.

    :param listening: TCP's listening table is walked; ``established``: its established one
    :param inodes: read each inet socket's inode number (unix sockets' always are)
    :param cgroups: resolve each inet socket's cgroup path
    :param details: read what ``ss -e`` shows of unix sockets
    :param families: the IP families whose raw and MPTCP sockets are listed
    :param states: the states whose MPTCP connections are listed (mptcp_diag filters them)
    :param rows: TCP and UDP alone, of one namespace, may come as a ``drgn_ss._fast.SockTable``
        (:func:`~drgn_ss.sockets.inet.inet_sockets`): a sequence of records made on demand
    """
    nets = [nets] if isinstance(nets, int) else list(nets)
    if rows and len(nets) == 1 and set(protos) <= {"udp", "tcp"}:
        inet_protos = tuple(p for p in ("udp", "tcp") if p in protos)
        table = inet_sockets(prog, nets, inet_protos, listening, established, errors, inodes, cgroups,
                             rows=True)
        _not_read(prog, protos, errors)
        return table
    out: list[Socket] = []
    if "nl" in protos:
        out += netlink_sockets(prog, nets, errors)
    if "p_raw" in protos or "p_dgr" in protos:
        out += packet_sockets(prog, nets, errors)
    if any(p in protos for p in UNIX_NETIDS):
        out += unix_sockets(prog, nets, errors, details)
    if "raw" in protos:
        out += raw_sockets(prog, nets, families, errors, cgroups)
    inet = tuple(p for p in ("udp", "tcp") if p in protos)
    if inet:
        out += inet_sockets(prog, nets, inet, listening, established, errors, inodes, cgroups)
    if "sctp" in protos:
        out += _of_module(lambda: sctp_sockets(prog, nets, families, states, errors, cgroups), "SCTP", errors)
    if "v_str" in protos or "v_dgr" in protos:
        out += _of_module(lambda: vsock_sockets(prog, nets, errors), "vsock", errors)
    if "mptcp" in protos:
        out += mptcp_sockets(prog, nets, families, states, errors, cgroups)
    _not_read(prog, protos, errors)
    if len(nets) > 1:  # each namespace's, in the order given
        rank = _ranks(prog, nets)
        out.sort(key=lambda s: rank.get(s[14], len(rank)))  # s.netns
    return out


#: Tables ss lists that drgn-ss does not read yet, by the module that has their sockets.
NOT_READ = {"dccp": "dccp"}


def _not_read(prog: Program, protos: Sequence[str], errors: WalkErrors | None) -> None:
    """Say which tables asked for are not read though their module is loaded (it may hold sockets)."""
    for table, module in NOT_READ.items():
        if table in protos and errors is not None:
            try:
                loaded = kernel_module(prog, module) is not None
            except (FaultError, LookupError):
                loaded = False
            if loaded:
                errors.leave_out(table.upper(), "drgn-ss does not read them yet")


def _of_module(sockets: Callable[[], list[Socket]], family: str, errors: WalkErrors | None) -> list[Socket]:
    """
    The sockets of a family built as a module, or none if its types cannot be had (no debug
    info for the module, no BTF), which ``errors`` notes (or raises LookupError without it).
    """
    try:
        return sockets()
    except LookupError as e:
        if errors is None:
            raise
        errors.leave_out(family, str(e))
    except FaultError as e:  # the module list, or the module's tables, cannot be read
        tolerate(errors, "tables", e)
    return []


def _ranks(prog: Program, nets: list[int]) -> dict[int, int]:
    """Each namespace's place in ``nets``, by its inode number (one that cannot be read, the
    walks counted)."""
    mem = kernel_memory(prog)
    ns_inum = kernel_facts(prog).offset("struct net", "ns.inum")
    rank: dict[int, int] = {}
    for i, net in enumerate(nets):
        with contextlib.suppress(FaultError):
            rank.setdefault(mem.read_u32(net + ns_inum), i)
    return rank
