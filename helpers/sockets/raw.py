"""Decode raw IP sockets (``struct raw_sock``, ``raw6_sock``) into
:class:`~drgn_ss.sockets.record.Socket` records with the values raw_diag reports
(net/ipv4/raw_diag.c through inet_sk_diag_fill()): ss's ``-w``.

A raw socket's record has ``proto`` "raw" (its table) and the protocol it was opened for in
``sport``, as inet_diag reports it (``inet_num``); ss names its netid after that protocol
(:func:`raw_netid`), kept in ``extra`` (:class:`RawExtra`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from drgn import FaultError, Program, ProgramFlags
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import kernel_facts, kernel_layout
from drgn_ss.kernel.fields import Unpacker
from drgn_ss.kernel.program import prog_cached
from drgn_ss.kernel.target import kernel_memory, physical_memory_bytes
from drgn_ss.sockets.record import AF_INET, AF_INET6, TCP_CLOSE, TCP_LISTEN, Socket
from drgn_ss.tables.hashtable import Chains, Walked, chain_entries, new_walked
from drgn_ss.tables.raw import raw_table_chains

if TYPE_CHECKING:
    from drgn_ss.kernel.cgroup import CgroupPaths

__all__ = ["NOT_RAW", "RawExtra", "RawLayout", "raw_netid", "raw_sockets"]

#: A socket in a raw table that is not an inet socket of that table's family.
NOT_RAW = "a damaged socket (not a raw socket of its table's family)"
#: ss's proto_name(): the netid of a raw socket, by its protocol.
_NETIDS = {0: "raw", 17: "udp", 6: "tcp", 262: "mptcp", 132: "sctp", 33: "dccp", 58: "icmp6"}


def raw_netid(protocol: int) -> str:
    """ss's netid for a raw socket: its protocol's (proto_name()), ``???`` for most."""
    return _NETIDS.get(protocol, "???")


class RawExtra(NamedTuple):
    """What only a raw socket has."""

    #: ``sk_protocol`` (INET_DIAG_PROTOCOL), which ss names the netid after.
    protocol: int


class RawLayout:
    """Where everything :func:`raw_sockets` reads lives, resolved once per kernel build."""

    def __init__(self, prog: Program) -> None:
        facts = kernel_facts(prog)
        layout = kernel_layout(prog)
        f = facts.field
        S, c = "struct sock", "__sk_common."
        self.common = Unpacker({
            "net": f(S, c + "skc_net.net"), "family": f(S, c + "skc_family"), "state": f(S, c + "skc_state"),
            "rcv_saddr": f(S, c + "skc_rcv_saddr"), "daddr": f(S, c + "skc_daddr"),
            "num": f(S, c + "skc_num"), "bound_dev_if": f(S, c + "skc_bound_dev_if"),
            "cookie": f(S, c + "skc_cookie.counter"), "refcnt": f(S, c + "skc_refcnt.refs.counter")})
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
        self.link_end = facts.offset(S, "__sk_common.skc_node") + 8


def raw_layout(prog: Program) -> RawLayout:
    """``prog``'s :class:`RawLayout`, made once per program."""
    return prog_cached(prog, "raw_layout", RawLayout)


class _Decoder:
    def __init__(self, prog: Program, nets: dict[int, int], cgroups: bool, errors: WalkErrors | None) -> None:
        self.prog, self.mem, self.L = prog, kernel_memory(prog), raw_layout(prog)
        self.nets, self.errors = nets, errors
        self._cgroups: CgroupPaths | None = None
        self.cgroups = cgroups

    def cgroup(self, raw: int) -> str:
        if self._cgroups is None:
            from drgn_ss.kernel.cgroup import CgroupPaths  # only for -e: start-up

            layout = kernel_layout(self.prog)
            self._cgroups = CgroupPaths(kernel_facts(self.prog), self.mem, layout.sock_cgroup_pointer,
                                        layout.kernfs_parent_rcu)
        return self._cgroups.path(raw)

    def decode(self, addr: int, buf: bytes, family: int) -> Socket | None:
        """One socket of the ``family`` table, or None if of a namespace not listed."""
        L = self.L
        net, sk_family, state, rcv_saddr, daddr, num, ifindex, cookie, refcnt = L.common.unpack(buf)
        if net not in self.nets or not refcnt:  # another namespace's, or being freed
            return None
        if sk_family != family:
            raise FaultError(NOT_RAW, addr)
        if len(buf) < L.size:
            buf = self.mem.read(addr, L.size)
        uid, shutdown, sk_socket, cgroup, protocol, rmem, wmem = L.full.unpack(buf)
        if family == AF_INET6:
            src = buf[L.v6_rcv_saddr : L.v6_rcv_saddr + 16]
            dst = buf[L.v6_daddr : L.v6_daddr + 16]
        else:
            src, dst = rcv_saddr.to_bytes(4, "little"), daddr.to_bytes(4, "little")
        if L.sk_ino is not None:
            ino = L.sk_ino.get(buf)
        else:
            ino = self.mem.read_u64(sk_socket + L.inode_from_socket) if sk_socket else 0
        v6only = (bool(L.ipv6only.get(buf)) if family == AF_INET6 and state in (TCP_LISTEN, TCP_CLOSE)
                  else None)
        return Socket("raw", family, state, src, num, dst, 0, ifindex, v6only, rmem & 0xFFFFFFFF,
                      (wmem - 1) & 0xFFFFFFFF, ino, uid, cookie, self.nets[net], shutdown,
                      self.cgroup(cgroup) if self.cgroups else None, "full", addr, 0, 0, 0, sk_socket,
                      RawExtra(protocol))


def raw_sockets(prog: Program, nets: int | Sequence[int], families: Sequence[int] = (AF_INET, AF_INET6),
                errors: WalkErrors | None = None, cgroups: bool = False) -> list[Socket]:
    """
    The raw sockets of a namespace, or of several, in raw_diag's order: the IPv4 table's,
    then the IPv6 table's, each bucket by bucket; of several namespaces, each one's in turn.
    Every raw socket is listed whatever its state, as raw_diag lists them.

    :param cgroups: resolve each socket's cgroup path (``ss -e``)
    """
    facts, mem = kernel_facts(prog), kernel_memory(prog)
    nets = [nets] if isinstance(nets, int) else list(nets)
    L = raw_layout(prog)
    inums: dict[int, int] = {}
    for net in nets:
        try:
            inums[net] = mem.read_u32(net + L.ns_inum)
        except FaultError as e:
            if len(nets) == 1:
                raise
            tolerate(errors, "namespaces", e)
    decoder = _Decoder(prog, inums, cgroups, errors)
    walked = new_walked(mem, physical_memory_bytes(prog), bool(prog.flags & ProgramFlags.IS_LIVE))
    out: list[Socket] = []
    for family in (AF_INET, AF_INET6):
        if family not in families:
            continue
        try:
            if family == AF_INET:
                hashinfo = facts.symbol("raw_v4_hashinfo")
            else:
                hashinfo = facts.symbol("raw_v6_hashinfo")
        except LookupError:  # IPv6 is a module, not loaded: no raw6 sockets
            continue
        _walk(decoder, raw_table_chains(facts, mem, hashinfo), family, walked, out)
    if len(inums) > 1:
        rank = {inum: i for i, inum in enumerate(inums.values())}
        out.sort(key=lambda s: rank[s.netns])
    return out


def _walk(decoder: _Decoder, chains: Chains, family: int, walked: Walked, out: list[Socket]) -> None:
    """Decode a table's sockets of the listed namespaces into ``out``; count what fails."""
    L, errors = decoder.L, decoder.errors
    size = max(L.size, chains.link + 8)
    for first in chains.heads:
        for addr, buf in chain_entries(decoder.mem, first, chains, size, L.link_end, errors, None, walked):
            try:
                s = decoder.decode(addr, buf, family)
            except FaultError as e:
                tolerate(errors, "sockets", e)
                continue
            if s is not None:
                out.append(s)
