"""Decode MPTCP sockets (``struct mptcp_sock``, the socket an application holds, not its TCP
subflows) into :class:`~drgn_ss.sockets.record.Socket` records with the values mptcp_diag
reports (net/mptcp/mptcp_diag.c): ss's ``-M``.

mptcp_diag lists, for each IP family, the connections in the token hash (``token_hash``,
every MPTCP socket that has a token), then the listeners: TCP listeners in the listening
table whose ULP is MPTCP's subflow (``subflow_ulp_ops``), each standing for its MPTCP socket
(``ctx->conn``). A kernel without MPTCP (5.10 in Debian) has no such symbols: nothing is listed.
"""

from __future__ import annotations

from collections.abc import Sequence

from drgn import FaultError, Program, ProgramFlags
from drgn_ss.kernel.clock import jiffies, kernel_hz
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import kernel_facts, kernel_layout
from drgn_ss.kernel.fields import Unpacker
from drgn_ss.kernel.program import prog_cached
from drgn_ss.kernel.target import kernel_memory, physical_memory_bytes
from drgn_ss.sockets.fullsock import FullSockDecoder, full_sock_layout
from drgn_ss.sockets.record import (
    AF_INET,
    AF_INET6,
    ICSK_TIME_LOSS_PROBE,
    ICSK_TIME_PROBE0,
    ICSK_TIME_REO_TIMEOUT,
    ICSK_TIME_RETRANS,
    TCP_LISTEN,
    Socket,
    jiffies_delta,
)
from drgn_ss.tables.hashtable import Chains, Walked, bucket_heads, chain_entries, new_walked
from drgn_ss.tables.inet import tcp_hashinfo_address, tcp_listening_chains

__all__ = ["MptcpLayout", "mptcp_sockets"]

_TCP_TIMERS = (ICSK_TIME_RETRANS, ICSK_TIME_PROBE0, ICSK_TIME_LOSS_PROBE, ICSK_TIME_REO_TIMEOUT)
#: More token buckets than alloc_large_system_hash() makes for MPTCP (its limit is 8M).
_MAX_TOKEN_BUCKETS = 1 << 24


class MptcpLayout:
    """Where :func:`mptcp_sockets` reads an MPTCP socket's own fields, resolved once per build."""

    def __init__(self, prog: Program) -> None:
        facts = kernel_facts(prog)
        layout = kernel_layout(prog)
        f = facts.field
        S, I, M = "struct sock", "struct inet_connection_sock", "struct mptcp_sock"  # noqa: E741
        timeout = f(I, "icsk_timeout") if layout.icsk_timeout else f(S, "tcp_retransmit_timer.expires")
        keepalive = "icsk_keepalive_timer" if layout.icsk_keepalive_timer else "icsk_inet.sk.sk_timer"
        fields = {"pending": f(I, "icsk_pending"), "retransmits": f(I, "icsk_retransmits"),
                  "probes_out": f(I, "icsk_probes_out"), "timeout": timeout,
                  "keepalive_pprev": f(I, keepalive + ".entry.pprev"),
                  "keepalive_expires": f(I, keepalive + ".expires"), "first": f(M, "first")}
        if layout.mptcp_backlog_len:
            fields["backlog_len"] = f(M, "backlog_len")
        self.msk = Unpacker(fields)
        self.ack_backlog = f(S, "sk_ack_backlog")
        self.max_ack_backlog = f(S, "sk_max_ack_backlog")
        self.ulp_ops = facts.offset(I, "icsk_ulp_ops")
        self.ulp_data = facts.offset(I, "icsk_ulp_data")
        self.conn = facts.offset("struct mptcp_subflow_context", "conn")
        self.msk_chain = facts.offset("struct token_bucket", "msk_chain")
        self.bucket_size = facts.size("struct token_bucket")
        self.nulls_node = facts.offset(S, "__sk_common.skc_nulls_node")
        self.size = max(full_sock_layout(prog).size, self.msk.size)


def mptcp_layout(prog: Program) -> MptcpLayout:
    """``prog``'s :class:`MptcpLayout`, made once per program."""
    return prog_cached(prog, "mptcp_layout", MptcpLayout)


class _Lister:
    """One listing's MPTCP sockets of some namespaces, in mptcp_diag's order."""

    def __init__(self, prog: Program, inums: dict[int, int], cgroups: bool,
                 errors: WalkErrors | None) -> None:
        self.prog, self.mem, self.L = prog, kernel_memory(prog), mptcp_layout(prog)
        self.decoder = FullSockDecoder(prog, inums, cgroups)
        self.errors = errors
        self.now, self.hz = jiffies(prog), kernel_hz(prog)

    def walked(self) -> Walked:
        live = bool(self.prog.flags & ProgramFlags.IS_LIVE)
        return new_walked(self.mem, physical_memory_bytes(self.prog), live)

    def ms(self, expires: int) -> int:
        return max(jiffies_delta(expires, self.now), 0) * 1000 // self.hz

    def decode(self, addr: int, family: int) -> Socket | None:
        """An MPTCP socket of ``family`` (None if of another, or of a namespace not listed)."""
        L, mem = self.L, self.mem
        buf = mem.read(addr, L.size)
        s = self.decoder.decode(addr, buf, "mptcp")
        if s is None or s.family != family:
            return None
        values = L.msk.unpack(buf)
        pending, retransmits, probes_out, timeout, keepalive_pprev, keepalive_expires, first = values[:7]
        recv_q = (s.recv_q + (values[7] if len(values) > 7 else 0)) & 0xFFFFFFFF
        send_q = s.send_q
        if s.state == TCP_LISTEN and first:  # mptcp_diag_get_info(): the first subflow's backlog
            head = mem.read(first, max(L.ack_backlog.end, L.max_ack_backlog.end))
            recv_q, send_q = L.ack_backlog.get(head), L.max_ack_backlog.get(head)
        timer = timer_ms = retrans = 0
        if pending in _TCP_TIMERS:
            timer, timer_ms = (4 if pending == ICSK_TIME_PROBE0 else 1), self.ms(timeout)
            retrans = probes_out if pending == ICSK_TIME_PROBE0 else retransmits
        elif keepalive_pprev:
            timer, timer_ms, retrans = 2, self.ms(keepalive_expires), probes_out
        return s._replace(recv_q=recv_q, send_q=send_q, timer=timer, timer_ms=timer_ms, retrans=retrans,
                          extra=None)

    def add(self, addr: int, family: int, out: list[Socket]) -> None:
        try:
            s = self.decode(addr, family)
        except FaultError as e:
            tolerate(self.errors, "sockets", e)
            return
        if s is not None:
            out.append(s)

    def tokens(self, chains: Chains, family: int, states: int, out: list[Socket]) -> None:
        """The connections of the token hash (mptcp_token_iter_next())."""
        least, walked = self.L.nulls_node + 8, self.walked()
        for i, first in enumerate(chains.heads):
            for addr, _buf in chain_entries(self.mem, first, chains, least, least, self.errors, i, walked):
                before = len(out)
                self.add(addr, family, out)
                if len(out) > before and not states >> out[-1].state & 1:
                    out.pop()  # mptcp_diag_dump(): of a state not asked for

    def listeners(self, chains: Chains, family: int, out: list[Socket]) -> None:
        """mptcp_diag_dump_listeners(): TCP listeners with MPTCP's ULP, as their MPTCP socket."""
        L, mem = self.L, self.mem
        subflow_ops = kernel_facts(self.prog).symbol("subflow_ulp_ops")
        for first in chains.heads:
            for addr, _buf in chain_entries(mem, first, chains, chains.link + 8, chains.link + 8, self.errors,
                                            None, self.walked()):
                try:
                    if mem.read_u64(addr + L.ulp_ops) != subflow_ops:
                        continue
                    ctx = mem.read_u64(addr + L.ulp_data)
                    conn = mem.read_u64(ctx + L.conn) if ctx else 0
                except FaultError as e:
                    tolerate(self.errors, "sockets", e)
                    continue
                if conn:
                    self.add(conn, family, out)


def mptcp_sockets(prog: Program, nets: int | Sequence[int], families: Sequence[int] = (AF_INET, AF_INET6),
                  states: int = -1, errors: WalkErrors | None = None, cgroups: bool = False) -> list[Socket]:
    """
    The MPTCP sockets of a namespace, or of several (each one's in turn), in mptcp_diag's
    order: for IPv4 then IPv6, the token hash's in ``states``, then the listeners (if
    ``states`` has LISTEN). Nothing if the kernel has no MPTCP.
    """
    facts, mem = kernel_facts(prog), kernel_memory(prog)
    if not facts.has_symbol("token_hash"):
        return []
    nets = [nets] if isinstance(nets, int) else list(nets)
    inums: dict[int, int] = {}
    for net in nets:
        try:
            inums[net] = mem.read_u32(net + full_sock_layout(prog).ns_inum)
        except FaultError as e:
            if len(nets) == 1:
                raise
            tolerate(errors, "namespaces", e)
    lister = _Lister(prog, inums, cgroups, errors)
    L = lister.L
    out: list[Socket] = []
    try:
        array_at = facts.symbol("token_hash")
        count = mem.read_u32(facts.symbol("token_mask")) + 1
        if count & (count - 1) or count > _MAX_TOKEN_BUCKETS:
            raise FaultError(f"MPTCP's token hash has a damaged mask ({count - 1:#x})", array_at)
        array = mem.read_u64(array_at)
        heads, head_at = bucket_heads(mem, array, count, L.bucket_size, L.msk_chain)
        tokens = Chains(heads, L.nulls_node, True, 0, head_at, array)
    except FaultError as e:
        tolerate(errors, "tables", e)
        tokens = None
    listening: list[Chains] = []
    if states & 1 << TCP_LISTEN:
        seen = set()
        for net in inums:
            try:
                chains = tcp_listening_chains(facts, mem, tcp_hashinfo_address(facts, mem, net))
            except FaultError as e:
                tolerate(errors, "tables", e)
                continue
            if chains.array not in seen:
                seen.add(chains.array)
                listening.append(chains)
    for family in (AF_INET, AF_INET6):
        if family not in families:
            continue
        if tokens is not None:
            lister.tokens(tokens, family, states, out)
        for chains in listening:
            lister.listeners(chains, family, out)
    if len(inums) > 1:
        rank = {inum: i for i, inum in enumerate(inums.values())}
        out.sort(key=lambda s: rank[s.netns])
    return out
