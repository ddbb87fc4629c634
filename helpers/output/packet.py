"""Packet sockets as ss prints them (misc/ss.c packet_show_sock(), packet_stats_print()): the
link-layer protocol and the interface where inet sockets have an address and port, and
``-e``'s version, flags, rings and fanout group on lines of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from drgn_ss.kernel.strings import escape_name
from drgn_ss.sockets.packet import (
    PDI_AUXDATA,
    PDI_LOSS,
    PDI_ORIGDEV,
    PDI_RUNNING,
    PDI_VNETHDR,
    PacketExtra,
    PacketRing,
)
from drgn_ss.sockets.record import Socket
from drgn_ss.sockets.sockfilter import Instruction

__all__ = ["ETH_P_ALL", "LL_PROTO_NAMES", "ll_proto_text", "packet_cells", "packet_details", "packet_fields"]

ETH_P_ALL = 3
#: iproute2's llproto_names (lib/ll_proto.c), the first of a number's names.
LL_PROTO_NAMES: dict[int, str] = {}
for _number, _name in (
        (0x0060, "loop"), (0x0200, "pup"), (0x0201, "pupat"), (0x0800, "ip"), (0x0805, "x25"),
        (0x0806, "arp"), (0x08FF, "bpq"), (0x0A00, "ieeepup"), (0x0A01, "ieeepupat"), (0x6000, "dec"),
        (0x6001, "dna_dl"), (0x6002, "dna_rc"), (0x6003, "dna_rt"), (0x6004, "lat"), (0x6005, "diag"),
        (0x6006, "cust"), (0x6007, "sca"), (0x8035, "rarp"), (0x809B, "atalk"), (0x80F3, "aarp"),
        (0x8137, "ipx"), (0x86DD, "ipv6"), (0x8863, "ppp_disc"), (0x8864, "ppp_ses"), (0x884C, "atmmpoa"),
        (0x8884, "atmfate"), (0x0001, "802_3"), (0x0002, "ax25"), (0x0003, "all"), (0x0004, "802_2"),
        (0x0005, "snap"), (0x0006, "ddcmp"), (0x0007, "wan_ppp"), (0x0008, "ppp_mp"), (0x0009, "localtalk"),
        (0x000C, "can"), (0x0010, "ppptalk"), (0x0011, "tr_802_2"), (0x0015, "mobitex"), (0x0016, "control"),
        (0x0017, "irda"), (0x0018, "econet"), (0x88CA, "tipc"), (0x8892, "profinet"), (0x88A2, "aoe"),
        (0x88A4, "ethercat"), (0x8100, "802.1Q"), (0x88A8, "802.1ad"), (0x8847, "mpls_uc"),
        (0x8848, "mpls_mc"), (0x6558, "teb"), (0x88CC, "LLDP"), (0x0800, "ipv4")):
    LL_PROTO_NAMES.setdefault(_number, _name)
_FANOUT_TYPES = ("hash", "lb", "cpu", "roll", "random", "qm")


def ll_proto_text(protocol: int, numeric: bool) -> str:
    """ll_proto_n2a(): a link-layer protocol's name, or ``[NUMBER]`` (always with -n)."""
    name = None if numeric else LL_PROTO_NAMES.get(protocol)
    return name if name is not None else f"[{protocol}]"


def packet_cells(s: Socket, numeric: bool, ifname: Callable[[int, int], str]) -> tuple[str, str, str, str]:
    """The Local Address, its Port, the Peer Address and its Port cells: ``PROTOCOL:`` ``IFACE``, ``*``."""
    extra = cast(PacketExtra, s.extra)
    local = "*" if extra.protocol == ETH_P_ALL else ll_proto_text(extra.protocol, numeric)
    if extra.ifindex == 0:
        port = "*"
    else:
        port = escape_name(ifname(s.netns, extra.ifindex & 0xFFFFFFFF))
    return f"{local}:", port, "*", ""


def _ring_text(ring: PacketRing) -> str:
    return (f"blk_size:{ring.block_size},blk_nr:{ring.block_nr},frm_size:{ring.frame_size},"
            f"frm_nr:{ring.frame_nr},tmo:{ring.retire_tmo},features:0x{ring.features:x}")


def packet_details(s: Socket, oneline: bool = False) -> str:
    """
    ``ss -e``'s text for a packet socket: uid, inode, cookie, then version, flags, rings and
    fanout, each on a line of its own (``oneline``, -O: on the socket's).
    """
    extra = cast(PacketExtra, s.extra)
    nl = " " if oneline else "\n\t"
    out = f" uid:{s.uid}" if s.uid else ""
    out += f" ino:{s.ino} sk:{s.cookie:x}"
    flags = extra.flags
    names = "".join(text for bit, text in ((PDI_RUNNING, "running"), (PDI_AUXDATA, " auxdata"),
                                           (PDI_ORIGDEV, " origdev"), (PDI_VNETHDR, " vnethdr"),
                                           (PDI_LOSS, " loss")) if flags & bit)
    out += f"{nl}ver:{extra.version} cpy_thresh:{extra.copy_thresh} flags( {names or '0'} )"
    if extra.rx_ring is not None:
        out += f"{nl}ring_rx({_ring_text(extra.rx_ring)})"
    if extra.tx_ring is not None:
        out += f"{nl}ring_tx({_ring_text(extra.tx_ring)})"
    if extra.fanout is not None:
        kind = extra.fanout >> 16
        name = _FANOUT_TYPES[kind] if kind < len(_FANOUT_TYPES) else f"0x{kind:x}"
        out += f"{nl}fanout(id:{extra.fanout & 0xFFFF},type:{name})"
    return out


def bpf_text(program: Sequence[Instruction], oneline: bool = False) -> str:
    """-b: ``bpf filter (N):  0x28 0 0 12, 0x06 0 0 262144,`` on a line of its own (-O: not)."""
    insns = "".join(f" 0x{code:02x} {jt} {jf} {k}," for code, jt, jf, k in program)
    start = " " if oneline else "\n\t"
    return f"{start}bpf filter ({len(program)}): {insns}"


def packet_fields(s: Socket, details: bool) -> dict[str, Any]:
    """
    The JSON fields of a packet socket: ``local_address`` is the protocol's name as the text
    shows it, ``local_port`` its number, ``interface`` the device it is bound to; with -e,
    its version, flags, rings and fanout group.
    """
    extra = cast(PacketExtra, s.extra)
    obj: dict[str, Any] = {"local_address": None if extra.protocol == ETH_P_ALL else
                           ll_proto_text(extra.protocol, False),
                           "protocol": extra.protocol, "type": s.proto}
    if details:
        obj.update(version=extra.version, copy_thresh=extra.copy_thresh, flags=extra.flags,
                   rx_ring=extra.rx_ring._asdict() if extra.rx_ring else None,
                   tx_ring=extra.tx_ring._asdict() if extra.tx_ring else None, fanout=extra.fanout)
    return obj
