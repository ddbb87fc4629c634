"""--ages: how long ago a TCP socket last did each thing, from its own timestamps, and how
old the data waiting in its queues is, from the queued skbs.

- ``last_recv``, ``last_send``, ``last_ack``: ``icsk_ack.lrcvtime`` (data received),
  ``lsndtime`` (data sent) and ``rcv_tstamp`` (an ACK received), jiffies, as tcp_get_info()
  reports them (``ss -i``'s lastrcv, lastsnd, lastack).
- ``oldest_unread``: the first skb of ``sk_receive_queue``, by its ``tstamp``, the real-time
  clock when it arrived. The kernel stamps received packets only while something asked
  for timestamps (SO_TIMESTAMP*, a packet socket's, netstamp_needed_key); otherwise it
  is 0, and the age unknown.
- ``oldest_unacked``: the leftmost skb of ``tcp_rtx_queue`` (sent, not yet acknowledged),
  by its ``skb_mstamp_ns``, the monotonic time it was last sent. Data not sent yet (a
  closed window) has no stamp: unknown.

Ages are against the kernel's own clocks now, or at a dump's taking.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from drgn import FaultError, Program
from drgn_ss.kernel.clock import jiffies, kernel_hz, monotonic_ns, realtime_offset_ns
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import kernel_facts
from drgn_ss.kernel.memory import Memory
from drgn_ss.kernel.program import prog_cached
from drgn_ss.kernel.target import kernel_memory
from drgn_ss.sockets.record import TCP_LISTEN, Socket

__all__ = ["AgesLayout", "SocketAges", "ages_layout", "socket_ages"]

_U32 = 0xFFFFFFFF
#: An rbtree of skbs is balanced: no path is longer than twice log2 of a count memory could hold.
_MAX_RB_DEPTH = 128


class SocketAges(NamedTuple):
    """Milliseconds since each thing happened on a TCP socket (None: not known)."""

    last_recv_ms: int
    last_send_ms: int
    last_ack_ms: int
    oldest_unread_ms: int | None
    oldest_unacked_ms: int | None


class AgesLayout:
    """Where the stamps live in ``struct tcp_sock`` and ``struct sk_buff``."""

    def __init__(self, prog: Program) -> None:
        facts = kernel_facts(prog)
        self.lrcvtime = facts.field("struct inet_connection_sock", "icsk_ack.lrcvtime")
        self.lsndtime = facts.field("struct tcp_sock", "lsndtime")
        self.rcv_tstamp = facts.field("struct tcp_sock", "rcv_tstamp")
        self.receive_queue = facts.offset("struct sock", "sk_receive_queue")
        self.rtx_queue = facts.offset("struct sock", "tcp_rtx_queue")
        self.span = max(self.lrcvtime.end, self.lsndtime.end, self.rcv_tstamp.end, self.receive_queue + 8,
                        self.rtx_queue + 8)
        self.skb_tstamp = facts.offset("struct sk_buff", "tstamp")
        self.skb_rbnode = facts.offset("struct sk_buff", "rbnode")
        self.rb_left = facts.offset("struct rb_node", "rb_left")


def ages_layout(prog: Program) -> AgesLayout:
    """``prog``'s :class:`AgesLayout`, made once per program."""
    return prog_cached(prog, "ages_layout", AgesLayout)


def socket_ages(prog: Program, socks: Sequence[Socket], errors: WalkErrors | None = None
                ) -> dict[int, SocketAges]:
    """
    The ages of each full TCP socket that is not a listener, by its address; one that
    cannot be read is counted and left out.
    """
    L = ages_layout(prog)
    mem = kernel_memory(prog)
    hz = kernel_hz(prog)
    now32 = jiffies(prog) & _U32
    mono = monotonic_ns(prog)
    real = mono + realtime_offset_ns(prog)

    def since(stamp: int) -> int:  # jiffies_to_msecs() of a u32 difference, as tcp_get_info()
        return ((now32 - stamp) & _U32) * 1000 // hz

    out = {}
    for s in socks:
        if s.proto != "tcp" or s.kind != "full" or s.state == TCP_LISTEN:
            continue
        try:
            buf = mem.read(s.address, L.span)
            unread = _oldest_unread(mem, s.address, buf, L, real)
            unacked = _oldest_unacked(mem, buf, L, mono)
        except FaultError as e:
            tolerate(errors, "sockets", e)
            continue
        out[s.address] = SocketAges(since(L.lrcvtime.get(buf)), since(L.lsndtime.get(buf)),
                                    since(L.rcv_tstamp.get(buf)), unread, unacked)
    return out


def _age_ms(now_ns: int, stamp_ns: int) -> int | None:
    """Milliseconds from a stamp to now; None for no stamp, or one after now (not an age)."""
    return (now_ns - stamp_ns) // 1_000_000 if 0 < stamp_ns <= now_ns else None


def _oldest_unread(mem: Memory, sk: int, buf: bytes, L: AgesLayout, real_ns: int) -> int | None:
    """The age of the first skb waiting in the receive queue, if the kernel stamped it."""
    first = int.from_bytes(buf[L.receive_queue:L.receive_queue + 8], "little")
    if first in (0, sk + L.receive_queue):
        return None
    return _age_ms(real_ns, mem.read_u64(first + L.skb_tstamp))


def _oldest_unacked(mem: Memory, buf: bytes, L: AgesLayout, mono_ns: int) -> int | None:
    """The age of the leftmost skb of the retransmit queue (rb_first()), by when it was last sent."""
    node = int.from_bytes(buf[L.rtx_queue:L.rtx_queue + 8], "little")
    if not node:
        return None
    for _ in range(_MAX_RB_DEPTH):
        left = mem.read_u64(node + L.rb_left)
        if not left:
            skb = node - L.skb_rbnode
            return _age_ms(mono_ns, mem.read_u64(skb + L.skb_tstamp))
        node = left
    raise FaultError("a retransmit queue deeper than any balanced tree: a loop?", node)
