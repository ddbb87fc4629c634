"""Decode TCP and UDP sockets: each socket's bytes read once, at offsets worked out once.

It produces :class:`~drgn_ss.sockets.record.Socket` records (:func:`inet_sockets`), here or
in C (:mod:`drgn_ss._fast`, given the same offsets). Everything it needs to know about the
kernel comes from :class:`~drgn_ss.kernel.facts.KernelFacts`, so with a warm cache it runs without
debug info.
"""

from __future__ import annotations

import _socket as socket  # the C module: "socket" adds 2.5 ms of start-up (enums, selectors)
import contextlib
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from drgn import FaultError, Program, ProgramFlags
from drgn_ss.kernel.clock import jiffies, kernel_hz
from drgn_ss.kernel.damage import WalkErrors, tolerate, tolerate_counted
from drgn_ss.kernel.facts import KernelFacts, kernel_facts, kernel_layout
from drgn_ss.kernel.features import KernelLayout
from drgn_ss.kernel.fields import Field, Unpacker
from drgn_ss.kernel.memory import list_reachable
from drgn_ss.kernel.native import native
from drgn_ss.kernel.program import prog_cached
from drgn_ss.kernel.target import kernel_memory, object_limit, physical_memory_bytes
from drgn_ss.sockets.record import (
    AF_INET,
    AF_INET6,
    ICSK_TIME_LOSS_PROBE,
    ICSK_TIME_PROBE0,
    ICSK_TIME_REO_TIMEOUT,
    ICSK_TIME_RETRANS,
    TCP_CLOSE,
    TCP_LISTEN,
    TCP_NEW_SYN_RECV,
    TCP_SYN_RECV,
    TCP_TIME_WAIT,
    Socket,
    jiffies_delta,
)
from drgn_ss.tables.hashtable import MAX_CHAIN, Chains, Walked, bucket_head_ok, chain_entries, new_walked
from drgn_ss.tables.inet import (
    listening_table,
    tcp_ehash_chains,
    tcp_hashinfo_address,
    tcp_listening_chains,
    udp_hash_chains,
    udp_table_address,
)

if TYPE_CHECKING:
    from drgn_ss.kernel.cgroup import CgroupPaths

__all__ = [
    "BAD_STATE", "DAMAGED", "IPPROTO_TCP", "IPPROTO_UDP", "InetDecoder", "NO_NETNS", "OTHER_PROTOCOL",
    "SockLayout", "TCP_FIN_WAIT2", "TCP_MAX_STATE", "inet_sockets", "sock_layout",
]

_TCP_TIMERS = (ICSK_TIME_RETRANS, ICSK_TIME_PROBE0, ICSK_TIME_LOSS_PROBE, ICSK_TIME_REO_TIMEOUT)
_FAMILIES = (AF_INET, AF_INET6)
#: Every hashed socket holds a reference (the table's), an inet family and a local port.
#: One with no references is being freed (closed under the walk, or at the crash): skipped
#: quietly, as the kernel's own lock-free lookups skip it. One with references but no
#: family or port is damaged: skipped and counted.
DAMAGED = "a damaged socket (no inet family or local port)"
#: A state no socket can be in (TCP_ESTABLISHED 1 .. TCP_NEW_SYN_RECV 12), or a TIME-WAIT
#: minisock whose substate is not FIN-WAIT-2 or TIME-WAIT (inet_twsk_alloc()'s only two).
BAD_STATE = "a damaged socket (no such state)"
#: A socket whose namespace is on no list: drgn_ss._fast says the same.
NO_NETNS = "a damaged socket (of no network namespace)"
#: A full socket of another protocol than its table's (include/uapi/linux/in.h): drgn_ss._fast
#: says the same.
OTHER_PROTOCOL = "a damaged socket (not of its table's protocol)"
IPPROTO_TCP, IPPROTO_UDP = 6, 17
TCP_FIN_WAIT2 = 5
_TW_SUBSTATES = (TCP_FIN_WAIT2, TCP_TIME_WAIT)
#: The highest state (TCP_NEW_SYN_RECV); 0 is none.
TCP_MAX_STATE = TCP_NEW_SYN_RECV


class SockLayout:
    """Where everything :class:`InetDecoder` reads lives, resolved once per kernel build."""

    def __init__(self, prog: Program) -> None:
        facts = kernel_facts(prog)
        layout = kernel_layout(prog)
        f = facts.field

        S = "struct sock"
        c = "__sk_common."
        self.v6_rcv_saddr = facts.offset(S, c + "skc_v6_rcv_saddr")
        self.v6_daddr = facts.offset(S, c + "skc_v6_daddr")
        self.common_end = facts.size("struct sock_common")

        self.tw_substate = f("struct inet_timewait_sock", "tw_substate")
        self.tw_expires = f("struct inet_timewait_sock", "tw_timer.expires")
        self.tw_end = max(self.common_end, self.tw_substate.end, self.tw_expires.end)
        self.req_retrans = f("struct request_sock", "num_retrans")
        self.req_expires = f("struct request_sock", "rsk_timer.expires")
        self.req_end = max(self.common_end, self.req_retrans.end, self.req_expires.end)

        self.sk_ino = f(S, "sk_ino") if layout.sk_ino else None
        # SOCK_INODE(sock)->i_ino, from the struct socket pointer.
        self.inode_from_socket = (facts.offset("struct socket_alloc", "vfs_inode")
                                  - facts.offset("struct socket_alloc", "socket")
                                  + facts.offset("struct inode", "i_ino"))
        self.ns_inum = facts.offset("struct net", "ns.inum")
        self.cgroup_pointer = layout.sock_cgroup_pointer

        common, tcp, udp = _sock_fields(f, layout, self.sk_ino)
        self.common = Unpacker(common)
        self.ipv6only = f(S, c + "skc_ipv6only")  # a bitfield: read only where reported
        self.refcnt = f(S, c + "skc_refcnt.refs.counter")
        self.tcp = Unpacker(tcp)
        self.udp = Unpacker(udp)
        # How much of a full socket to read: everything the unpackers decode.
        self.tcp_end = max(self.common_end, self.tcp.size)
        self.udp_end = max(self.common_end, self.udp.size)

        # The same, for drgn_ss._fast: each field as (offset, size, signed, shift, bits).
        fields: dict[str, Field | None] = {
            **common, **tcp, **udp, "ipv6only": self.ipv6only, "refcnt": self.refcnt, "sk_ino": self.sk_ino,
            "tw_substate": self.tw_substate, "tw_expires": self.tw_expires,
            "req_retrans": self.req_retrans, "req_expires": self.req_expires}
        self.native: dict[str, object] = {
            name: fl.native if fl else None for name, fl in fields.items()}
        self.native.update(v6_rcv_saddr=self.v6_rcv_saddr, v6_daddr=self.v6_daddr, tw_end=self.tw_end,
                           req_end=self.req_end, inode_from_socket=self.inode_from_socket)


def _sock_fields(f: Callable[[str, str], Field], layout: KernelLayout, sk_ino: Field | None
                 ) -> tuple[dict[str, Field], dict[str, Field], dict[str, Field]]:
    """
    The fields :class:`InetDecoder` unpacks in one call per kind of record (instead of a
    call per field): those every socket has (``struct sock_common``), and a full TCP and
    a full UDP socket's.
    """
    S = "struct sock"
    c = "__sk_common."
    I = "struct inet_connection_sock"  # noqa: E741
    timeout = f(I, "icsk_timeout") if layout.icsk_timeout else f(S, "tcp_retransmit_timer.expires")
    keepalive = "icsk_keepalive_timer" if layout.icsk_keepalive_timer else "icsk_inet.sk.sk_timer"
    common = {
        "net": f(S, c + "skc_net.net"), "family": f(S, c + "skc_family"),
        "state": f(S, c + "skc_state"), "rcv_saddr": f(S, c + "skc_rcv_saddr"),
        "daddr": f(S, c + "skc_daddr"), "num": f(S, c + "skc_num"), "dport": f(S, c + "skc_dport"),
        "bound_dev_if": f(S, c + "skc_bound_dev_if"), "cookie": f(S, c + "skc_cookie.counter"),
    }
    full: dict[str, Field] = {
        "uid": f(S, "sk_uid.val"), "shutdown": f(S, "sk_shutdown"), "sk_socket": f(S, "sk_socket"),
        "cgroup": f(S, "sk_cgrp_data.cgroup" if layout.sock_cgroup_pointer else "sk_cgrp_data.val"),
    }
    # Without sk_ino, a placeholder: the inode is one more read away, through sk_socket.
    full["sk_ino"] = sk_ino if sk_ino else full["sk_socket"]
    full["protocol"] = f(S, "sk_protocol")  # what a full socket is checked against its table by
    T = "struct tcp_sock"
    tcp = {**full, "ack_backlog": f(S, "sk_ack_backlog"),
           "max_ack_backlog": f(S, "sk_max_ack_backlog"),
           "rcv_nxt": f(T, "rcv_nxt"), "copied_seq": f(T, "copied_seq"),
           "write_seq": f(T, "write_seq"), "snd_una": f(T, "snd_una"),
           "pending": f(I, "icsk_pending"), "retransmits": f(I, "icsk_retransmits"),
           "probes_out": f(I, "icsk_probes_out"), "timeout": timeout,
           "keepalive_pprev": f(I, keepalive + ".entry.pprev"),
           "keepalive_expires": f(I, keepalive + ".expires")}
    udp = {**full, "rmem_alloc": f(S, "sk_backlog.rmem_alloc.counter"),
           "wmem_alloc": f(S, "sk_wmem_alloc.refs.counter"),
           "forward_deficit": f("struct udp_sock", "forward_deficit")}
    return common, tcp, udp


def sock_layout(prog: Program) -> SockLayout:
    """``prog``'s :class:`SockLayout`, made once per program."""
    return prog_cached(prog, "sock_layout", SockLayout)


#: Socket.kind of a full socket, a TIME-WAIT minisock and a request, as the C walk names them.
_KINDS = ("full", "timewait", "request")


class InetDecoder:
    """
    Walk a namespace's tables and decode its sockets; one per listing.

    :param inodes: read each full socket's inode number (one more read per socket
        before Linux 6.18); without it ``ino`` is 0.
    :param cgroups: resolve each socket's cgroup path; without it ``cgroup`` is None.
    """

    def __init__(self, prog: Program, inodes: bool = True, cgroups: bool = True,
                 in_c: bool | None = None, rows: bool = False) -> None:
        self.prog = prog
        #: Whether the walk runs in C (:mod:`drgn_ss._fast`): by default where it is built
        #: and DRGN_SS_PURE_PYTHON is not set. Cgroup paths (``ss -e``) need Python.
        self.in_c = native() is not None if in_c is None else in_c
        #: Whether :meth:`socks` may give a ``drgn_ss._fast.SockTable`` (rows, records on
        #: demand) rather than a list of records: where the walk runs in C.
        self.rows = rows and self.in_c and not cgroups
        self.facts: KernelFacts = kernel_facts(prog)
        self.mem = kernel_memory(prog)
        self.L = sock_layout(prog)
        self.inodes = inodes
        self.cgroups = cgroups
        #: A chain that faults or strays is walked again once on a running kernel (a dump
        #: will not change).
        self.retry = bool(prog.flags & ProgramFlags.IS_LIVE)
        self._now: int | None = None
        self._hz: int | None = None
        self._netns: dict[int, int] = {}
        self._cgroups: CgroupPaths | None = None
        #: Every node this decoder's walks visited: no socket is listed twice.
        self._walked: Walked | None = None
        #: Every namespace on net_namespace_list (None: the list could not be read whole).
        self._known: set[int] | None = None
        #: Sockets found whose namespace is not on the list: {struct net: (count, a socket)}.
        self._strays: dict[int, tuple[int, int]] = {}

    def walked(self) -> Walked:
        """The nodes walked so far, and where a node may be: the direct map, once reads there work."""
        if self._walked is None or (self._walked.hi == 1 << 64 and not self._walked.nodes):
            # (made again once reads of the direct map are known to work, if none was walked)
            self._walked = new_walked(self.mem, physical_memory_bytes(self.prog), self.retry)
        return self._walked

    def known_netns(self, errors: WalkErrors | None) -> set[int]:
        """Every network namespace (``struct net *``) on ``net_namespace_list``; a break counted."""
        facts = self.facts
        link = facts.offset("struct net", "list")
        try:
            nodes, fault = list_reachable(self.mem, facts.symbol("net_namespace_list"),
                                          object_limit(self.prog, "struct net"), "network namespace list")
        except LookupError:
            nodes, fault = [], None
        if fault is not None:
            tolerate(errors, "namespaces", fault)
        return {pos - link for pos in nodes}

    def _ms(self, expires: int) -> int:
        if self._now is None:
            self._now = jiffies(self.prog)
            self._hz = kernel_hz(self.prog)
        assert self._hz
        return max(jiffies_delta(expires, self._now), 0) * 1000 // self._hz

    def netns_inum(self, net: int) -> int:
        """The inode number of a ``struct net`` (its ``ns.inum``)."""
        if net not in self._netns:
            self._netns[net] = self.mem.read_u32(net + self.L.ns_inum)
        return self._netns[net]

    def _cgroup(self, raw: int) -> str:
        if self._cgroups is None:
            from drgn_ss.kernel.cgroup import CgroupPaths  # only for -e: start-up

            self._cgroups = CgroupPaths(self.facts, self.mem, kernel_layout(self.prog).sock_cgroup_pointer,
                                        kernel_layout(self.prog).kernfs_parent_rcu)
        return self._cgroups.path(raw)

    def socks(self, net: int | Sequence[int], proto: str, listening: bool = True, established: bool = True,
              errors: WalkErrors | None = None) -> list[Socket]:
        """
        The sockets of one protocol in a namespace, or in several, in table order
        (inet_diag's). A table that namespaces share (the global ehash, lhash2 and UDP
        table) is walked once for all of them; a namespace's own (a private ehash where
        ``tcp_child_ehash_entries`` was set, 6.1+; a private UDP table where
        ``udp_child_hash_entries`` was, 6.2+) once, each socket found in one table only.

        :param net: ``struct net *`` address, or several
        :param proto: "tcp" or "udp"
        """
        facts, mem = self.facts, self.mem
        nets = [net] if isinstance(net, int) else list(net)
        inums: dict[int, int] = {}
        tables: dict[tuple[str, int], Callable[[], Chains]] = {}
        for n in nets:
            try:
                inums[n] = self.netns_inum(n)
            except FaultError as e:
                if len(nets) == 1:
                    raise  # the one namespace asked for: nothing to list
                tolerate(errors, "namespaces", e)  # a namespace a dump lost: the others are listed
                continue
            try:
                if proto == "udp":
                    udp = udp_table_address(facts, mem, n)
                    tables.setdefault(("udp", udp), partial(udp_hash_chains, facts, mem, udp))
                    continue
                hashinfo = tcp_hashinfo_address(facts, mem, n)
                if listening:
                    key = ("listening", listening_table(facts, mem, hashinfo))
                    tables.setdefault(key, partial(tcp_listening_chains, facts, mem, hashinfo))
                if established:
                    tables.setdefault(("ehash", hashinfo), partial(tcp_ehash_chains, facts, mem, hashinfo))
            except FaultError as e:
                tolerate(errors, "tables", e)  # its tables cannot be found: the others are listed
        if self._known is None:
            self._known = self.known_netns(errors)
        out: list[Socket] = self._new_table() if self.rows else []
        for table in tables.values():
            try:
                chains = table()
            except FaultError as e:
                tolerate(errors, "tables", e)  # a table a dump lost or damaged: the others are listed
                continue
            self._walk(chains, proto, inums, errors, out)
        self._count_strays(errors)
        return out

    def _count_strays(self, errors: WalkErrors | None) -> None:
        """
        Count the sockets found in a table whose namespace is on no list (damaged), but on
        a running kernel, where a namespace made since the list was read is on it now.
        """
        if not self._strays:
            return
        if self.retry:
            self._known = self.known_netns(None)
        known = self._known or set()
        for net, (count, addr) in self._strays.items():
            if net not in known:
                if errors is None:
                    raise FaultError(NO_NETNS, addr)
                errors.count("sockets", FaultError(NO_NETNS, addr), count)
        self._strays.clear()

    def _walk(self, chains: Chains, proto: str, nets: dict[int, int], errors: WalkErrors | None,
              out: list[Socket]) -> None:
        L = self.L
        least = max(L.common_end, chains.link + 16)  # the node's next and pprev
        size = max(L.tcp_end if proto == "tcp" else L.udp_end, least)
        if self.mem.probing:  # let Memory settle how it reads the direct map, where nodes are
            first = next((h for h in chains.heads if h and not (chains.nulls and h & 1)), 0)
            with contextlib.suppress(FaultError):
                self.mem.read(first - chains.link, 8)
        walked = self.walked()
        if self.in_c and not self.cgroups:
            self._native_walk(chains, proto, nets, errors, out, size, least)
            return
        nulls, base = chains.nulls, chains.marker_base
        retry = chains.head_at if self.retry else None
        for i, first in enumerate(chains.heads):
            if not bucket_head_ok(chains, i, first, errors):
                continue
            if not first or (nulls and first & 1):
                continue
            marker = i + base if base >= 0 else None
            if retry is None:
                self._chain(first, chains, proto, nets, marker, errors, out, size, least)
                continue
            # A live kernel: a chain that faults or strays is walked once more, from its head.
            start, attempt, added = len(out), WalkErrors(), list[int]()
            head = chains.first_at + i * chains.stride if chains.stride and not nulls else None
            self._chain(first, chains, proto, nets, marker, attempt, out, size, least, added, head)
            if attempt:
                del out[start:]
                walked.nodes.difference_update(added)
                try:
                    again = retry(i)
                except FaultError:
                    tolerate(errors, "buckets", FaultError("a bucket's head could not be read again", first))
                    continue
                first = again
                if first and not (nulls and first & 1):
                    self._chain(first, chains, proto, nets, marker, errors, out, size, least, None, head)

    def _chain(self, first: int, chains: Chains, proto: str, nets: dict[int, int], marker: int | None,
               errors: WalkErrors | None, out: list[Socket], size: int, least: int,
               added: list[int] | None = None, head: int | None = None) -> None:
        """
        Decode one chain's sockets of the namespaces ``nets`` into ``out``; count what fails.
        ``head``: see :func:`~drgn_ss.tables.hashtable.chain_entries`.
        """
        common = self.L.common.unpack  # no bitfields: a bare itemgetter over struct.unpack_from
        refcnt = self.L.refcnt.get
        decode = self._decode
        append = out.append
        known = self._known
        walked = self.walked()
        for addr, buf in chain_entries(self.mem, first, chains, size, least, errors, marker, walked, added,
                                       head):
            values = common(buf)
            if values[0] not in nets:  # shared tables hold every namespace's sockets
                if known is not None and values[0] not in known:
                    count, _ = self._strays.get(values[0], (0, addr))
                    self._strays[values[0]] = (count + 1, addr)
                continue
            if not refcnt(buf):  # freed (being unhashed): the kernel's lookups skip it too
                continue
            if not (values[1] in _FAMILIES and values[5]):
                tolerate(errors, "sockets", FaultError(DAMAGED, addr))
                continue
            try:
                append(decode(addr, buf, values, proto, size))
            except FaultError as e:
                tolerate(errors, "sockets", e)

    def _clock(self) -> tuple[int, int]:
        """The kernel's jiffies and HZ, read once: what every timer of the listing is measured against."""
        if self._now is None:
            self._now = jiffies(self.prog)
            self._hz = kernel_hz(self.prog)
        assert self._hz
        return self._now, self._hz

    def _new_table(self) -> list[Socket]:
        """An empty ``drgn_ss._fast.SockTable`` (a sequence of records, typed as the list it stands for)."""
        fast = native()
        assert fast is not None
        return cast(list[Socket], fast.SockTable(Socket, _KINDS, *self._clock()))

    def _native_walk(self, chains: Chains, proto: str, nets: dict[int, int], errors: WalkErrors | None,
                     out: list[Socket], size: int, least: int) -> None:
        """:meth:`_walk` in C (:mod:`drgn_ss._fast`): the same records, the same faults."""
        fast = native()
        assert fast is not None
        self._clock()
        walked = self.walked()
        strays: dict[int, list[int]] = {}
        records, buckets, sockets, fault = fast.walk_sockets(
            self.mem.native(), chains.heads, chains.link, chains.nulls, size, least, MAX_CHAIN,
            self.L.native, nets, proto == "tcp", self.inodes, self._now, self._hz, Socket, proto,
            _KINDS, chains.marker_base,
            chains.head_at if self.retry else None, walked.nodes, walked.lo, min(walked.hi, (1 << 64) - 1),
            self._known, strays, 0 if chains.nulls else chains.first_at, chains.stride,
            out if isinstance(out, fast.SockTable) else None)
        tolerate_counted(errors, {"buckets": buckets, "sockets": sockets}, fault)
        if records is not out:
            out.extend(records)
        for net, (count, addr) in strays.items():
            before, first = self._strays.get(net, (0, addr))
            self._strays[net] = (before + count, first)

    def _decode(self, addr: int, buf: bytes, common: tuple[int, ...], proto: str,
                size: int) -> Socket:
        L = self.L
        net, family, raw_state, rcv_saddr, daddr, sport, dport_be, ifindex, cookie = common
        if family == AF_INET6:
            o = L.v6_rcv_saddr
            src = buf[o : o + 16]
            o = L.v6_daddr
            dst = buf[o : o + 16]
        else:
            src = rcv_saddr.to_bytes(4, "little")
            dst = daddr.to_bytes(4, "little")
        dport = socket.ntohs(dport_be)
        netns = self.netns_inum(net)
        if not 0 < raw_state <= TCP_MAX_STATE:
            raise FaultError(BAD_STATE, addr)
        if raw_state in (TCP_TIME_WAIT, TCP_NEW_SYN_RECV):
            return self._minisock(addr, buf, raw_state, proto, family, src, sport, dst, dport, ifindex,
                                  cookie, netns)
        if len(buf) < size:
            buf = self.mem.read(addr, size)  # a full socket after all: fault here if it must
        if proto == "tcp":
            uid, shutdown, sk_socket, cgroup, ino, recv_q, send_q, timer, timer_ms, retrans = \
                self._tcp_full(addr, buf, raw_state)
        else:
            uid, shutdown, sk_socket, cgroup, ino, recv_q, send_q = self._udp_full(addr, buf)
            timer = timer_ms = retrans = 0
        if L.sk_ino is None:
            ino = (self.mem.read_u64(sk_socket + L.inode_from_socket)
                   if sk_socket and self.inodes else 0)
        v6only = (bool(L.ipv6only.get(buf))
                  if family == AF_INET6 and raw_state in (TCP_LISTEN, TCP_CLOSE) else None)
        return Socket(
            proto, family, raw_state, src, sport, dst, dport, ifindex, v6only, recv_q, send_q,
            ino, uid, cookie, netns, shutdown, self._cgroup(cgroup) if self.cgroups else None,
            "full", addr, timer, timer_ms, retrans, sk_socket,
        )

    def _minisock(self, addr: int, buf: bytes, raw_state: int, proto: str, family: int, src: bytes,
                  sport: int, dst: bytes, dport: int, ifindex: int, cookie: int, netns: int) -> Socket:
        """A TIME_WAIT minisock (``struct inet_timewait_sock``) or a request (``struct request_sock``)."""
        L = self.L
        if raw_state == TCP_TIME_WAIT:
            if len(buf) < L.tw_end:
                buf = self.mem.read(addr, L.tw_end)
            substate = L.tw_substate.get(buf)
            if substate not in _TW_SUBSTATES:
                raise FaultError(BAD_STATE, addr)
            return Socket(proto, family, substate, src, sport, dst, dport, ifindex,
                          None, 0, 0, 0, 0, cookie, netns, None, None, "timewait", addr, 3,
                          self._ms(L.tw_expires.get(buf)), 0)
        if len(buf) < L.req_end:
            buf = self.mem.read(addr, L.req_end)
        return Socket(proto, family, TCP_SYN_RECV, src, sport, dst, dport, ifindex, None, 0,
                      0, 0, 0, cookie, netns, None, None, "request", addr, 1,
                      self._ms(L.req_expires.get(buf)), L.req_retrans.get(buf))

    def _tcp_full(self, addr: int, buf: bytes, raw_state: int) -> tuple[int, ...]:
        """
        A full TCP socket's (``struct tcp_sock``) uid, shutdown, sk_socket, cgroup, inode,
        queues and timer, as tcp_diag_get_info() and inet_sk_diag_fill() report them.
        """
        (uid, shutdown, sk_socket, cgroup, ino, protocol, ack_backlog, max_ack_backlog, rcv_nxt,
         copied_seq, write_seq, snd_una, pending, retransmits, probes_out, timeout, keepalive_pprev,
         keepalive_expires) = self.L.tcp.unpack(buf)
        if protocol != IPPROTO_TCP:
            raise FaultError(OTHER_PROTOCOL, addr)
        if raw_state == TCP_LISTEN:
            recv_q, send_q = ack_backlog, max_ack_backlog
        else:
            diff = (rcv_nxt - copied_seq) & 0xFFFFFFFF
            recv_q = 0 if diff >= 1 << 31 else diff
            send_q = (write_seq - snd_una) & 0xFFFFFFFF
        timer = timer_ms = retrans = 0
        if pending in _TCP_TIMERS:
            timer_ms = self._ms(timeout)
            if pending == ICSK_TIME_PROBE0:
                timer, retrans = 4, probes_out
            else:
                timer, retrans = 1, retransmits
        elif keepalive_pprev:
            timer, timer_ms, retrans = 2, self._ms(keepalive_expires), probes_out
        return uid, shutdown, sk_socket, cgroup, ino, recv_q, send_q, timer, timer_ms, retrans

    def _udp_full(self, addr: int, buf: bytes) -> tuple[int, ...]:
        """A UDP socket's (``struct udp_sock``) uid, shutdown, sk_socket, cgroup, inode, queues (udp_diag)."""
        (uid, shutdown, sk_socket, cgroup, ino, protocol, rmem_alloc, wmem_alloc,
         forward_deficit) = self.L.udp.unpack(buf)
        if protocol != IPPROTO_UDP:
            raise FaultError(OTHER_PROTOCOL, addr)
        return uid, shutdown, sk_socket, cgroup, ino, rmem_alloc - forward_deficit, wmem_alloc - 1


def inet_sockets(prog: Program, net: int | Sequence[int], protos: tuple[str, ...] = ("udp", "tcp"),
                   listening: bool = True, established: bool = True,
                   errors: WalkErrors | None = None, inodes: bool = True,
                   cgroups: bool = True, rows: bool = False) -> list[Socket]:
    """
    Decode the TCP and UDP sockets of a namespace in ss's order: UDP before TCP, and
    within each, IPv4 before IPv6, each in table order. Of several namespaces: each one's
    in ss's order, one namespace after the other, in the order given.

    :param net: ``struct net *`` address, or several
    :param errors: where to count what cannot be read; None: raise FaultError instead.
    :param inodes: read each full socket's inode number (``ino``; else 0).
    :param cgroups: resolve each full socket's cgroup path (``cgroup``; else None).
    :param rows: of one namespace, the sockets may come as a ``drgn_ss._fast.SockTable``
        (a sequence of records made on demand; see :class:`InetDecoder`) where the walk is in C.
    """
    nets = [net] if isinstance(net, int) else list(net)
    decoder = InetDecoder(prog, inodes, cgroups, rows=rows and len(nets) == 1)
    out: list[Socket] = []
    groups: dict[tuple[int, int], list[Socket]] = {}
    order = []
    if len(nets) > 1:
        readable = []
        for n in nets:
            try:
                order.append(decoder.netns_inum(n))
                readable.append(n)
            except FaultError as e:
                tolerate(errors, "namespaces", e)
        nets = readable
    for proto in ("udp", "tcp"):
        if proto not in protos:
            continue
        decoded = decoder.socks(nets, proto, listening, established, errors)
        if len(nets) == 1 and not isinstance(decoded, list):  # a SockTable: IPv4's rows, then IPv6's
            cast(Any, decoded).order_families((AF_INET, AF_INET6))
            if out:
                cast(Any, out).extend(decoded)
            else:
                out = decoded
            continue
        if len(nets) == 1:
            for family in (AF_INET, AF_INET6):
                out += [s for s in decoded if s[1] == family]  # s.family, without the attribute lookup
            continue
        for s in decoded:
            groups.setdefault((s[14], s[1]), []).append(s)  # by (s.netns, s.family)
        for inum in order:
            for family in (AF_INET, AF_INET6):
                out += groups.pop((inum, family), [])
    if len(nets) > 1 and len(protos) > 1:  # each namespace's UDP sockets, then its TCP sockets
        rank = {inum: i for i, inum in enumerate(order)}
        out.sort(key=lambda s: rank[s[14]])
    return out
