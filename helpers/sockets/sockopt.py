"""What ss --tos and --inet-sockopt show of an inet socket, read as inet_diag reports it.

inet_diag_msg_attrs_fill() puts them on every full inet socket (TCP, UDP, raw, SCTP,
MPTCP), never on a minisock (TIME-WAIT, SYN-RECV):

- ``INET_DIAG_TOS`` (``inet->tos``), ``INET_DIAG_TCLASS`` (an IPv6 socket's
  ``ipv6_pinfo.tclass``) and ``INET_DIAG_CLASS_ID`` (the net_cls class id, or where none
  is set, ``sk->sk_priority``);
- ``INET_DIAG_SOCKOPT``: eleven flags of ``struct inet_sock``, bitfields of their own
  before 6.6 and bits of ``inet->inet_flags`` after (:attr:`KernelLayout.inet_flags`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from drgn import FaultError, Program
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import kernel_facts, kernel_layout
from drgn_ss.kernel.fields import Field
from drgn_ss.kernel.program import prog_cached
from drgn_ss.kernel.target import kernel_memory
from drgn_ss.sockets.record import AF_INET, AF_INET6, Socket

__all__ = ["INET_SOCKOPTS", "InetTos", "inet_options"]

#: struct inet_diag_sockopt's flags in the order ss prints them: (ss's word, the member
#: of struct inet_sock before 6.6, the INET_FLAGS_ constant after).
INET_SOCKOPTS = (
    ("recverr", "recverr", "INET_FLAGS_RECVERR"),
    ("is_icsk", "is_icsk", "INET_FLAGS_IS_ICSK"),
    ("freebind", "freebind", "INET_FLAGS_FREEBIND"),
    ("hdrincl", "hdrincl", "INET_FLAGS_HDRINCL"),
    ("mc_loop", "mc_loop", "INET_FLAGS_MC_LOOP"),
    ("transparent", "transparent", "INET_FLAGS_TRANSPARENT"),
    ("mc_all", "mc_all", "INET_FLAGS_MC_ALL"),
    ("nodefrag", "nodefrag", "INET_FLAGS_NODEFRAG"),
    ("bind_addr_no_port", "bind_address_no_port", "INET_FLAGS_BIND_ADDRESS_NO_PORT"),
    ("recverr_rfc4884", "recverr_rfc4884", "INET_FLAGS_RECVERR_RFC4884"),
    ("defer_connect", "defer_connect", "INET_FLAGS_DEFER_CONNECT"),
)


class InetTos(NamedTuple):
    """A socket's INET_DIAG_TOS, INET_DIAG_TCLASS (IPv6 sockets only) and INET_DIAG_CLASS_ID."""

    tos: int
    tclass: int | None
    class_id: int


class _OptionLayout:
    """Where a ``struct inet_sock`` keeps what --tos and --inet-sockopt read."""

    def __init__(self, prog: Program) -> None:
        facts, layout = kernel_facts(prog), kernel_layout(prog)
        INET, S = "struct inet_sock", "struct sock"
        f = facts.field
        self.tos = f(INET, "tos")
        self.priority = f(S, "sk_priority")
        self.pinet6 = f(INET, "pinet6")
        self.tclass = facts.offset("struct ipv6_pinfo", "tclass")
        # The net_cls class id: its own member (5.15+, and Debian's 5.10 backport), else the
        # high half of a ``val`` whose lowest bit says it holds data rather than a pointer.
        self.classid: Field | None
        self.packed: Field | None = None
        try:
            self.classid = f(S, "sk_cgrp_data.classid")
        except LookupError:  # no CONFIG_CGROUP_NET_CLASSID: always 0
            self.classid = None
        if not layout.sock_cgroup_pointer:
            self.packed, self.classid = f(S, "sk_cgrp_data.val"), None
        self.flags: list[tuple[Field, int]]
        if layout.inet_flags:
            word = f(INET, "inet_flags")
            self.flags = [(word, facts.enumerator(None, constant)) for _w, _m, constant in INET_SOCKOPTS]
        else:
            self.flags = [(f(INET, member), 0) for _w, member, _c in INET_SOCKOPTS]
        fields = [self.tos, self.priority, self.pinet6, *(x for x, _ in self.flags)]
        fields += [x for x in (self.classid, self.packed) if x is not None]
        self.size = max(x.end for x in fields)


def _layout(prog: Program) -> _OptionLayout:
    return prog_cached(prog, "inet_option_layout", _OptionLayout)


def _full_inet(socks: Sequence[Socket]) -> list[Socket]:
    return [s for s in socks if s.kind == "full" and s.family in (AF_INET, AF_INET6)]


def inet_options(prog: Program, socks: Sequence[Socket], errors: WalkErrors | None = None,
                 tos: bool = True, sockopts: bool = True
                 ) -> tuple[dict[int, InetTos] | None, dict[int, tuple[str, ...]] | None]:
    """
    ``ss --tos`` (``tos``: each full inet socket's ToS, traffic class and class id) and
    ``ss --inet-sockopt`` (``sockopts``: the flags set, as ss names them and in its order),
    by the socket's address, each socket read once for both; None for what is not asked. A
    socket that cannot be read is counted in ``errors`` and left out.
    """
    L, mem = _layout(prog), kernel_memory(prog)
    tos_out: dict[int, InetTos] | None = {} if tos else None
    opts_out: dict[int, tuple[str, ...]] | None = {} if sockopts else None
    for s in _full_inet(socks) if tos or sockopts else ():
        try:
            buf = mem.read(s.address, L.size)
            tclass = None
            if tos_out is not None and s.family == AF_INET6:
                pinet6 = L.pinet6.get(buf)
                tclass = mem.read(pinet6 + L.tclass, 1)[0] if pinet6 else 0
        except FaultError as e:
            tolerate(errors, "sockets", e)
            continue
        if tos_out is not None:
            tos_out[s.address] = _tos(L, buf, tclass)
        if opts_out is not None:
            opts_out[s.address] = tuple(word for (word, _m, _c), (fld, bit) in zip(INET_SOCKOPTS, L.flags)
                                        if fld.get(buf) >> bit & 1)
    return tos_out, opts_out


def _tos(L: _OptionLayout, buf: bytes, tclass: int | None) -> InetTos:
    """A socket's INET_DIAG_TOS, INET_DIAG_TCLASS and INET_DIAG_CLASS_ID from its bytes."""
    classid = L.classid.get(buf) if L.classid is not None else 0
    if L.packed is not None:
        value = L.packed.get(buf)
        classid = value >> 32 if value & 1 else 0
    return InetTos(L.tos.get(buf) & 0xFF, tclass, classid or L.priority.get(buf) & 0xFFFFFFFF)
