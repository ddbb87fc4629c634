"""Decode netlink sockets (``struct netlink_sock``) into :class:`~drgn_ss.sockets.record.Socket`
records with the values netlink_diag reports (net/netlink/diag.c): ss's ``-f netlink``.

Netlink sockets are in ``nl_table[protocol]`` (32 protocols), shared by every namespace:
each protocol's bound sockets in its rhashtable, then (netlink_diag's second pass) the
members of its multicast groups on ``mc_list``, which netlink_diag reports again because
netlink never links ``sk_node`` (its "already listed" test always fails): ss lists a
socket that joined a group twice, and so does drgn-ss. A netlink socket's record has its
port id in ``sport`` (as a signed int, as ss reads it) and its peer's in ``dport``; the
rest is in ``extra`` (:class:`NetlinkExtra`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from drgn import FaultError, Program, ProgramFlags
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import kernel_facts, kernel_layout
from drgn_ss.kernel.fields import Unpacker
from drgn_ss.kernel.program import prog_cached
from drgn_ss.kernel.target import kernel_memory, physical_memory_bytes
from drgn_ss.sockets.record import TCP_CLOSE, Socket
from drgn_ss.tables.hashtable import Chains, Walked, chain_entries, new_walked
from drgn_ss.tables.rhashtable import rhashtable_chains

__all__ = ["AF_NETLINK", "MAX_LINKS", "NETLINK_CONNECTED", "NOT_NETLINK", "NetlinkExtra", "NetlinkLayout",
           "netlink_sockets"]

AF_NETLINK = 16
#: include/linux/netlink.h: nl_table's protocols.
MAX_LINKS = 32
#: ``sk_state`` of a connected netlink socket (net/netlink/af_netlink.h).
NETLINK_CONNECTED = 1
NOT_NETLINK = "a damaged socket (not a netlink socket)"


class NetlinkExtra(NamedTuple):
    """What only a netlink socket has (struct netlink_diag_msg, NETLINK_DIAG_GROUPS)."""

    #: The netlink protocol (NETLINK_ROUTE 0...): ``sk_protocol``.
    protocol: int
    #: ``sk_state``: 1 connected (then ss shows the peer), 0 not.
    state: int
    dst_group: int
    #: The first word of the groups bitmap (0 if none), which ss -e shows.
    groups: int


class NetlinkLayout:
    """Where everything :func:`netlink_sockets` reads lives, resolved once per kernel build."""

    def __init__(self, prog: Program) -> None:
        facts = kernel_facts(prog)
        layout = kernel_layout(prog)
        f = facts.field
        S, N, c = "struct sock", "struct netlink_sock", "__sk_common."
        self.common = Unpacker({
            "net": f(S, c + "skc_net.net"), "family": f(S, c + "skc_family"), "state": f(S, c + "skc_state"),
            "cookie": f(S, c + "skc_cookie.counter"), "refcnt": f(S, c + "skc_refcnt.refs.counter"),
            "hashed": f(S, c + "skc_node.pprev")})
        self.full = Unpacker({
            "protocol": f(S, "sk_protocol"), "sk_socket": f(S, "sk_socket"), "uid": f(S, "sk_uid.val"),
            "rmem_alloc": f(S, "sk_backlog.rmem_alloc.counter"),
            "wmem_alloc": f(S, "sk_wmem_alloc.refs.counter"),
            "portid": f(N, "portid"), "dst_portid": f(N, "dst_portid"), "dst_group": f(N, "dst_group"),
            "ngroups": f(N, "ngroups"), "groups": f(N, "groups")})
        self.sk_ino = f(S, "sk_ino") if layout.sk_ino else None
        self.inode_from_socket = (facts.offset("struct socket_alloc", "vfs_inode")
                                  - facts.offset("struct socket_alloc", "socket")
                                  + facts.offset("struct inode", "i_ino"))
        self.ns_inum = facts.offset("struct net", "ns.inum")
        self.node = facts.offset(N, "node")
        self.bind_node = facts.offset(S, c + "skc_bind_node")
        self.table_size = facts.size("struct netlink_table")
        self.hash = facts.offset("struct netlink_table", "hash")
        self.mc_list = facts.offset("struct netlink_table", "mc_list")
        self.size = max(self.common.size, self.full.size, self.sk_ino.end if self.sk_ino else 0,
                        self.node + 8, self.bind_node + 8)


def netlink_layout(prog: Program) -> NetlinkLayout:
    """``prog``'s :class:`NetlinkLayout`, made once per program."""
    return prog_cached(prog, "netlink_layout", NetlinkLayout)


class _Lister:
    """One listing's walk of nl_table, each socket of a listed namespace decoded into ``found``."""

    def __init__(self, prog: Program, inums: dict[int, int], errors: WalkErrors | None) -> None:
        self.mem, self.L = kernel_memory(prog), netlink_layout(prog)
        self.inums, self.errors = inums, errors
        self.found: dict[int, list[Socket]] = {net: [] for net in inums}
        self.physical = physical_memory_bytes(prog)
        self.live = bool(prog.flags & ProgramFlags.IS_LIVE)

    def walked(self) -> Walked:
        return new_walked(self.mem, self.physical, self.live)

    def chains(self, chains: Chains, walked: Walked, multicast: bool) -> None:
        """Every socket of some chains (the hash's, or mc_list's: then only those not hashed)."""
        size, least = self.L.size, max(chains.link + 8, self.L.common.size)
        for first in chains.heads:
            for addr, buf in chain_entries(self.mem, first, chains, size, least, self.errors, None, walked):
                try:
                    self.add(addr, buf, multicast)
                except FaultError as e:
                    tolerate(self.errors, "sockets", e)

    def add(self, addr: int, buf: bytes, multicast: bool) -> None:
        L = self.L
        net, family, state, cookie, refcnt, hashed = L.common.unpack(buf)
        if net not in self.inums or not refcnt or (multicast and hashed):
            return
        if family != AF_NETLINK:
            raise FaultError(NOT_NETLINK, addr)
        if len(buf) < L.size:
            buf = self.mem.read(addr, L.size)
        (protocol, sk_socket, uid, rmem, wmem, portid, dst_portid, dst_group, ngroups,
         groups) = L.full.unpack(buf)
        if L.sk_ino is not None:
            ino = L.sk_ino.get(buf)
        else:
            ino = self.mem.read_u64(sk_socket + L.inode_from_socket) if sk_socket else 0
        first_groups = self.mem.read_u64(groups) if groups and ngroups else 0
        signed = portid - (1 << 32) if portid >= 1 << 31 else portid
        peer = dst_portid - (1 << 32) if dst_portid >= 1 << 31 else dst_portid
        self.found[net].append(Socket(
            "nl", AF_NETLINK, TCP_CLOSE, b"", signed, b"", peer, 0, None, rmem & 0xFFFFFFFF,
            (wmem - 1) & 0xFFFFFFFF, ino, uid, cookie, self.inums[net], None, None, "full", addr, 0, 0, 0,
            sk_socket, NetlinkExtra(protocol, state, dst_group, first_groups & 0xFFFFFFFF)))


def netlink_sockets(prog: Program, nets: int | Sequence[int],
                    errors: WalkErrors | None = None) -> list[Socket]:
    """
    The netlink sockets of a namespace, or of several (each one's in turn), in
    netlink_diag's order: protocol by protocol, each one's hash table, then its multicast
    group members (listed again: see the module's doc).
    """
    facts, mem = kernel_facts(prog), kernel_memory(prog)
    L = netlink_layout(prog)
    nets = [nets] if isinstance(nets, int) else list(nets)
    inums: dict[int, int] = {}
    for net in nets:
        try:
            inums[net] = mem.read_u32(net + L.ns_inum)
        except FaultError as e:
            if len(nets) == 1:
                raise
            tolerate(errors, "namespaces", e)
    lister = _Lister(prog, inums, errors)
    try:
        tables = mem.read_u64(facts.symbol("nl_table"))
    except FaultError as e:
        tolerate(errors, "tables", e)
        return []
    for protocol in range(MAX_LINKS):
        table = tables + protocol * L.table_size
        try:
            hashed = rhashtable_chains(facts, mem, table + L.hash, L.node, errors)
            multicast = Chains([mem.read_u64(table + L.mc_list)], L.bind_node, False)
        except FaultError as e:
            tolerate(errors, "tables", e)
            continue
        walked = lister.walked()
        for chains in hashed:
            lister.chains(chains, walked, False)
        lister.chains(multicast, lister.walked(), True)
    return [s for net in inums for s in lister.found[net]]
