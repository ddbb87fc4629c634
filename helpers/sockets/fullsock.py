"""Full inet sockets other than TCP's and UDP's (raw, MPTCP, SCTP...) decoded as
inet_sk_diag_fill() reports any ``struct sock``: the endpoints, state, inode, uid, cookie,
shutdown, cgroup and v6only; queues as sk_rmem_alloc_get() and sk_wmem_alloc_get(). Each
family's module then sets what its ``*_diag`` module reports otherwise.
"""

from __future__ import annotations

import _socket as socket
from typing import TYPE_CHECKING

from drgn import FaultError, Program
from drgn_ss.kernel.facts import kernel_facts, kernel_layout
from drgn_ss.kernel.fields import Unpacker
from drgn_ss.kernel.program import prog_cached
from drgn_ss.kernel.target import kernel_memory
from drgn_ss.sockets.record import AF_INET6, TCP_CLOSE, TCP_LISTEN, Socket

if TYPE_CHECKING:
    from drgn_ss.kernel.cgroup import CgroupPaths

__all__ = ["FullSockDecoder", "FullSockLayout", "OTHER_FAMILY", "full_sock_layout"]

#: A socket in a table of one IP family that is of another.
OTHER_FAMILY = "a damaged socket (not of its table's family)"


class FullSockLayout:
    """Where :class:`FullSockDecoder` reads a ``struct sock``'s fields, resolved once per build."""

    def __init__(self, prog: Program) -> None:
        facts = kernel_facts(prog)
        layout = kernel_layout(prog)
        f = facts.field
        S, c = "struct sock", "__sk_common."
        self.common = Unpacker({
            "net": f(S, c + "skc_net.net"), "family": f(S, c + "skc_family"), "state": f(S, c + "skc_state"),
            "rcv_saddr": f(S, c + "skc_rcv_saddr"), "daddr": f(S, c + "skc_daddr"),
            "num": f(S, c + "skc_num"), "dport": f(S, c + "skc_dport"),
            "bound_dev_if": f(S, c + "skc_bound_dev_if"), "cookie": f(S, c + "skc_cookie.counter"),
            "refcnt": f(S, c + "skc_refcnt.refs.counter")})
        self.full = Unpacker({
            "uid": f(S, "sk_uid.val"), "shutdown": f(S, "sk_shutdown"), "sk_socket": f(S, "sk_socket"),
            "cgroup": f(S, "sk_cgrp_data.cgroup" if layout.sock_cgroup_pointer else "sk_cgrp_data.val"),
            "protocol": f(S, "sk_protocol"), "rmem_alloc": f(S, "sk_backlog.rmem_alloc.counter"),
            "wmem_alloc": f(S, "sk_wmem_alloc.refs.counter")})
        self.ipv6only = f(S, c + "skc_ipv6only")
        self.v6_rcv_saddr = facts.offset(S, c + "skc_v6_rcv_saddr")
        self.v6_daddr = facts.offset(S, c + "skc_v6_daddr")
        self.sk_ino = f(S, "sk_ino") if layout.sk_ino else None
        self.inode_from_socket = (facts.offset("struct socket_alloc", "vfs_inode")
                                  - facts.offset("struct socket_alloc", "socket")
                                  + facts.offset("struct inode", "i_ino"))
        self.ns_inum = facts.offset("struct net", "ns.inum")
        self.size = max(self.common.size, self.full.size, self.ipv6only.end, self.v6_daddr + 16,
                        self.v6_rcv_saddr + 16, self.sk_ino.end if self.sk_ino else 0)


def full_sock_layout(prog: Program) -> FullSockLayout:
    """``prog``'s :class:`FullSockLayout`, made once per program."""
    return prog_cached(prog, "full_sock_layout", FullSockLayout)


class FullSockDecoder:
    """
    Decode full inet sockets of some namespaces (``nets``: ``struct net *`` -> inode number);
    with ``cgroups``, each one's cgroup path (``ss -e``).
    """

    def __init__(self, prog: Program, nets: dict[int, int], cgroups: bool) -> None:
        self.prog, self.mem, self.L = prog, kernel_memory(prog), full_sock_layout(prog)
        self.nets, self.cgroups = nets, cgroups
        self._cgroups: CgroupPaths | None = None

    def cgroup(self, raw: int) -> str:
        if self._cgroups is None:
            from drgn_ss.kernel.cgroup import CgroupPaths  # only for -e: start-up

            layout = kernel_layout(self.prog)
            self._cgroups = CgroupPaths(kernel_facts(self.prog), self.mem, layout.sock_cgroup_pointer,
                                        layout.kernfs_parent_rcu)
        return self._cgroups.path(raw)

    def decode(self, addr: int, buf: bytes, proto: str, family: int | None = None) -> Socket | None:
        """
        The socket at ``addr`` (``buf``: its first bytes) as table ``proto`` lists it, its
        ``extra`` holding ``sk_protocol`` for the caller to replace; None if it is of a
        namespace not listed, or being freed.

        :param family: the family its table holds (checked), or None for either
        :raises FaultError: if it is of another family, or its bytes cannot be read
        """
        L = self.L
        net, sk_family, state, rcv_saddr, daddr, num, dport, ifindex, cookie, refcnt = L.common.unpack(buf)
        if net not in self.nets or not refcnt:
            return None
        if (family is not None and sk_family != family) or sk_family not in (socket.AF_INET, AF_INET6):
            raise FaultError(OTHER_FAMILY, addr)
        if len(buf) < L.size:
            buf = self.mem.read(addr, L.size)
        uid, shutdown, sk_socket, cgroup, protocol, rmem, wmem = L.full.unpack(buf)
        if sk_family == AF_INET6:
            src = buf[L.v6_rcv_saddr : L.v6_rcv_saddr + 16]
            dst = buf[L.v6_daddr : L.v6_daddr + 16]
        else:
            src, dst = rcv_saddr.to_bytes(4, "little"), daddr.to_bytes(4, "little")
        if L.sk_ino is not None:
            ino = L.sk_ino.get(buf)
        else:
            ino = self.mem.read_u64(sk_socket + L.inode_from_socket) if sk_socket else 0
        v6only = (bool(L.ipv6only.get(buf)) if sk_family == AF_INET6 and state in (TCP_LISTEN, TCP_CLOSE)
                  else None)
        return Socket(proto, sk_family, state, src, num, dst, socket.ntohs(dport), ifindex, v6only,
                      rmem & 0xFFFFFFFF, (wmem - 1) & 0xFFFFFFFF, ino, uid, cookie, self.nets[net], shutdown,
                      self.cgroup(cgroup) if self.cgroups else None, "full", addr, 0, 0, 0, sk_socket,
                      protocol)
