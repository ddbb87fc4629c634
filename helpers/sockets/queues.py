"""A listener's queues as they are in memory: the connections waiting for accept() and
the requests still in SYN-RECV, each with its age, and the listener's drops.

- A TCP listener's accept queue is ``inet_csk(sk)->icsk_accept_queue``: request socks
  from ``rskq_accept_head``, chained by ``dl_next``, each holding its established child
  in ``req->sk`` (net/ipv4/inet_connection_sock.c, inet_csk_reqsk_queue_add()). A child's
  age is the time since tcp_create_openreq_child() set its ``lsndtime`` (it sends no data
  before it is accepted).
- Its SYN queue is the request socks (``TCP_NEW_SYN_RECV``) in the established table
  whose ``rsk_listener`` it is: their age is the time since their first SYN-ACK
  (``tcp_rsk(req)->snt_synack``, tcp_clock_us(): the monotonic clock), and
  ``num_retrans`` the SYN-ACKs sent again.
- A unix listener's accept queue is its receive queue: one skb per connection, whose
  ``skb->sk`` is the new socket, peer of the connecting one (unix_stream_connect()).
  Nothing there records when: those entries have no age.
- ``drops`` is ``sk_drops``: tcp_listendrop() counts each SYN or ACK a listener dropped
  (a full accept queue among them), as sock_diag reports it (``ss -m``'s ``d``).

Ages are against the kernel's own clocks now, or at a dump's taking.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from drgn import FaultError, Program
from drgn_ss.kernel.clock import jiffies, kernel_hz, monotonic_ns
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import kernel_facts
from drgn_ss.kernel.memory import list_nodes
from drgn_ss.kernel.program import prog_cached
from drgn_ss.kernel.target import kernel_memory, object_limit
from drgn_ss.sockets.meminfo import SKMEM_FIELDS, sk_meminfo
from drgn_ss.sockets.record import AF_INET, AF_INET6, TCP_LISTEN, Socket
from drgn_ss.sockets.unix import AF_UNIX, unix_layout, unix_sock_inode

__all__ = ["ListenerQueues", "QueueEntry", "QueuesLayout", "listener_queues", "queues_layout"]

_U32 = 0xFFFFFFFF
SKMEM_DROPS = SKMEM_FIELDS.index("drops")


class QueueEntry(NamedTuple):
    """One connection waiting in a listener's queue."""

    #: The peer: its address family, address (network byte order) and port; for unix,
    #: AF_UNIX, no address and the connecting socket's inode (as ss shows a unix peer).
    family: int
    addr: bytes
    port: int
    #: Milliseconds since it was established (accept queue) or since its first SYN-ACK
    #: (SYN queue); None where memory does not record it (unix).
    age_ms: int | None
    #: SYN-ACKs sent again (SYN queue only, else None).
    retrans: int | None = None


class ListenerQueues(NamedTuple):
    """What waits on one listener, as it is in memory."""

    #: Connections waiting for accept(), and the most it may hold (``sk_max_ack_backlog``).
    accept_len: int
    accept_max: int
    #: Each waiting connection, oldest first (a TCP listener's queue is in arrival order).
    accept: tuple[QueueEntry, ...]
    #: Requests in SYN-RECV (TCP only; empty for unix), in no particular order.
    syn: tuple[QueueEntry, ...]
    #: ``sk_drops``: SYNs and ACKs the listener dropped.
    drops: int


class QueuesLayout:
    """Where the queues live in ``struct inet_connection_sock`` and ``struct request_sock``."""

    def __init__(self, prog: Program) -> None:
        facts = kernel_facts(prog)
        I = "struct inet_connection_sock"  # noqa: E741
        R = "struct request_sock"
        self.accept_head = facts.offset(I, "icsk_accept_queue.rskq_accept_head")
        self.max_ack_backlog = facts.field("struct sock", "sk_max_ack_backlog")
        self.dl_next = facts.offset(R, "dl_next")
        self.child = facts.offset(R, "sk")
        self.listener = facts.offset(R, "__req_common.skc_listener")
        self.family = facts.field(R, "__req_common.skc_family")
        self.daddr = facts.offset(R, "__req_common.skc_daddr")
        self.v6_daddr = facts.offset(R, "__req_common.skc_v6_daddr")
        self.dport = facts.offset(R, "__req_common.skc_dport")
        self.snt_synack = facts.offset("struct tcp_request_sock", "snt_synack")
        self.lsndtime = facts.offset("struct tcp_sock", "lsndtime")
        self.common_end = max(self.family.end, self.daddr + 4, self.v6_daddr + 16, self.dport + 2)


def queues_layout(prog: Program) -> QueuesLayout:
    """``prog``'s :class:`QueuesLayout`, made once per program."""
    return prog_cached(prog, "queues_layout", QueuesLayout)


def listener_queues(prog: Program, listeners: Sequence[Socket], requests: Sequence[Socket],
                    errors: WalkErrors | None = None,
                    skmem: dict[int, tuple[int, ...]] | None = None) -> dict[int, ListenerQueues]:
    """
    The queues of each TCP and unix listener in ``listeners``, by its address; ``requests``
    are the SYN-RECV request socks of the same walk (kind "request"), sorted to their
    listeners here. A listener or request that cannot be read is counted and left out.

    :param skmem: :func:`~drgn_ss.sockets.inet.sk_meminfo` of the listeners, where the
        caller has read it already (their drops are in it); else it is read here
    """
    reader = _QueueReader(prog, errors)
    tcp = [s for s in listeners if s.proto == "tcp" and s.kind == "full" and s.state == TCP_LISTEN]
    unix = [s for s in listeners if s.family == AF_UNIX and s.state == TCP_LISTEN]
    syn_queues = reader.syn_queues({s.address for s in tcp}, requests)
    if skmem is None:
        skmem = sk_meminfo(prog, [*tcp, *unix], errors)
    drops = {address: values[SKMEM_DROPS] for address, values in skmem.items()}
    out: dict[int, ListenerQueues] = {}
    for s in [*tcp, *unix]:
        syn: tuple[QueueEntry, ...]
        try:
            if s.family == AF_UNIX:
                accept, syn = reader.unix_accept_queue(s.address), ()
            else:
                accept, syn = reader.tcp_accept_queue(s.address), syn_queues.get(s.address, ())
        except FaultError as e:
            tolerate(errors, "sockets", e)
            continue
        out[s.address] = ListenerQueues(s.recv_q, s.send_q, accept, syn, drops.get(s.address, 0))
    return out


class _QueueReader:
    """Read the queues of one listing's listeners, against one reading of the clocks."""

    def __init__(self, prog: Program, errors: WalkErrors | None) -> None:
        self.prog = prog
        self.mem = kernel_memory(prog)
        self.L = queues_layout(prog)
        self.errors = errors
        self.hz = kernel_hz(prog)
        self.jiffies32 = jiffies(prog) & _U32
        self.now_us = monotonic_ns(prog) // 1000
        self.limit = object_limit(prog, "struct request_sock")

    def _peer(self, req: int) -> tuple[int, bytes, int]:
        """A request sock's peer: its family, ``ir_rmt_addr`` and ``ir_rmt_port``."""
        L = self.L
        buf = self.mem.read(req, L.common_end)
        family = L.family.get(buf)
        port = int.from_bytes(buf[L.dport:L.dport + 2], "big")
        if family == AF_INET6:
            return family, buf[L.v6_daddr:L.v6_daddr + 16], port
        if family != AF_INET:
            raise FaultError("a damaged request sock (no inet family)", req)
        return family, buf[L.daddr:L.daddr + 4], port

    def tcp_accept_queue(self, sk: int) -> tuple[QueueEntry, ...]:
        """The children waiting for accept() on a TCP listener, oldest first."""
        L, mem = self.L, self.mem
        # At most sk_max_ack_backlog + 1 (sk_acceptq_is_full()); the bound is the kernel's.
        backlog = L.max_ack_backlog.get(mem.read(sk, L.max_ack_backlog.end))
        limit = min(self.limit, backlog + 2)
        entries = []
        seen: set[int] = set()
        req = mem.read_u64(sk + L.accept_head)
        while req:
            if req in seen:
                raise FaultError("an accept queue loops back: a freed request?", req)
            if len(seen) >= limit:
                raise FaultError("an accept queue longer than its listener's backlog", req)
            seen.add(req)
            child = mem.read_u64(req + L.child)
            age = None
            if child:
                sent = mem.read_u32(child + L.lsndtime)
                age = ((self.jiffies32 - sent) & _U32) * 1000 // self.hz
            entries.append(QueueEntry(*self._peer(req), age))
            req = mem.read_u64(req + L.dl_next)
        return tuple(entries)

    def syn_queues(self, listeners: set[int], requests: Sequence[Socket]
                   ) -> dict[int, tuple[QueueEntry, ...]]:
        """Each listener's requests in SYN-RECV, by the listener's address."""
        L, mem = self.L, self.mem
        out: dict[int, list[QueueEntry]] = {}
        for r in requests:
            if r.kind != "request":
                continue
            try:
                listener = mem.read_u64(r.address + L.listener)
                if listener not in listeners:
                    continue
                sent = mem.read_u64(r.address + L.snt_synack)
            except FaultError as e:
                tolerate(self.errors, "sockets", e)
                continue
            # 0: no SYN-ACK sent yet (or a syncookie's); a stamp ahead of now is not an age.
            age = (self.now_us - sent) // 1000 if 0 < sent <= self.now_us else None
            out.setdefault(listener, []).append(QueueEntry(r.family, r.dst, r.dport, age, r.retrans))
        return {listener: tuple(entries) for listener, entries in out.items()}

    def unix_accept_queue(self, sk: int) -> tuple[QueueEntry, ...]:
        """The connections waiting for accept() on a unix listener, oldest first."""
        U, mem = unix_layout(self.prog), self.mem
        entries = []
        skb_limit = object_limit(self.prog, "struct sk_buff")
        for skb in list_nodes(mem, sk + U.receive_queue, skb_limit, "an accept queue"):
            embryo = mem.read_u64(skb + U.skb_sk)
            peer = mem.read_u64(embryo + U.unix_peer) if embryo else 0
            entries.append(QueueEntry(AF_UNIX, b"", unix_sock_inode(mem, U, peer) if peer else 0, None))
        return tuple(entries)

