"""What ``ss -m`` shows of a socket: the memory counters inet_diag reports
(sock_diag_put_meminfo()), read from each full socket's ``struct sock``.
"""

from __future__ import annotations

from collections.abc import Sequence

from drgn import FaultError, Program
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import kernel_facts, kernel_layout
from drgn_ss.kernel.target import kernel_memory
from drgn_ss.sockets.record import Socket

__all__ = ["SKMEM_FIELDS", "sk_meminfo"]

#: sock_diag_put_meminfo()'s values, in its order (SK_MEMINFO_*): what ``ss -m`` shows as
#: skmem:(r,rb,t,tb,f,w,o,bl,d).
SKMEM_FIELDS = ("rmem_alloc", "rcvbuf", "wmem_alloc", "sndbuf", "fwd_alloc", "wmem_queued", "optmem",
                "backlog", "drops")


def sk_meminfo(prog: Program, socks: Sequence[Socket], errors: WalkErrors | None = None
              ) -> dict[int, tuple[int, ...]]:
    """
    The memory counters inet_diag reports for each full socket (sock_diag_put_meminfo()),
    by the socket's address; minisocks (TIME-WAIT, SYN-RECV) have none. A socket freed
    since the walk is counted in ``errors`` and left out.
    """
    facts = kernel_facts(prog)
    mem = kernel_memory(prog)
    S = "struct sock"
    fields = [facts.field(S, path) for path in (
        "sk_backlog.rmem_alloc.counter", "sk_rcvbuf", "sk_wmem_alloc.refs.counter", "sk_sndbuf",
        "sk_forward_alloc", "sk_wmem_queued", "sk_omem_alloc.counter", "sk_backlog.len", "sk_drops.counter")]
    counters = facts.field(S, "sk_drop_counters") if kernel_layout(prog).sk_drop_counters else None
    span = max(f.end for f in [*fields, *([counters] if counters else [])])
    if counters is not None:
        drops0 = facts.offset("struct numa_drop_counters", "drops0")
        drops1 = facts.offset("struct numa_drop_counters", "drops1")
    out = {}
    for s in socks:
        if s.kind != "full":
            continue
        try:
            buf = mem.read(s.address, span)
            values = [f.get(buf) & 0xFFFFFFFF for f in fields]
            values[2] = (values[2] - 1) & 0xFFFFFFFF  # sk_wmem_alloc_get(): less the socket's own
            if counters is not None and counters.get(buf):
                at = counters.get(buf)
                values[8] = (values[8] + mem.read_u32(at + drops0) + mem.read_u32(at + drops1)) & 0xFFFFFFFF
        except FaultError as e:
            tolerate(errors, "sockets", e)
            continue
        out[s.address] = tuple(values)
    return out
