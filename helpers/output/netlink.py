"""Netlink sockets as ss prints them (misc/ss.c netlink_show_one(), netlink_show_sock()): the
protocol and the port id (a process's name and pid where the port id is a pid) where
inet sockets have an address and port; no processes (ss shows none for netlink).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, cast

from drgn_ss.kernel.strings import escape_name
from drgn_ss.sockets.netlink import NETLINK_CONNECTED, NetlinkExtra
from drgn_ss.sockets.record import Socket

__all__ = ["NL_PROTO_NAMES", "netlink_cells", "netlink_details", "netlink_fields", "nl_proto_text"]

#: iproute2's nl_proto_tab (lib/rt_names.c), which /etc/iproute2/nl_protos may add to.
NL_PROTO_NAMES = {0: "rtnl", 1: "unused", 2: "usersock", 3: "fw", 4: "tcpdiag", 5: "nflog", 6: "xfrm",
                  7: "selinux", 8: "iscsi", 9: "audit", 10: "fiblookup", 11: "connector", 12: "nft",
                  13: "ip6fw", 14: "dec-rt", 15: "uevent", 16: "genl", 18: "scsi-trans", 19: "ecryptfs",
                  20: "rdma", 21: "crypto"}
_names: dict[int, str] | None = None


def _proto_names() -> dict[int, str]:
    """The names, with those of this host's nl_protos file (read once, as ss reads it)."""
    global _names
    if _names is None:
        _names = dict(NL_PROTO_NAMES)
        for path in ("/etc/iproute2/nl_protos", "/usr/share/iproute2/nl_protos"):
            with contextlib.suppress(OSError, UnicodeDecodeError):
                with open(path, encoding="utf-8") as f:
                    for line in f:
                        words = line.split("#", 1)[0].split()
                        with contextlib.suppress(ValueError):
                            if len(words) >= 2 and 0 <= int(words[0], 0) < 256:
                                _names[int(words[0], 0)] = words[1]
                break
    return _names


def nl_proto_text(protocol: int, numeric: bool) -> str:
    """nl_proto_n2a(): a netlink protocol's name, or its number (always with -n)."""
    if numeric or not 0 <= protocol < 256:
        return str(protocol)
    return _proto_names().get(protocol, str(protocol))


def netlink_cells(s: Socket, numeric: bool, process: Callable[[int], str | None]
                  ) -> tuple[str, str, str, str]:
    """
    The Local Address, its Port, the Peer Address and its Port cells: ``PROTOCOL:`` and
    the port id (``kernel`` for 0; ``COMMAND/PID`` where a process has that pid, as ss finds
    in /proc), then ``GROUP:`` ``PEER`` if connected, else ``*``.
    """
    extra = cast(NetlinkExtra, s.extra)
    portid = s.sport
    if portid == -1:
        port = "*"
    elif numeric or portid < 0:
        port = str(portid)
    elif portid == 0:
        port = "kernel"
    else:
        comm = process(portid)
        port = f"{escape_name(comm.split(')')[0])}/{portid}" if comm is not None else str(portid)
    local = f"{nl_proto_text(extra.protocol, numeric)}:"
    if extra.state == NETLINK_CONNECTED:
        group = extra.dst_group - (1 << 32) if extra.dst_group >= 1 << 31 else extra.dst_group  # int_to_str()
        return local, port, f"{group}:", str(s.dport)
    return local, port, "*", ""


def netlink_details(s: Socket) -> str:
    """``ss -e``'s text for a netlink socket (ss always shows sk and cb as 0)."""
    return f" sk=0 cb=0 groups=0x{cast(NetlinkExtra, s.extra).groups:08x}"


def netlink_fields(s: Socket, details: bool) -> dict[str, Any]:
    """The JSON fields of a netlink socket: its protocol, and with -e its groups."""
    extra = cast(NetlinkExtra, s.extra)
    obj: dict[str, Any] = {"protocol": extra.protocol, "local_address": nl_proto_text(extra.protocol, False),
                           "connected": extra.state == NETLINK_CONNECTED, "dst_group": extra.dst_group}
    if details:
        obj["groups"] = extra.groups
    return obj
