"""The classic BPF filter attached to a socket (SO_ATTACH_FILTER), as sock_diag reports it.

sock_diag_put_filterinfo() copies ``sk->sk_filter->prog->orig_prog``'s instructions, the
program as it was attached (the kernel keeps that copy for classic BPF only; an eBPF
program attached with SO_ATTACH_BPF has none, and shows no filter); packet_diag reports it
(PACKET_DIAG_FILTER), which ``ss -0b`` prints.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from drgn import FaultError, Program
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import kernel_facts
from drgn_ss.kernel.target import kernel_memory
from drgn_ss.sockets.record import Socket

__all__ = ["BPF_MAXINSNS", "Instruction", "socket_filters"]

#: The most instructions a classic program may have (include/uapi/linux/bpf_common.h):
#: a longer one is damage.
BPF_MAXINSNS = 4096

#: A ``struct sock_filter``: code, jt, jf, k.
Instruction = tuple[int, int, int, int]
_INSN = struct.Struct("<HBBI")


def socket_filters(prog: Program, socks: Sequence[Socket], errors: WalkErrors | None = None
                   ) -> dict[int, tuple[Instruction, ...]]:
    """
    The classic BPF program attached to each of ``socks`` that has one, by the socket's
    address. A filter that cannot be read, or claims more than :data:`BPF_MAXINSNS`
    instructions, is counted in ``errors`` as a socket and left out.
    """
    facts, mem = kernel_facts(prog), kernel_memory(prog)
    sk_filter = facts.offset("struct sock", "sk_filter")
    filter_prog = facts.offset("struct sk_filter", "prog")
    orig_prog = facts.offset("struct bpf_prog", "orig_prog")
    length = facts.field("struct sock_fprog_kern", "len")
    insns = facts.offset("struct sock_fprog_kern", "filter")
    out: dict[int, tuple[Instruction, ...]] = {}
    for s in socks:
        try:
            attached = mem.read_u64(s.address + sk_filter)
            if not attached:
                continue
            fprog = mem.read_u64(mem.read_u64(attached + filter_prog) + orig_prog)
            if not fprog:  # an eBPF program: sock_diag reports nothing
                continue
            head = mem.read(fprog, max(length.end, insns + 8))
            count = length.get(head)
            if count > BPF_MAXINSNS:
                raise FaultError(f"a socket filter of {count} instructions: damaged", fprog)
            code = mem.read(int.from_bytes(head[insns : insns + 8], "little"), count * _INSN.size)
        except FaultError as e:
            tolerate(errors, "sockets", e)
            continue
        out[s.address] = tuple(_INSN.iter_unpack(code))
    return out
