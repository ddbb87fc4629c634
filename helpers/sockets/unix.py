"""Decode unix sockets (``struct unix_sock``) into :class:`~drgn_ss.sockets.record.Socket`
records with the values unix_diag reports (net/unix/diag.c): ss's u_str, u_dgr and u_seq.

A unix socket's record puts its bound name (raw bytes: a path, or an abstract name that
starts with a NUL) in ``src``, its inode in ``sport`` and its peer's inode in ``dport``, as
ss prints them (``NAME INODE`` and ``* PEER_INODE``); what only unix sockets have is in
``extra``, a :class:`UnixExtra`.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import NamedTuple

from drgn import FaultError, Program, ProgramFlags
from drgn_ss.kernel.damage import WalkErrors, tolerate, tolerate_counted
from drgn_ss.kernel.facts import kernel_facts, kernel_layout
from drgn_ss.kernel.fields import Field, Unpacker
from drgn_ss.kernel.memory import Memory, list_nodes
from drgn_ss.kernel.native import native
from drgn_ss.kernel.program import prog_cached
from drgn_ss.kernel.target import kernel_memory, object_limit, physical_memory_bytes
from drgn_ss.sockets.record import TCP_LISTEN, Socket
from drgn_ss.tables.hashtable import MAX_CHAIN, Chains, Walked, chain_entries, new_walked
from drgn_ss.tables.unix import unix_table_chains, unix_table_shared

__all__ = ["AF_UNIX", "NOT_UNIX", "SOCK_DGRAM", "SOCK_SEQPACKET", "SOCK_STREAM", "UnixExtra",
           "UnixLayout", "ss_name", "unix_layout", "unix_netid", "unix_sock_inode", "unix_sockets"]

AF_UNIX = 1
# include/linux/net.h: enum sock_type
SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET = 1, 2, 5
#: A socket in the unix table that is not a unix socket, or in no state a socket has.
NOT_UNIX = "a damaged socket (not a unix socket)"
#: sizeof(sockaddr_un.sun_path): no bound name is longer.
_SUN_PATH = 108
#: A listener's accept queue holds at most sk_max_ack_backlog (an int) connections, and
#: a receive queue no more skbs than memory could: walks stop there.
_NETIDS = {SOCK_STREAM: "u_str", SOCK_SEQPACKET: "u_seq"}


def ss_name(name: bytes) -> bytes:
    """
    A bound name as ss holds it (unix_show_sock()): an abstract name's NULs as "@" (its
    leading one first), a path up to its NUL.
    """
    if name[:1] == b"\0":
        return name.replace(b"\0", b"@")
    return name.split(b"\0", 1)[0]


def unix_sock_inode(mem: Memory, L: UnixLayout, sk: int) -> int:
    """sock_i_ino(): the inode of a unix sock's ``struct socket`` (0: none, e.g. not accepted yet)."""
    if L.sk_ino is not None:
        return mem.read_u64(sk + L.sk_ino.offset)
    sock = mem.read_u64(sk + L.socket_sk_socket)
    return mem.read_u64(sock + L.inode_from_socket) if sock else 0


def unix_netid(sock_type: int) -> str:
    """ss's netid for a unix socket type (unix_netid_name(): anything else is u_dgr)."""
    return _NETIDS.get(sock_type, "u_dgr")


class UnixExtra(NamedTuple):
    """What only a unix socket has, as unix_diag reports it."""

    #: ``sk_type``: SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET.
    type: int
    #: The bound name (UNIX_DIAG_NAME), as the kernel holds it: a path (up to a NUL) or an
    #: abstract name (a leading NUL); None if the socket is not bound.
    name: bytes | None
    #: A path name's file: its inode number and the device (the kernel's dev_t) of its
    #: file system (UNIX_DIAG_VFS); None if none, or details were not asked for.
    vfs: tuple[int, int] | None = None
    #: A listener's connections waiting in its accept queue: the inode of each one's peer,
    #: the connecting socket (UNIX_DIAG_ICONS); None if not a listener or not asked for.
    icons: tuple[int, ...] | None = None
    #: Address of the peer's ``struct sock`` (0: none).
    peer: int = 0


class UnixLayout:
    """Where everything :func:`unix_sockets` reads lives, resolved once per kernel build."""

    def __init__(self, prog: Program) -> None:
        facts = kernel_facts(prog)
        layout = kernel_layout(prog)
        f = facts.field
        S, U = "struct sock", "struct unix_sock"
        c = "__sk_common."
        common = {
            "net": f(S, c + "skc_net.net"), "family": f(S, c + "skc_family"), "state": f(S, c + "skc_state"),
            "cookie": f(S, c + "skc_cookie.counter"), "refcnt": f(S, c + "skc_refcnt.refs.counter")}
        self.common = Unpacker(common)
        full: dict[str, Field] = {
            "type": f(S, "sk_type"), "shutdown": f(S, "sk_shutdown"), "sk_socket": f(S, "sk_socket"),
            "uid": f(S, "sk_uid.val"), "max_ack_backlog": f(S, "sk_max_ack_backlog"),
            "wmem_alloc": f(S, "sk_wmem_alloc.refs.counter"), "rq_next": f(S, "sk_receive_queue.next"),
            "rq_qlen": f(S, "sk_receive_queue.qlen"), "addr": f(U, "addr"), "peer": f(U, "peer"),
            "dentry": f(U, "path.dentry")}
        self.full = Unpacker(full)
        self.sk_ino = f(S, "sk_ino") if layout.sk_ino else None
        self.inq_len = f(U, "inq_len") if layout.unix_inq_len else None
        self.size = max(self.full.size, self.common.size, *(x.end for x in (self.sk_ino, self.inq_len) if x))
        self.receive_queue = facts.offset(S, "sk_receive_queue")
        self.socket_sk_socket = facts.offset(S, "sk_socket")
        # SOCK_INODE(sock)->i_ino, from the struct socket pointer.
        self.inode_from_socket = (facts.offset("struct socket_alloc", "vfs_inode")
                                  - facts.offset("struct socket_alloc", "socket")
                                  + facts.offset("struct inode", "i_ino"))
        self.address_len = f("struct unix_address", "len")
        self.address_name = (facts.offset("struct unix_address", "name")
                             + facts.offset("struct sockaddr_un", "sun_path"))
        self.skb_len = facts.offset("struct sk_buff", "len")
        self.skb_sk = facts.offset("struct sk_buff", "sk")
        self.skb_consumed = (facts.offset("struct sk_buff", "cb")
                             + facts.offset("struct unix_skb_parms", "consumed"))
        self.unix_peer = facts.offset(U, "peer")
        self.d_inode = facts.offset("struct dentry", "d_inode")
        self.d_sb = facts.offset("struct dentry", "d_sb")
        self.i_ino = facts.offset("struct inode", "i_ino")
        self.s_dev = facts.offset("struct super_block", "s_dev")
        self.ns_inum = facts.offset("struct net", "ns.inum")
        self.link_end = facts.offset(S, "__sk_common.skc_node") + 8
        #: The same, for drgn_ss._fast.walk_unix.
        self.native: dict[str, object] = {
            name: fl.native if fl else None for name, fl in {
                **common, **full, "sk_ino": self.sk_ino, "inq_len": self.inq_len,
                "address_len": self.address_len}.items()}
        self.native.update(receive_queue=self.receive_queue, sk_socket_at=self.socket_sk_socket,
                           inode_from_socket=self.inode_from_socket, address_name=self.address_name,
                           skb_len=self.skb_len, skb_consumed=self.skb_consumed)


def unix_layout(prog: Program) -> UnixLayout:
    """``prog``'s :class:`UnixLayout`, made once per program."""
    return prog_cached(prog, "unix_layout", UnixLayout)


class _Decoder:
    """Decode the unix sockets of a listing; one per listing."""

    def __init__(self, prog: Program, details: bool, errors: WalkErrors | None) -> None:
        self.prog = prog
        self.mem = kernel_memory(prog)
        self.L = unix_layout(prog)
        self.details = details
        self.errors = errors
        self.skb_limit = object_limit(prog, "struct sk_buff")
        self._inodes: dict[int, int] = {}

    def inode(self, sk: int) -> int:
        """:func:`unix_sock_inode`, read once per sock."""
        if sk not in self._inodes:
            self._inodes[sk] = unix_sock_inode(self.mem, self.L, sk)
        return self._inodes[sk]

    def queue(self, sk: int) -> list[int]:
        """The skbs of a sock's receive queue, in order (bounded, loop-checked)."""
        return list(list_nodes(self.mem, sk + self.L.receive_queue, self.skb_limit, "a receive queue"))

    def unread(self, sk: int, sock_type: int, rq_next: int, rq_qlen: int, inq_len: int | None) -> int:
        """unix_inq_len(): the bytes waiting (stream, seqpacket) or the next datagram's."""
        if not rq_qlen and rq_next == sk + self.L.receive_queue:
            return 0
        L, mem = self.L, self.mem
        if sock_type == SOCK_STREAM and inq_len is not None:
            return inq_len
        if sock_type in (SOCK_STREAM, SOCK_SEQPACKET):
            return sum((mem.read_u32(skb + L.skb_len) - mem.read_u32(skb + L.skb_consumed)) & 0xFFFFFFFF
                       for skb in self.queue(sk)) & 0xFFFFFFFF
        return mem.read_u32(rq_next + L.skb_len) if rq_next != sk + L.receive_queue else 0

    def name(self, addr: int) -> bytes:
        """A bound name's bytes (``struct unix_address``): ``len`` less the family's two."""
        L = self.L
        buf = self.mem.read(addr, L.address_name)
        length = L.address_len.get(buf) - 2
        if not 0 <= length <= _SUN_PATH:
            raise FaultError("a unix socket's name is damaged (its length)", addr)
        return self.mem.read(addr + L.address_name, length) if length else b""

    def vfs(self, dentry: int) -> tuple[int, int]:
        """A bound path's file: its inode number and its file system's device (UNIX_DIAG_VFS)."""
        L, mem = self.L, self.mem
        inode = mem.read_u64(dentry + L.d_inode)
        sb = mem.read_u64(dentry + L.d_sb)
        return mem.read_u64(inode + L.i_ino) & 0xFFFFFFFF, mem.read_u32(sb + L.s_dev)

    def icons(self, sk: int) -> tuple[int, ...]:
        """sk_diag_dump_icons(): the peer's inode of each connection waiting to be accepted."""
        L, mem = self.L, self.mem
        out = []
        for skb in self.queue(sk):
            req = mem.read_u64(skb + L.skb_sk)
            peer = mem.read_u64(req + L.unix_peer) if req else 0
            out.append(self.inode(peer) & 0xFFFFFFFF if peer else 0)
        return tuple(out)

    def decode(self, addr: int, buf: bytes, net: int, state: int, cookie: int, netns: int) -> Socket | None:
        """One socket, or None where unix_diag lists nothing (no inode: not accepted yet)."""
        L = self.L
        (sock_type, shutdown, sk_socket, uid, max_backlog, wmem_alloc, rq_next, rq_qlen, name_addr, peer,
         dentry) = L.full.unpack(buf)
        if L.sk_ino is not None:
            ino = L.sk_ino.get(buf)
        else:
            ino = self.mem.read_u64(sk_socket + L.inode_from_socket) if sk_socket else 0
        self._inodes[addr] = ino
        if not ino:
            return None
        if not 0 < state <= TCP_LISTEN + 2:
            raise FaultError(NOT_UNIX, addr)
        if state == TCP_LISTEN:
            recv_q, send_q = rq_qlen, max_backlog
        else:
            recv_q = self.unread(addr, sock_type, rq_next, rq_qlen, L.inq_len.get(buf) if L.inq_len else None)
            send_q = (wmem_alloc - 1) & 0xFFFFFFFF
        name = self.name(name_addr) if name_addr else None
        peer_ino = self.inode(peer) & 0xFFFFFFFF if peer else 0
        vfs = icons = None
        if self.details:
            vfs = self.vfs(dentry) if dentry else None
            icons = self.icons(addr) if state == TCP_LISTEN else None
        return Socket(unix_netid(sock_type), AF_UNIX, state, name or b"", ino & 0xFFFFFFFF, b"", peer_ino, 0,
                      None, recv_q, send_q, ino, uid, cookie, netns, shutdown, None, "full", addr, 0, 0, 0,
                      sk_socket, UnixExtra(sock_type, name, vfs, icons, peer))


def unix_sockets(prog: Program, nets: int | Sequence[int], errors: WalkErrors | None = None,
                 details: bool = False) -> list[Socket]:
    """
    The unix sockets of a namespace, or of several (each one's in turn, in the order
    given), in unix_diag's order: bucket by bucket, each chain from its head. As unix_diag,
    a socket with no inode (a connection not accepted yet, whose peer shows inode 0) is not
    listed.

    :param nets: ``struct net *`` address, or several
    :param errors: where to count what cannot be read; None: raise FaultError instead.
    :param details: read what ``ss -e`` shows (UNIX_DIAG_VFS, UNIX_DIAG_ICONS).
    """
    facts, mem = kernel_facts(prog), kernel_memory(prog)
    nets = [nets] if isinstance(nets, int) else list(nets)
    decoder = _Decoder(prog, details, errors)
    L = decoder.L
    inums: dict[int, int] = {}
    for net in nets:
        try:
            inums[net] = mem.read_u32(net + L.ns_inum)
        except FaultError as e:
            if len(nets) == 1:
                raise
            tolerate(errors, "namespaces", e)
    walked = new_walked(mem, physical_memory_bytes(prog), bool(prog.flags & ProgramFlags.IS_LIVE))
    found: dict[int, list[Socket]] = {net: [] for net in inums}
    tables = [None] if unix_table_shared(facts) else list(inums)
    for table_net in tables:
        try:
            chains = unix_table_chains(facts, mem, table_net or 0)
        except FaultError as e:
            tolerate(errors, "tables", e)
            continue
        size = max(L.size, chains.link + 8)
        # At least the common fields: a chain walk gives less where the rest is not in the dump.
        least = max(L.link_end, L.common.size)
        fast = native()
        if fast is not None and not details:
            _native_walk(fast, decoder, chains, size, least, inums, table_net, walked, found, errors)
            continue
        for first in chains.heads:
            for addr, buf in chain_entries(mem, first, chains, size, least, errors, None, walked):
                _add(decoder, addr, buf, inums, table_net, found, errors)
    return [s for net in inums for s in found[net]]


def _native_walk(fast: ModuleType, decoder: _Decoder, chains: Chains, size: int, least: int,
                 inums: dict[int, int], table_net: int | None, walked: Walked, found: dict[int, list[Socket]],
                 errors: WalkErrors | None) -> None:
    """One table's chains in C (drgn_ss._fast.walk_unix): as :func:`_add`, the same records and faults."""
    records, buckets, sockets, fault = fast.walk_unix(
        decoder.mem.native(), chains.heads, chains.link, size, least, MAX_CHAIN, decoder.L.native, inums,
        table_net is not None, Socket, UnixExtra, ("u_str", "u_dgr", "u_seq"), "full", decoder.skb_limit,
        walked.nodes, walked.lo, min(walked.hi, (1 << 64) - 1), walked.live)
    tolerate_counted(errors, {"buckets": buckets, "sockets": sockets}, fault)
    if len(inums) == 1:  # one namespace: every record is its
        found[next(iter(inums))].extend(records)
        return
    net_of = {inum: net for net, inum in inums.items()}
    for s in records:
        found[net_of[s.netns]].append(s)


def _add(decoder: _Decoder, addr: int, buf: bytes, inums: dict[int, int], table_net: int | None,
         found: dict[int, list[Socket]], errors: WalkErrors | None) -> None:
    """Decode one socket of a chain into ``found`` under its namespace, if one listed."""
    net, family, state, cookie, refcnt = decoder.L.common.unpack(buf)
    if net not in inums:
        if table_net is not None:  # a namespace's own table holds only its own sockets
            tolerate(errors, "sockets", FaultError("a damaged socket (of another network namespace)", addr))
        return
    if not refcnt:  # being freed: unix_diag's walk would not meet it
        return
    try:
        if family != AF_UNIX:
            raise FaultError(NOT_UNIX, addr)
        if len(buf) < decoder.L.size:
            buf = decoder.mem.read(addr, decoder.L.size)
        s = decoder.decode(addr, buf, net, state, cookie, inums[net])
    except FaultError as e:
        tolerate(errors, "sockets", e)
        return
    if s is not None:
        found[net].append(s)
