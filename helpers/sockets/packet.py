"""Decode packet sockets (``struct packet_sock``) into :class:`~drgn_ss.sockets.record.Socket`
records with the values packet_diag reports (net/packet/diag.c): ss's ``-0``, p_raw and p_dgr.

Every packet socket of a namespace is on its ``net->packet.sklist`` (an hlist through
``sk->__sk_common.skc_node``, in the order they were made), which packet_diag dumps. A
packet socket's record has the link-layer protocol it receives (host order) in ``sport``
and the interface it is bound to in ``ifindex``; what only packet sockets have is in
``extra`` (:class:`PacketExtra`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from drgn import FaultError, Program, ProgramFlags
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import kernel_facts, kernel_layout
from drgn_ss.kernel.fields import Field, Unpacker
from drgn_ss.kernel.program import prog_cached
from drgn_ss.kernel.target import kernel_memory, physical_memory_bytes
from drgn_ss.sockets.record import TCP_CLOSE, Socket
from drgn_ss.tables.hashtable import Chains, chain_entries, new_walked

__all__ = ["AF_PACKET", "NOT_PACKET", "PacketExtra", "PacketLayout", "PacketRing", "packet_sockets"]

AF_PACKET = 17
SOCK_RAW = 3
#: A socket on a namespace's packet list that is not a packet socket of it.
NOT_PACKET = "a damaged socket (not a packet socket)"
# include/uapi/linux/packet_diag.h: pdi_flags
PDI_RUNNING, PDI_AUXDATA, PDI_ORIGDEV, PDI_VNETHDR, PDI_LOSS = 0x1, 0x2, 0x4, 0x8, 0x10
#: include/uapi/linux/if_packet.h: enum tpacket_versions TPACKET_V2; V3 rings have a timeout.
TPACKET_V2 = 1
PAGE_SHIFT = 12


class PacketRing(NamedTuple):
    """A ring's configuration (PACKET_DIAG_RX_RING, PACKET_DIAG_TX_RING: struct packet_diag_ring)."""

    block_size: int
    block_nr: int
    frame_size: int
    frame_nr: int
    retire_tmo: int
    sizeof_priv: int
    features: int


class PacketExtra(NamedTuple):
    """What only a packet socket has (PACKET_DIAG_INFO, the rings, the fanout group)."""

    #: ``sk_type``: SOCK_RAW (p_raw) or SOCK_DGRAM (p_dgr).
    type: int
    #: The link-layer protocol (ETH_P_*, host order; 3 is ETH_P_ALL).
    protocol: int
    #: ``po->ifindex``: 0 if not bound (-1 once the bound device is gone).
    ifindex: int
    version: int = 0
    copy_thresh: int = 0
    #: PDI_RUNNING | PDI_AUXDATA | PDI_ORIGDEV | PDI_VNETHDR | PDI_LOSS.
    flags: int = 0
    rx_ring: PacketRing | None = None
    tx_ring: PacketRing | None = None
    #: ``fanout->id | fanout->type << 16``, or None if not in a fanout group.
    fanout: int | None = None


class PacketLayout:
    """Where everything :func:`packet_sockets` reads lives, resolved once per kernel build."""

    def __init__(self, prog: Program) -> None:
        facts = kernel_facts(prog)
        self.layout = layout = kernel_layout(prog)
        f = facts.field
        S, P, c = "struct sock", "struct packet_sock", "__sk_common."
        self.common = Unpacker({
            "net": f(S, c + "skc_net.net"), "family": f(S, c + "skc_family"),
            "cookie": f(S, c + "skc_cookie.counter"), "refcnt": f(S, c + "skc_refcnt.refs.counter")})
        full = {
            "type": f(S, "sk_type"), "sk_socket": f(S, "sk_socket"), "uid": f(S, "sk_uid.val"),
            "rmem_alloc": f(S, "sk_backlog.rmem_alloc.counter"), "num": f(P, "num"),
            "ifindex": f(P, "ifindex"), "copy_thresh": f(P, "copy_thresh"), "version": f(P, "tp_version"),
            "flags": f(P, "flags"), "fanout": f(P, "fanout")}
        # The flags as pdiag_put_info() reads them: bits of po->flags, or members of their own.
        E = "enum packet_sock_flags"
        self.bits = {PDI_AUXDATA: facts.enumerator(E, "PACKET_SOCK_AUXDATA"),
                     PDI_ORIGDEV: facts.enumerator(E, "PACKET_SOCK_ORIGDEV")}
        self.members: dict[int, Field] = {}
        if layout.packet_flag_bits:
            self.bits[PDI_RUNNING] = facts.enumerator(E, "PACKET_SOCK_RUNNING")
            self.bits[PDI_LOSS] = facts.enumerator(E, "PACKET_SOCK_TP_LOSS")
            if layout.packet_vnet_hdr_sz:
                self.members[PDI_VNETHDR] = f(P, "vnet_hdr_sz")
            else:
                self.bits[PDI_VNETHDR] = facts.enumerator(E, "PACKET_SOCK_HAS_VNET_HDR")
        else:
            self.members = {PDI_RUNNING: f(P, "running"), PDI_VNETHDR: f(P, "has_vnet_hdr"),
                            PDI_LOSS: f(P, "tp_loss")}
        self.full = Unpacker(full)
        self.sk_ino = f(S, "sk_ino") if layout.sk_ino else None
        self.rings = [self._ring(f, P, ring, layout.packet_interval_ktime) for ring in ("rx_ring", "tx_ring")]
        self.fanout_id = f("struct packet_fanout", "id")
        self.fanout_type = f("struct packet_fanout", "type")
        self.inode_from_socket = (facts.offset("struct socket_alloc", "vfs_inode")
                                  - facts.offset("struct socket_alloc", "socket")
                                  + facts.offset("struct inode", "i_ino"))
        self.ns_inum = facts.offset("struct net", "ns.inum")
        self.sklist = facts.offset("struct net", "packet.sklist")
        ends = [x.end for x in (self.sk_ino, *self.members.values()) if x is not None]
        self.size = max(self.common.size, self.full.size, *ends, *(r.size for r in self.rings))
        self.link = facts.offset(S, "__sk_common.skc_node")

    @staticmethod
    def _ring(f: Callable[[str, str], Field], P: str, ring: str, ktime: bool) -> Unpacker:
        """A ring's fields (pdiag_put_ring()): its timeout in ms, or as an interval in ns (7.x)."""
        return Unpacker({
            "pg_vec": f(P, f"{ring}.pg_vec"), "pages": f(P, f"{ring}.pg_vec_pages"),
            "len": f(P, f"{ring}.pg_vec_len"), "frame_size": f(P, f"{ring}.frame_size"),
            "frame_max": f(P, f"{ring}.frame_max"),
            "tmo": f(P, f"{ring}.prb_bdqc.interval_ktime" if ktime else f"{ring}.prb_bdqc.retire_blk_tov"),
            "sizeof_priv": f(P, f"{ring}.prb_bdqc.blk_sizeof_priv"),
            "features": f(P, f"{ring}.prb_bdqc.feature_req_word")})


def packet_layout(prog: Program) -> PacketLayout:
    """``prog``'s :class:`PacketLayout`, made once per program."""
    return prog_cached(prog, "packet_layout", PacketLayout)


def _flags(L: PacketLayout, buf: bytes, flags: int) -> int:
    """pdi_flags, from the bits of ``po->flags`` and the members that hold the others."""
    out = 0
    for pdi, bit in L.bits.items():
        if flags >> bit & 1:
            out |= pdi
    for pdi, member in L.members.items():
        if member.get(buf):
            out |= pdi
    return out


def _ring(L: PacketLayout, ring: Unpacker, buf: bytes, version: int) -> PacketRing | None:
    """pdiag_put_ring(): a ring's configuration, None if it has none."""
    pg_vec, pages, length, frame_size, frame_max, tmo, sizeof_priv, features = ring.unpack(buf)
    if not pg_vec:
        return None
    if version <= TPACKET_V2:
        tmo = sizeof_priv = features = 0
    elif L.layout.packet_interval_ktime:
        tmo = (tmo - (1 << 64) if tmo >= 1 << 63 else tmo) // 1_000_000  # ktime_to_ms()
    return PacketRing(pages << PAGE_SHIFT, length, frame_size, (frame_max + 1) & 0xFFFFFFFF, tmo, sizeof_priv,
                      features)


def _decode(prog: Program, L: PacketLayout, addr: int, buf: bytes, netns: int) -> Socket:
    """One packet socket, as sk_diag_fill() reports it."""
    mem = kernel_memory(prog)
    sock_type, sk_socket, uid, rmem, num, ifindex, copy_thresh, version, flags, fanout = L.full.unpack(buf)
    if L.sk_ino is not None:
        ino = L.sk_ino.get(buf)
    else:
        ino = mem.read_u64(sk_socket + L.inode_from_socket) if sk_socket else 0
    group = None
    if fanout:
        head = mem.read(fanout, max(L.fanout_id.end, L.fanout_type.end))
        group = L.fanout_id.get(head) | L.fanout_type.get(head) << 16
    protocol = int.from_bytes(num.to_bytes(2, "little"), "big")  # __be16
    ifindex = ifindex - (1 << 32) if ifindex >= 1 << 31 else ifindex
    extra = PacketExtra(sock_type, protocol, ifindex, version, copy_thresh, _flags(L, buf, flags),
                        _ring(L, L.rings[0], buf, version), _ring(L, L.rings[1], buf, version), group)
    netid = "p_raw" if sock_type == SOCK_RAW else "p_dgr"
    return Socket(netid, AF_PACKET, TCP_CLOSE, b"", protocol, b"", 0, max(ifindex, 0), None,
                  rmem & 0xFFFFFFFF, 0, ino, uid, 0, netns, None, None, "full", addr, 0, 0, 0, sk_socket,
                  extra)


def packet_sockets(prog: Program, nets: int | Sequence[int],
                   errors: WalkErrors | None = None) -> list[Socket]:
    """
    The packet sockets of a namespace, or of several (each one's in turn), in the order
    packet_diag lists them: the order they were made in. ss shows each as UNCONN.
    """
    mem = kernel_memory(prog)
    L = packet_layout(prog)
    nets = [nets] if isinstance(nets, int) else list(nets)
    walked = new_walked(mem, physical_memory_bytes(prog), bool(prog.flags & ProgramFlags.IS_LIVE))
    out: list[Socket] = []
    size = max(L.size, L.link + 8)
    for net in nets:
        try:
            inum = mem.read_u32(net + L.ns_inum)
            chains = Chains([mem.read_u64(net + L.sklist)], L.link, False)
        except FaultError as e:
            if len(nets) == 1:
                raise
            tolerate(errors, "namespaces", e)
            continue
        least = max(L.link + 8, L.common.size)  # the common fields at least, where a page is missing
        for addr, buf in chain_entries(mem, chains.heads[0], chains, size, least, errors, None, walked):
            sk_net, family, cookie, refcnt = L.common.unpack(buf)
            if not refcnt:
                continue
            try:
                if family != AF_PACKET or sk_net != net:
                    raise FaultError(NOT_PACKET, addr)
                if len(buf) < size:
                    buf = mem.read(addr, size)
                out.append(_decode(prog, L, addr, buf, inum)._replace(cookie=cookie))
            except FaultError as e:
                tolerate(errors, "sockets", e)
    return out
