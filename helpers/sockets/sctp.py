"""Decode SCTP sockets (``struct sctp_endpoint``, ``struct sctp_association``, of the sctp
module) into :class:`~drgn_ss.sockets.record.Socket` records with the values sctp_diag
reports (net/sctp/diag.c): ss's ``-S``.

sctp_diag lists, for IPv4 then IPv6: with LISTEN asked for, the endpoints in the endpoint
hash (listening sockets; those with associations only if nothing but LISTEN and CLOSE is
asked, 6.1+); with another state asked for, each endpoint that has associations (found
through the transport rhashtable, once, by its first association's primary path), then
each of its associations. ss shows an association on a line of its own under its socket,
with no netid and its SCTP state as `` `- NAME``. The states asked for only gate the two
passes: no line is filtered by its state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from drgn import FaultError, Program, ProgramFlags
from drgn_ss.kernel.clock import jiffies, kernel_hz
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import kernel_facts
from drgn_ss.kernel.memory import list_nodes
from drgn_ss.kernel.modules import kernel_module, module_source
from drgn_ss.kernel.program import prog_cached
from drgn_ss.kernel.target import kernel_memory, object_limit, physical_memory_bytes
from drgn_ss.sockets.fullsock import FullSockDecoder, full_sock_layout
from drgn_ss.sockets.record import AF_INET, AF_INET6, TCP_CLOSE, TCP_LISTEN, Socket, jiffies_delta
from drgn_ss.tables.hashtable import Chains, Walked, chain_entries, new_walked
from drgn_ss.tables.rhashtable import rhashtable_chains

__all__ = ["SCTP_STATE_NAMES", "SCTP_T3_RTX", "SctpExtra", "SctpLayout", "sctp_sockets"]

#: ss's sctp_sstate_name[]: an association's state (include/net/sctp/constants.h).
SCTP_STATE_NAMES = ("CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "ESTAB", "SHUTDOWN_PENDING", "SHUTDOWN_SENT",
                    "SHUTDOWN_RECEIVED", "ACK_SENT")
#: enum sctp_event_timeout's SCTP_EVENT_TIMEOUT_T3_RTX: the only timer sctp_diag reports.
SCTP_T3_RTX = 4
#: More endpoint buckets than sctp_init() makes (its hash is at most 64K buckets).
_MAX_EP_BUCKETS = 1 << 16


class SctpExtra(NamedTuple):
    """What only an SCTP line has: whether it is an association's, and its SCTP state."""

    association: bool
    #: The association's state (SCTP_STATE_*), None for a socket's line.
    sctp_state: int | None = None
    #: The ``struct sctp_association``'s address (0 for a socket's line: its ``address``
    #: is the socket's, as an association's is, so that owners are found by it).
    association_address: int = 0


class SctpLayout:
    """Where :func:`sctp_sockets` reads, resolved once per kernel build (the module's types too)."""

    def __init__(self, prog: Program) -> None:
        facts = kernel_facts(prog)
        src = module_source(prog, "sctp")

        def off(t: str, path: str) -> int:
            return facts.offset(t, path, src)

        G, HB, EP = "struct sctp_globals", "struct sctp_hashbucket", "struct sctp_endpoint"
        T, A, E = "struct sctp_transport", "struct sctp_association", "struct sctp_sockaddr_entry"
        self.ep_hashtable, self.ep_hashsize = off(G, "ep_hashtable"), off(G, "ep_hashsize")
        self.transports = off(G, "transport_hashtable.ht")
        self.bucket_chain, self.bucket_size = off(HB, "chain"), facts.size(HB, src)
        self.ep_sk, self.ep_dead = off(EP, "base.sk"), off(EP, "base.dead")
        self.ep_node, self.ep_asocs = off(EP, "node"), off(EP, "asocs")
        self.t_node, self.t_refcnt, self.t_asoc = off(T, "node"), off(T, "refcnt"), off(T, "asoc")
        self.t_ipaddr, self.t_dst = off(T, "ipaddr"), off(T, "dst")
        self.t_expires = off(T, "T3_rtx_timer.expires")
        self.t_pending = off(T, "T3_rtx_timer.entry.pprev")
        self.a_asocs, self.a_port = off(A, "asocs"), off(A, "base.bind_addr.port")
        self.a_addresses, self.a_net = off(A, "base.bind_addr.address_list"), off(A, "base.net")
        self.a_peer_port, self.a_primary = off(A, "peer.port"), off(A, "peer.primary_path")
        self.a_state, self.a_rtx = off(A, "state"), off(A, "rtx_data_chunks")
        self.a_rmem, self.a_sndbuf, self.a_ep = off(A, "rmem_alloc"), off(A, "sndbuf_used"), off(A, "ep")
        self.e_list, self.e_addr = off(E, "list"), off(E, "a")
        self.sin_addr = facts.offset("struct sockaddr_in", "sin_addr")
        self.sin6_addr = facts.offset("struct sockaddr_in6", "sin6_addr")
        self.dst_dev = facts.offset("struct dst_entry", "dev")
        self.ifindex = facts.offset("struct net_device", "ifindex")
        self.ack_backlog = facts.field("struct sock", "sk_ack_backlog")
        # Before 5.16, sctp_ep_dump() dumped every hashed endpoint when LISTEN was asked
        # for, those with associations too (which the association pass then lists again);
        # later kernels leave those to the association pass. Nothing in the diag code's
        # types tells the two apart; ``sctp_endpoint.secid`` moved to the association in
        # the same release ("security: pass asoc to sctp_assoc_request and sctp_sk_clone",
        # 5.16), and tells Debian's 5.10 from 6.1+.
        try:
            facts.offset(EP, "secid", src)
            self.listen_pass_all = True
        except LookupError:
            self.listen_pass_all = False
        self.max_ack_backlog = facts.field("struct sock", "sk_max_ack_backlog")


def sctp_layout(prog: Program) -> SctpLayout:
    """``prog``'s :class:`SctpLayout`, made once per program."""
    return prog_cached(prog, "sctp_layout", SctpLayout)


class _Lister:
    """One listing's SCTP lines, in sctp_diag's order."""

    def __init__(self, prog: Program, inums: dict[int, int], cgroups: bool, errors: WalkErrors | None,
                 globals_at: int) -> None:
        self.prog, self.mem, self.L = prog, kernel_memory(prog), sctp_layout(prog)
        self.decoder = FullSockDecoder(prog, inums, cgroups)
        self.errors, self.globals_at = errors, globals_at
        self.limit = object_limit(prog, "struct sock")
        self.now, self.hz = jiffies(prog), kernel_hz(prog)

    def walked(self) -> Walked:
        live = bool(self.prog.flags & ProgramFlags.IS_LIVE)
        return new_walked(self.mem, physical_memory_bytes(self.prog), live)

    def socket_line(self, sk: int, family: int) -> Socket | None:
        """An SCTP socket's own line (the queues its accept queue's), None if not listed here."""
        mem = self.mem
        s = self.decoder.decode(sk, mem.read(sk, full_sock_layout(self.prog).size), "sctp")
        if s is None or s.family != family:
            return None
        L = self.L
        head = mem.read(sk, max(L.ack_backlog.end, L.max_ack_backlog.end))
        return s._replace(recv_q=L.ack_backlog.get(head), send_q=L.max_ack_backlog.get(head),
                          extra=SctpExtra(False))

    def endpoints(self, family: int, states: int, out: list[Socket]) -> None:
        """The endpoint hash (sctp_for_each_endpoint(), sctp_ep_dump())."""
        L, mem = self.L, self.mem
        table = mem.read_u64(self.globals_at + L.ep_hashtable)
        size = int.from_bytes(mem.read(self.globals_at + L.ep_hashsize, 4), "little", signed=True)
        if not 0 <= size <= _MAX_EP_BUCKETS:
            raise FaultError(f"SCTP's endpoint hash has a damaged size ({size})", self.globals_at)
        walked = self.walked()
        others = states & ~(1 << TCP_LISTEN | 1 << TCP_CLOSE)
        for i in range(size):
            head = mem.read_u64(table + i * L.bucket_size + L.bucket_chain)
            chains = Chains([head], L.ep_node, False)
            for ep, _buf in chain_entries(mem, head, chains, L.ep_node + 8, L.ep_node + 8, self.errors, None,
                                          walked):
                try:
                    if mem.read(ep + L.ep_dead, 1)[0] and not L.listen_pass_all:
                        continue
                    if others and not L.listen_pass_all and mem.read_u64(ep + L.ep_asocs) != ep + L.ep_asocs:
                        continue  # listed with its associations
                    s = self.socket_line(mem.read_u64(ep + L.ep_sk), family)
                except FaultError as e:
                    tolerate(self.errors, "sockets", e)
                    continue
                if s is not None:
                    out.append(s)

    def associations(self, family: int, out: list[Socket]) -> None:
        """The transport hash (sctp_transport_traverse_process(), sctp_sock_dump())."""
        L, mem = self.L, self.mem
        facts = kernel_facts(self.prog)
        for chains in rhashtable_chains(facts, mem, self.globals_at + L.transports, L.t_node, self.errors):
            walked = self.walked()
            least = L.t_node + 16
            for first in chains.heads:
                for t, _buf in chain_entries(mem, first, chains, least, least, self.errors, None, walked):
                    for transport in self._duplicates(t):
                        try:
                            self._transport(transport, family, out)
                        except FaultError as e:
                            tolerate(self.errors, "sockets", e)

    def _duplicates(self, t: int) -> list[int]:
        """A transport and those of its rhltable list (``rhlist_head.next``), loop-checked."""
        out, seen = [t], {t}
        pos = self.mem.read_u64(t + self.L.t_node + 8)
        while pos and len(out) < self.limit:
            t2 = pos - self.L.t_node
            if t2 in seen:
                break
            seen.add(t2)
            out.append(t2)
            pos = self.mem.read_u64(pos + 8)
        return out

    def _transport(self, t: int, family: int, out: list[Socket]) -> None:
        L, mem = self.L, self.mem
        if not mem.read_u32(t + L.t_refcnt):
            return
        asoc = mem.read_u64(t + L.t_asoc)
        if mem.read_u64(asoc + L.a_net) not in self.decoder.nets or mem.read_u64(asoc + L.a_primary) != t:
            return
        ep = mem.read_u64(asoc + L.a_ep)
        if mem.read_u64(ep + L.ep_asocs) != asoc + L.a_asocs:
            return  # not the endpoint's first association: the endpoint is listed through that one
        line = self.socket_line(mem.read_u64(ep + L.ep_sk), family)
        if line is None:
            return
        lines = [line]
        for node in list_nodes(mem, ep + L.ep_asocs, self.limit, "an endpoint's associations"):
            lines.append(self.association(line, node - L.a_asocs, family))
        out += lines

    def association(self, sock: Socket, asoc: int, family: int) -> Socket:
        """An association's line (inet_diag_msg_sctpasoc_fill(), sctp_diag_get_info())."""
        L, mem = self.L, self.mem
        primary = mem.read_u64(asoc + L.a_primary)
        entry = mem.read_u64(asoc + L.a_addresses) - L.e_list
        at, size = (L.sin6_addr, 16) if family == AF_INET6 else (L.sin_addr, 4)
        src = mem.read(entry + L.e_addr + at, size)
        dst = mem.read(primary + L.t_ipaddr + at, size)
        dst_entry = mem.read_u64(primary + L.t_dst)
        ifindex = mem.read_u32(mem.read_u64(dst_entry + L.dst_dev) + L.ifindex) if dst_entry else 0
        state = mem.read_u32(asoc + L.a_state)
        timer = timer_ms = retrans = 0
        if mem.read_u64(primary + L.t_pending):
            expires = mem.read_u64(primary + L.t_expires)
            timer, retrans = SCTP_T3_RTX, mem.read_u32(asoc + L.a_rtx)
            timer_ms = max(jiffies_delta(expires, self.now), 0) * 1000 // self.hz
        return sock._replace(
            src=src, sport=int.from_bytes(mem.read(asoc + L.a_port, 2), "little"), dst=dst,
            dport=int.from_bytes(mem.read(asoc + L.a_peer_port, 2), "little"), ifindex=ifindex,
            state=state, recv_q=mem.read_u32(asoc + L.a_rmem), send_q=mem.read_u32(asoc + L.a_sndbuf),
            timer=timer, timer_ms=timer_ms, retrans=retrans, extra=SctpExtra(True, state, asoc))


def sctp_sockets(prog: Program, nets: int | Sequence[int], families: Sequence[int] = (AF_INET, AF_INET6),
                 states: int = -1, errors: WalkErrors | None = None, cgroups: bool = False) -> list[Socket]:
    """
    The SCTP sockets and associations of a namespace, or of several (each one's in turn),
    in sctp_diag's order; none if the sctp module is not loaded.

    :raises LookupError: if it is, but its types cannot be had (no debug info, no BTF)
    """
    module = kernel_module(prog, "sctp")
    if module is None:
        return []
    sctp_layout(prog)  # LookupError here: the family is left out
    mem = kernel_memory(prog)
    globals_at = module.variable("sctp_globals")
    if not globals_at:
        raise LookupError("the sctp module has no sctp_globals symbol")
    nets = [nets] if isinstance(nets, int) else list(nets)
    inums: dict[int, int] = {}
    for net in nets:
        try:
            inums[net] = mem.read_u32(net + full_sock_layout(prog).ns_inum)
        except FaultError as e:
            if len(nets) == 1:
                raise
            tolerate(errors, "namespaces", e)
    lister = _Lister(prog, inums, cgroups, errors, globals_at)
    out: list[Socket] = []
    for family in (AF_INET, AF_INET6):
        if family not in families:
            continue
        try:
            if states & 1 << TCP_LISTEN:
                lister.endpoints(family, states, out)
            if states & ~(1 << TCP_LISTEN | 1 << TCP_CLOSE):
                lister.associations(family, out)
        except FaultError as e:
            tolerate(errors, "tables", e)
    if len(inums) > 1:
        rank = {inum: i for i, inum in enumerate(inums.values())}
        out.sort(key=lambda s: rank[s.netns])
    return out
