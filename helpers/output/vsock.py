"""vsock sockets as ss prints them (misc/ss.c vsock_show_sock(), vsock_addr_print()): context
id and port on each side, ``*`` for "any"; queues 0; no details."""

from __future__ import annotations

from typing import Any, cast

from drgn_ss.sockets.record import Socket
from drgn_ss.sockets.vsock import VMADDR_ANY, VsockExtra

__all__ = ["vsock_cells", "vsock_fields"]


def _number(value: int) -> str:
    return "*" if value == VMADDR_ANY else str(value)


def vsock_cells(s: Socket) -> tuple[str, str, str, str]:
    """The Local Address, its Port, the Peer Address and its Port cells: ``CID:`` ``PORT`` each side."""
    extra = cast(VsockExtra, s.extra)
    return f"{_number(extra.src_cid)}:", _number(s.sport), f"{_number(extra.dst_cid)}:", _number(s.dport)


def vsock_fields(s: Socket) -> dict[str, Any]:
    """The JSON fields of a vsock socket: each side's context id (4294967295: any)."""
    extra = cast(VsockExtra, s.extra)
    return {"local_address": None, "peer_address": None, "local_cid": extra.src_cid,
            "peer_cid": extra.dst_cid, "type": s.proto}
