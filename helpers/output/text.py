"""Sockets as ss prints them: each field's text (misc/ss.c inet_stats_print(), sock_state_print(),
proc_ctx_print()...), the lines :mod:`drgn_ss.output.columns` lays out, and the JSON objects.

ss buffers every field, measures each column, and prints either compactly (stdout not a
terminal: each column as wide as its widest cell) or spread to the terminal's width;
:func:`~drgn_ss.output.columns.layout` reproduces both, so the output can be diffed against
ss byte for byte.
"""

from __future__ import annotations

import _socket as socket  # the C module: "socket" adds 2.5 ms of start-up (enums, selectors)
import contextlib
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from drgn_ss.kernel.native import native
from drgn_ss.kernel.strings import escape_name, json_name
from drgn_ss.output.cells import Cache, address_text, ipv6_text, ms_timer, protocol_name, skmem_text
from drgn_ss.output.columns import COLUMNS, layout_columns
from drgn_ss.output.netlink import netlink_cells, netlink_details, netlink_fields
from drgn_ss.output.packet import bpf_text, packet_cells, packet_details, packet_fields
from drgn_ss.output.rows import plain_rows, row_columns, row_lines
from drgn_ss.output.sockopt import sockopt_fields, sockopt_text, tos_fields, tos_text
from drgn_ss.output.unix import unix_columns, unix_details, unix_fields
from drgn_ss.output.vsock import vsock_cells, vsock_fields
from drgn_ss.owners import Owner, OwnerMap
from drgn_ss.sockets.meminfo import SKMEM_FIELDS
from drgn_ss.sockets.netlink import AF_NETLINK
from drgn_ss.sockets.packet import AF_PACKET
from drgn_ss.sockets.raw import RawExtra, raw_netid
from drgn_ss.sockets.record import AF_INET, AF_INET6, Socket
from drgn_ss.sockets.sctp import SCTP_STATE_NAMES, SctpExtra
from drgn_ss.sockets.sockfilter import Instruction
from drgn_ss.sockets.sockopt import InetTos
from drgn_ss.sockets.unix import AF_UNIX, UnixExtra
from drgn_ss.sockets.vsock import AF_VSOCK, VsockExtra, vsock_netid

if TYPE_CHECKING:
    from drgn_ss.sockets.tcpinfo import TcpInfo

__all__ = [
    "COL_NETID", "COL_STATE", "Formatter", "NetnsTag", "STATE_NAMES", "TIMER_NAMES", "address_text",
    "endpoint_text", "ms_timer", "render_sockets", "skmem_text",
]

#: ss's display names, index = state number.
STATE_NAMES = (
    "UNKNOWN", "ESTAB", "SYN-SENT", "SYN-RECV", "FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT",
    "UNCONN", "CLOSE-WAIT", "LAST-ACK", "LISTEN", "CLOSING",
)

TIMER_NAMES = ("off", "on", "keepalive", "timewait", "persist", "unknown")


_PROTO, _FAMILY = operator.itemgetter(0), operator.itemgetter(1)

#: The JSON ``family`` of each address family.
_FAMILY_NAMES = {AF_INET: "inet", AF_INET6: "inet6", AF_UNIX: "unix", AF_PACKET: "packet",
                 AF_NETLINK: "netlink", AF_VSOCK: "vsock"}


def _tid(owner: Owner) -> dict[str, int]:
    """-T's ``tid`` of a holder in JSON; nothing without -T."""
    return {"tid": owner.tid} if owner.tid else {}


COL_NETID, COL_STATE = 0, 1


class NetnsTag(NamedTuple):
    """What tells a network namespace apart in an --all-netns listing."""

    #: Its inode number.
    inum: int
    #: A process that lives in it (drgn_ss.namespaces.NetnsProcess), or None if none does.
    process: Any = None
    #: --containers: what that process runs in, as text and as JSON (None: not asked, or nothing).
    runs_in: tuple[str, dict[str, Any]] | None = None

    def text(self) -> str:
        """`` netns:(INODE,"COMMAND",pid=PID,cgroup:PATH)``, names escaped as in ``users:``."""
        p = self.process
        if p is None:
            return f" netns:({self.inum})"
        cgroup = f",cgroup:{escape_name(p.cgroup)}" if p.cgroup is not None else ""
        runs_in = f",{self.runs_in[0]}" if self.runs_in else ""
        return f' netns:({self.inum},"{escape_name(p.comm.split(")")[0])}",pid={p.pid}{cgroup}{runs_in})'

    def fields(self) -> dict[str, Any]:
        """The JSON fields: ``netns_pid``, ``netns_command``, ``netns_cgroup`` (null if none)."""
        p = self.process
        if p is None:
            return {"netns_pid": None, "netns_command": None, "netns_cgroup": None}
        return {"netns_pid": p.pid, "netns_command": json_name(p.comm),
                "netns_cgroup": json_name(p.cgroup) if p.cgroup is not None else None,
                **({"netns_container": self.runs_in[1]} if self.runs_in else {})}


class Formatter:
    """
    Turn records into ss's cells. ``ifname`` names a socket's bound device, (netns inode,
    ifindex) -> the name as the kernel has it (decoded with errors="surrogateescape"): the
    text escapes it as command names are, JSON carries it exactly.
    """

    #: --containers: what each holder's process runs in, by pid, as text and as JSON.
    runs_in: dict[int, tuple[str, dict[str, Any]]] | None = None
    #: What follows a socket's users (--kernel-users, --addresses, --queues), as text and
    #: JSON fields: :meth:`annotate` adds one.
    annotations: tuple[tuple[Callable[[Socket], str], Callable[[Socket], dict[str, Any]]], ...] = ()
    #: What follows everything else on a socket's line (-v's lines under a listener).
    trailer: Callable[[Socket], str] | None = None

    def annotate(self, text: Callable[[Socket], str], fields: Callable[[Socket], dict[str, Any]]) -> None:
        """Add what follows a socket's users: its text, and its JSON fields."""
        self.annotations = (*self.annotations, (text, fields))

    def __init__(
        self,
        numeric: bool,
        ephemeral: tuple[int, int],
        ifname: Callable[[int, int], str],
        owners: OwnerMap | None = None,
        details: bool = False,
        timers: bool = False,
        owners_by: str = "ino",
        netns_tags: dict[int, NetnsTag] | None = None,
        skmem: dict[int, tuple[int, ...]] | None = None,
        tcp_info: dict[int, TcpInfo] | None = None,
        process_name: Callable[[int], str | None] | None = None,
    ) -> None:
        self.numeric = numeric
        self.ephemeral = ephemeral
        self.ifname = ifname
        self.owners = owners
        #: What ``owners`` is keyed by: "ino" (inode numbers) or "sock" (struct sock addresses).
        self.owners_by = owners_by
        self.details = details
        self.timers = timers or details  # ss -e implies -o
        #: --all-netns: each socket's namespace, by inode number, is named after its line.
        self.netns_tags = netns_tags
        #: -m: sock_diag_put_meminfo()'s values by socket address (full sockets only).
        self.skmem = skmem
        #: -i: tcp_get_info()'s by socket address (full TCP sockets only).
        self.tcp_info = tcp_info
        #: The protocol ss names MPTCP's and SCTP's ports after: the last of raw, UDP and TCP
        #: it listed (its dg_proto), None if none (any protocol's name).
        self.dg_proto: str | None = "tcp"
        #: -r: host names for addresses; --cgroup: each inet socket's cgroup; --peers: the
        #: holders of each unix socket's peer.
        self.resolve = self.show_cgroup = self.peers = False
        #: --tos and --inet-sockopt: what each full inet socket shows, by its address; -O:
        #: what ss puts on lines of their own (-e's packet details, -m, -i) on the socket's.
        self.tos: dict[int, InetTos] | None = None
        self.sockopts: dict[int, tuple[str, ...]] | None = None
        #: -b: the classic BPF program of each packet socket that has one, by its address.
        self.filters: dict[int, tuple[Instruction, ...]] | None = None
        self.oneline = False
        #: -T: holders are threads (each :class:`Owner` has its ``tid``), shown as ss shows them.
        self.threads = False
        #: A process's command by pid (None: no such process), for netlink port ids.
        self.process_name: Callable[[int], str | None] = process_name or (lambda pid: None)
        if tcp_info is not None:  # -i's printer, imported once and only for -i (start-up)
            from drgn_ss.output.tcpinfo import tcp_info_text

            self._tcp_info_text = tcp_info_text
        self._services: dict[tuple[int, str], str] = {}
        self._hosts: dict[tuple[bytes, bool], str] = {}
        # Cells by what they show: "0     " by queue size, "10.0.0.1:" by (address, v6only),
        # "22" by (port, protocol).
        self._queues = Cache(lambda size: f"{size:<6d}")
        self._host_cells = Cache(lambda key: self._host(key[0], AF_INET if len(key[0]) == 4 else AF_INET6,
                                                         bool(key[1])) + ":")
        self._service_cells = Cache(lambda key: self.service(*key))
        # ss reads a process's name with fscanf("%*d (%[^)])"): it stops at the first ')'.
        self._comm_names = Cache(lambda comm: escape_name(comm.split(")")[0]))

    def service(self, port: int, proto: str) -> str:
        """ss's resolve_service(): ``*`` for 0, names for non-ephemeral ports unless -n."""
        if port == 0:
            return "*"
        if self.numeric:
            return str(port)
        if proto in ("mptcp", "sctp"):  # ss resolves these with what raw, UDP or TCP left set
            proto = self.dg_proto or ""
        key = (port, proto)
        if key not in self._services and proto == "raw":  # inet_proto_n2a(): a protocol
            self._services[key] = protocol_name(port)
        if key not in self._services:
            name = str(port)
            lo, hi = self.ephemeral
            if not lo <= port <= hi:
                with contextlib.suppress(OSError):
                    name = socket.getservbyport(port, proto) if proto else socket.getservbyport(port)
            self._services[key] = name
        return self._services[key]

    @staticmethod
    def host(addr: bytes, family: int, v6only: bool) -> str:
        """ss's inet_addr_print(): ``*`` for a dual-stack IPv6 wildcard, IPv6 in brackets."""
        if family == AF_INET:
            return socket.inet_ntoa(addr)
        if not v6only and addr == bytes(16):
            return "*"
        text = ipv6_text(addr)
        return f"[{text}]" if ":" in text else text

    def _host(self, addr: bytes, family: int, v6only: bool) -> str:
        key = (addr, v6only)  # the family goes with the address's length
        text = self._hosts.get(key)
        if text is None:
            text = self._hosts[key] = self.host(addr, family, v6only)
            if self.resolve and text != "*":  # format_host(): the resolver's name, else the number
                with contextlib.suppress(OSError, UnicodeError):
                    name = socket.gethostbyaddr(address_text(addr))[0]
                    text = self._hosts[key] = escape_name(name)
        return text

    def users(self, key: int) -> str:
        """ss's ``users:(...)`` for the socket whose owners are under ``key``."""
        holders: list[Owner] | None = self.owners.get(key) if (self.owners is not None and key) else None
        if not holders:
            return ""
        name = self._comm_names
        if len(holders) == 1 and not holders[0].tid and self.runs_in is None:
            o = holders[0]
            return f' users:(("{name[o.comm]}",pid={o.pid},fd={o.fd}))'
        runs_in = self.runs_in or {}
        inner = ",".join(f'("{name[o.comm]}",pid={o.pid},{f"tid={o.tid}," if o.tid else ""}fd={o.fd}'
                         f'{"," + runs_in[o.pid][0] if o.pid in runs_in else ""})' for o in holders)
        return f" users:({inner})"

    def _users_cells(self, keys: Sequence[int]) -> list[str]:
        """:meth:`users` of every key (in C where it is built)."""
        fast = native()
        if fast is not None and isinstance(self.owners, dict) and not self.threads and self.runs_in is None:
            return fast.users_cells(keys, self.owners, self._comm_names)
        return list(map(self.users, keys))  # a HolderMap too, whose lists are made here

    def extended(self, s: Socket) -> str:
        out = []
        if s.uid:
            out.append(f" uid:{s.uid}")
        out.append(f" ino:{s.ino}")
        out.append(f" sk:{s.cookie:x}")
        if s.cgroup:
            out.append(f" cgroup:{escape_name(s.cgroup)}")
        if s.v6only is not None:
            out.append(f" v6only:{int(s.v6only)}")
        if s.shutdown is not None:
            out.append(f" {'-' if s.shutdown & 1 else '<'}-{'-' if s.shutdown & 2 else '>'}")
        return "".join(out)

    def _address_cells(self, socks: list[Socket]) -> list[list[str]]:
        """The Netid to Port cells: inet sockets' together (in C where built), others' by family."""
        families = set(map(_FAMILY, socks))
        if families.issubset(_INET):
            return self._inet_cells(socks)
        if families == {AF_UNIX}:
            return unix_columns(socks, self._queues, _STATE_CELLS)
        inet = [i for i, s in enumerate(socks) if s[1] in _INET]
        unix = [i for i, s in enumerate(socks) if s[1] == AF_UNIX]
        cells: list[list[str]] = [[""] * len(socks) for _ in range(8)]
        for indexes, part in ((inet, self._inet_cells), (unix, self._unix_cells)):
            if indexes:
                for column, made in zip(cells, part([socks[i] for i in indexes])):
                    for i, cell in zip(indexes, made):
                        column[i] = cell
        queue = self._queues
        for i, s in enumerate(socks):
            if s[1] in _INET or s[1] == AF_UNIX:
                continue
            if s[1] == AF_PACKET:
                local, sport, peer, dport = packet_cells(s, self.numeric, self.ifname)
            elif s[1] == AF_NETLINK:
                local, sport, peer, dport = netlink_cells(s, self.numeric, self.process_name)
            elif s[1] == AF_VSOCK:
                local, sport, peer, dport = vsock_cells(s)
            else:
                raise AssertionError(f"no cells for family {s[1]}")
            row = (_netid(s), _STATE_CELLS[s.state], queue[s.recv_q], queue[s.send_q], local, sport, peer,
                   dport)
            for column, cell in zip(cells, row):
                column[i] = cell
        return cells

    def _unix_cells(self, socks: list[Socket]) -> list[list[str]]:
        return unix_columns(socks, self._queues, _STATE_CELLS)

    def _inet_cells(self, socks: list[Socket]) -> list[list[str]]:
        """The Netid to Port cells of TCP and UDP sockets."""
        fast = native()
        if fast is not None:
            return list(fast.socket_cells(socks, _CELL_FIELDS, self._host_cells, self._service_cells,
                                          self._queues, _STATE_CELLS, self.numeric, self.ephemeral))
        return self._socket_cells(socks)

    def _process(self, s: Socket, users: str) -> str:
        """The Process cell: ``users`` and, as asked, the timer and the details."""
        if s.family not in _INET:
            skmem = skmem_text(self.skmem[s.address]) if self.skmem and s.address in self.skmem else ""
            if s.family == AF_PACKET:  # packet_show_sock(): users, details, skmem
                bpf = self.filters.get(s.address) if self.filters is not None else None
                return (users + (packet_details(s, self.oneline) if self.details else "")
                        + (bpf_text(bpf, self.oneline) if bpf is not None else "") + skmem)
            if s.family == AF_VSOCK:  # vsock_show_sock(): users, nothing else
                return users
            if s.family == AF_NETLINK:  # netlink_show_sock(): no users; details, a tab and skmem
                shown = users if self.owners_by == "line" else ""  # --pid: the holder
                return shown + (netlink_details(s) if self.details else "") + ("\t" + skmem if skmem else "")
            if self.peers and s.family == AF_UNIX:
                users += self._peer_users(s)
            return users + skmem + (unix_details(s) if self.details else "")  # unix_show_sock()
        if self.timers and s.timer:
            name = "T3_RTX" if s.proto == "sctp" else TIMER_NAMES[min(s.timer, 5)]
            users += f" timer:({name},{ms_timer(s.timer_ms)},{s.retrans})"
        if self.details:
            users += self.extended(s)
        if self.tos is not None and s.address in self.tos:
            users += tos_text(self.tos[s.address])
        if self.show_cgroup and s.cgroup is not None:  # --cgroup: after -e and --tos, as ss
            users += f" cgroup:{escape_name(s.cgroup)}"
        if self.sockopts is not None and s.address in self.sockopts:
            users += (" " if self.oneline else "\n\t") + sockopt_text(self.sockopts[s.address])
        return users

    def _peer_users(self, s: Socket) -> str:
        """--peers: `` peer:((...))``, the holders of a unix socket's peer (as ``users:``)."""
        peer = cast(UnixExtra, s.extra).peer if self.owners_by == "sock" else s.dport
        users = self.users(peer) if peer else ""
        return " peer:" + users[len(" users:"):] if users else ""

    def columns(self, socks: Sequence[Socket]) -> list[list[str]]:
        """
        The ten columns of cells for ``socks`` (the caller drops disabled columns). Built a
        column at a time, from caches of what repeats (addresses, ports, queue sizes), so a
        cell costs a dict lookup rather than a call.
        """
        n = len(socks)
        if not n:
            return [[] for _ in COLUMNS]
        if plain_rows(self, socks):
            return row_columns(self, socks, _STATE_CELLS)
        socks = socks if isinstance(socks, list) else list(socks)
        cells = self._address_cells(socks)
        renamed = [] if {"raw", "sctp"}.isdisjoint(map(_PROTO, socks)) else [
            i for i, s in enumerate(socks) if s[0] in ("raw", "sctp")]
        for i in renamed:
            if socks[i][0] == "raw":  # named after its protocol
                cells[0][i] = raw_netid(cast(RawExtra, socks[i].extra).protocol)
            elif cast(SctpExtra, socks[i].extra).association and socks[i].ino:  # is_sctp_assoc()
                cells[0][i], cells[1][i] = "", f"`- {sctp_state_name(socks[i].state)}"
        proto, state, recv_q, send_q, local, sport, peer, dport = cells
        ifindex = list(map(operator.itemgetter(_IFINDEX), socks))
        if any(ifindex):
            for i in [i for i, index in enumerate(ifindex) if index and socks[i][1] in _INET]:
                name = escape_name(self.ifname(socks[i].netns, ifindex[i]))
                local[i] = local[i][:-1] + "%" + name + ":"
        if self.owners is not None:
            if self.owners_by == "line":  # --pid: each line its own holder, by line number
                keys = list(range(1, n + 1))
            elif self.owners_by == "sock":
                keys = list(map(operator.itemgetter(_ADDRESS), socks))
            else:
                keys = list(map(operator.itemgetter(_INO), socks))
            for i in [i for i, s in enumerate(socks) if s[1] == AF_NETLINK and self.owners_by != "line"]:
                keys[i] = 0  # ss shows no processes for netlink sockets (--pid shows the holder)
            process = self._users_cells(keys)
        else:
            process = [""] * n
        for text, _fields in self.annotations:
            process = [cell + text(s) for cell, s in zip(process, socks)]
        if (self.timers or self.details or self.skmem is not None or self.show_cgroup or self.peers
                or self.tos is not None or self.sockopts is not None or self.filters is not None):
            process = list(map(self._process, socks, process))
        if self.netns_tags is not None:
            tags = {inum: tag.text() for inum, tag in self.netns_tags.items()}
            process = [cell + (tags.get(s.netns) or NetnsTag(s.netns).text())
                       for cell, s in zip(process, socks)]
        if self.skmem is not None or self.tcp_info is not None:
            process = list(map(self._second_line, process, socks))
        if self.trailer is not None:
            process = [cell + self.trailer(s) for cell, s in zip(process, socks)]
        return [proto, state, recv_q, send_q, local, sport, peer, dport, process, [""] * n]

    def objects(self, socks: Sequence[Socket]) -> Iterator[dict[str, Any]]:
        """
        One JSON object per socket (:data:`JSON_FIELDS` names them), carrying what its
        text line shows with the same options, typed: numbers as numbers, addresses as
        text, owners as a list. Names are as the kernel has them (a command name is not
        cut at ")"), any bytes that are not UTF-8 replaced by U+FFFD; the JSON encoder
        escapes control characters.
        """
        owners = self.owners
        by_sock, by_line = self.owners_by == "sock", self.owners_by == "line"
        names = Cache(json_name)
        addresses = Cache(address_text)
        services = None if self.numeric else self._service_cells
        states = _STATE_CELLS
        netns_fields = (None if self.netns_tags is None else
                        {inum: tag.fields() for inum, tag in self.netns_tags.items()})
        for line, s in enumerate(socks, 1):
            inet = s.family in _INET
            obj: dict[str, Any] = {
                "netid": s.proto,
                "family": _FAMILY_NAMES[s.family],
                "state": states[s.state],
                "recv_q": s.recv_q,
                "send_q": s.send_q,
                "local_address": addresses[s.src] if inet else None,
                "local_port": s.sport,
                "peer_address": addresses[s.dst] if inet else None,
                "peer_port": s.dport,
                "interface": json_name(self.ifname(s.netns, s.ifindex)) if s.ifindex else None,
                "v6only": s.v6only,
                "netns": s.netns,
                "kind": s.kind,
                "sk": f"{s.address:#x}",
            }
            if s.extra is not None:
                obj.update(self._family_fields(s))
            if services is not None and inet:
                obj["local_service"] = services[s.sport, s.proto]
                obj["peer_service"] = services[s.dport, s.proto]
            if owners is not None:
                key = line if by_line else 0 if s.family == AF_NETLINK else s.address if by_sock else s.ino
                obj["owners"] = self._owner_objects(owners.get(key, ()) if key else (), names)

            if self.timers:
                obj["timer"] = ({"name": TIMER_NAMES[min(s.timer, 5)], "expires_ms": s.timer_ms,
                                 "retrans": s.retrans} if s.timer else None)
            if netns_fields is not None:
                obj.update(netns_fields.get(s.netns) or NetnsTag(s.netns).fields())
            self._memory_and_info_fields(s, obj)
            if inet:
                obj.update(self._inet_option_fields(s))
            if self.details:
                obj.update(uid=s.uid, inode=s.ino, cookie=s.cookie, shutdown=s.shutdown,
                           cgroup=json_name(s.cgroup) if s.cgroup is not None else None)
            for _text, fields in self.annotations:
                obj.update(fields(s))
            yield obj

    def _memory_and_info_fields(self, s: Socket, obj: dict[str, Any]) -> None:
        """-m's ``skmem`` and -i's ``tcp_info`` in JSON, as asked (null: the socket has none)."""
        if self.skmem is not None:
            values = self.skmem.get(s.address)
            obj["skmem"] = dict(zip(SKMEM_FIELDS, values)) if values is not None else None
        if self.tcp_info is not None:
            info = self.tcp_info.get(s.address)
            obj["tcp_info"] = None if info is None else {**info._asdict(), "cong": json_name(info.cong)}

    def _owner_objects(self, holders: Sequence[Owner], names: Cache) -> list[dict[str, Any]]:
        """A socket's ``owners`` in JSON, each with what its process runs in (--containers)."""
        runs_in = self.runs_in or {}
        return [{"command": names[o.comm], "pid": o.pid, "fd": o.fd, **_tid(o),
                 **({"container": runs_in[o.pid][1]} if o.pid in runs_in else {})} for o in holders]

    def _inet_option_fields(self, s: Socket) -> dict[str, Any]:
        """--tos and --inet-sockopt in JSON, as asked."""
        out: dict[str, Any] = {}
        if self.tos is not None:
            out.update(tos_fields(self.tos.get(s.address)))
        if self.sockopts is not None:
            out.update(sockopt_fields(self.sockopts.get(s.address)))
        return out

    def _family_fields(self, s: Socket) -> dict[str, Any]:
        """The JSON fields only a socket's family has."""
        if s.proto == "raw":
            return {"protocol": cast(RawExtra, s.extra).protocol}
        if s.proto == "sctp":
            extra = cast(SctpExtra, s.extra)
            return {"association": extra.association,
                    "sctp_state": sctp_state_name(s.state) if extra.association else None}
        if s.family == AF_PACKET:
            fields = packet_fields(s, self.details)
            if self.filters is not None:  # -b
                bpf = self.filters.get(s.address)
                fields["bpf_filter"] = None if bpf is None else [
                    {"code": code, "jt": jt, "jf": jf, "k": k} for code, jt, jf, k in bpf]
            return fields
        if s.family == AF_NETLINK:
            return netlink_fields(s, self.details)
        if s.family == AF_VSOCK:
            return vsock_fields(s)
        fields = unix_fields(s, self.details)
        if self.peers and self.owners is not None:
            peer = cast(UnixExtra, s.extra).peer if self.owners_by == "sock" else s.dport
            fields["peer_owners"] = [{"command": json_name(o.comm), "pid": o.pid, "fd": o.fd}
                                     for o in (self.owners.get(peer, ()) if peer else ())]
        return fields

    def _second_line(self, cell: str, s: Socket) -> str:
        """
        What -m and -i show: ss puts it on a line of its own, after a tab, for every socket
        with -m and every TCP socket with -i, even a minisock with nothing to show there.
        """
        if (self.skmem is None and s.proto != "tcp") or s.family not in _INET:
            return cell
        cell += "" if self.oneline else "\n\t"  # -O: nothing, what follows starts with a space
        if self.skmem is not None and s.address in self.skmem:
            cell += skmem_text(self.skmem[s.address])
        if self.tcp_info is not None and s.address in self.tcp_info:
            cell += self._tcp_info_text(self.tcp_info[s.address], self.timers, self.numeric)
        return cell

    def _socket_cells(self, socks: list[Socket]) -> list[list[str]]:
        """The Netid to Port cells of :meth:`columns` (the reference for C's socket_cells())."""
        proto, _family, state, src, sport, dst, dport, _ifindex, v6only, recv_q, send_q, *_rest = (
            _transpose(socks))
        queue = self._queues.__getitem__
        host = self._host_cells.__getitem__
        service = self._service_cells.__getitem__
        return [
            list(proto),
            list(map(_STATE_CELLS.__getitem__, state)),
            list(map(queue, recv_q)),
            list(map(queue, send_q)),
            list(map(host, zip(src, v6only))),
            list(map(service, zip(sport, proto))),
            list(map(host, zip(dst, v6only))),
            list(map(service, zip(dport, proto))),
        ]


def sctp_state_name(state: int) -> str:
    """ss's sctp_sstate_name[] of an association's state."""
    return SCTP_STATE_NAMES[state] if 0 <= state < len(SCTP_STATE_NAMES) else "UNKNOWN"


def _netid(s: Socket) -> str:
    """The Netid cell of a socket whose table is not its netid (vsock's SEQPACKET: ???)."""
    return vsock_netid(cast(VsockExtra, s.extra).type) if s[1] == AF_VSOCK else s.proto


def endpoint_text(addr: bytes, port: int, family: int, v6only: bool | None) -> str:
    """
    An address and port as ``ss -n`` shows them (:meth:`Formatter.host`, and ``*`` for port
    0): ``127.0.0.1:22``, ``[::1]:443``, ``[::ffff:127.0.0.1]:8080``, ``*:*``.
    """
    return f"{Formatter.host(addr, family, bool(v6only))}:{port or '*'}"


_FIELD = Socket._fields.index
#: The Socket fields drgn_ss._fast.socket_cells makes cells of, in its order.
_CELL_FIELDS = tuple(map(_FIELD, ("proto", "state", "src", "sport", "dst", "dport", "v6only", "recv_q",
                                  "send_q")))
_IFINDEX, _INO, _ADDRESS = _FIELD("ifindex"), _FIELD("ino"), _FIELD("address")

_INET = (AF_INET, AF_INET6)

#: ss's state names for any state byte.
_STATE_CELLS = STATE_NAMES + ("UNKNOWN",) * (256 - len(STATE_NAMES))


def _transpose(socks: Sequence[Socket]) -> list[tuple[Any, ...]]:
    """One tuple per Socket field, holding that field of every socket."""
    cols = list(zip(*socks))
    if len(cols) != len(Socket._fields):
        raise ValueError("not Socket records")
    return cols


def render_sockets(socks: Sequence[Socket], fmt: Formatter, disabled: frozenset[int],
                   header: bool, screen_width: int | None) -> Iterator[str]:
    """ss's listing of ``socks``, in chunks to write as they come."""
    keep = [i for i in range(len(COLUMNS)) if i not in disabled]
    lines = row_lines(fmt, socks, keep, header, _STATE_CELLS) if screen_width is None else None
    if lines is not None:  # a SockTable's rows, laid out in C
        return lines
    columns = fmt.columns(socks)
    if header:
        columns = [[COLUMNS[i].header, *columns[i]] for i in keep]
    else:
        columns = [columns[i] for i in keep]
    return layout_columns(columns, disabled, screen_width, header)
