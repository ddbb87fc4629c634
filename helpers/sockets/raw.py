"""Decode raw IP sockets (``struct raw_sock``, ``raw6_sock``) into
:class:`~drgn_ss.sockets.record.Socket` records with the values raw_diag reports
(net/ipv4/raw_diag.c through inet_sk_diag_fill()): ss's ``-w``.

A raw socket's record has ``proto`` "raw" (its table) and the protocol it was opened for in
``sport``, as inet_diag reports it (``inet_num``); ss names its netid after that protocol
(:func:`raw_netid`), kept in ``extra`` (:class:`RawExtra`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, cast

from drgn import FaultError, Program, ProgramFlags
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import kernel_facts
from drgn_ss.kernel.target import kernel_memory, physical_memory_bytes
from drgn_ss.sockets.fullsock import FullSockDecoder, full_sock_layout
from drgn_ss.sockets.record import AF_INET, AF_INET6, Socket
from drgn_ss.tables.hashtable import Chains, Walked, chain_entries, new_walked
from drgn_ss.tables.raw import raw_table_chains

__all__ = ["RawExtra", "raw_netid", "raw_sockets"]
#: ss's proto_name(): the netid of a raw socket, by its protocol.
_NETIDS = {0: "raw", 17: "udp", 6: "tcp", 262: "mptcp", 132: "sctp", 33: "dccp", 58: "icmp6"}


def raw_netid(protocol: int) -> str:
    """ss's netid for a raw socket: its protocol's (proto_name()), ``???`` for most."""
    return _NETIDS.get(protocol, "???")


class RawExtra(NamedTuple):
    """What only a raw socket has."""

    #: ``sk_protocol`` (INET_DIAG_PROTOCOL), which ss names the netid after.
    protocol: int


def _decode(decoder: FullSockDecoder, addr: int, buf: bytes, family: int) -> Socket | None:
    """A raw socket of the ``family`` table, as raw_diag reports it."""
    s = decoder.decode(addr, buf, "raw", family)
    return None if s is None else s._replace(extra=RawExtra(cast(int, s.extra)))


def raw_sockets(prog: Program, nets: int | Sequence[int], families: Sequence[int] = (AF_INET, AF_INET6),
                errors: WalkErrors | None = None, cgroups: bool = False) -> list[Socket]:
    """
    The raw sockets of a namespace, or of several, in raw_diag's order: the IPv4 table's,
    then the IPv6 table's, each bucket by bucket; of several namespaces, each one's in turn.
    Every raw socket is listed whatever its state, as raw_diag lists them.

    :param cgroups: resolve each socket's cgroup path (``ss -e``)
    """
    facts, mem = kernel_facts(prog), kernel_memory(prog)
    nets = [nets] if isinstance(nets, int) else list(nets)
    L = full_sock_layout(prog)
    inums: dict[int, int] = {}
    for net in nets:
        try:
            inums[net] = mem.read_u32(net + L.ns_inum)
        except FaultError as e:
            if len(nets) == 1:
                raise
            tolerate(errors, "namespaces", e)
    decoder = FullSockDecoder(prog, inums, cgroups)
    walked = new_walked(mem, physical_memory_bytes(prog), bool(prog.flags & ProgramFlags.IS_LIVE))
    out: list[Socket] = []
    for family in (AF_INET, AF_INET6):
        if family not in families:
            continue
        try:
            if family == AF_INET:
                hashinfo = facts.symbol("raw_v4_hashinfo")
            else:
                hashinfo = facts.symbol("raw_v6_hashinfo")
        except LookupError:  # IPv6 is a module, not loaded: no raw6 sockets
            continue
        try:  # raw_v6_hashinfo is in the ipv6 module's memory where that is a module (5.10)
            chains = raw_table_chains(facts, mem, hashinfo)
        except FaultError as e:
            tolerate(errors, "tables", e)
            continue
        _walk(decoder, chains, family, walked, errors, out)
    if len(inums) > 1:
        rank = {inum: i for i, inum in enumerate(inums.values())}
        out.sort(key=lambda s: rank[s.netns])
    return out


def _walk(decoder: FullSockDecoder, chains: Chains, family: int, walked: Walked, errors: WalkErrors | None,
          out: list[Socket]) -> None:
    """Decode a table's sockets of the listed namespaces into ``out``; count what fails."""
    size, least = max(decoder.L.size, chains.link + 8), max(chains.link + 8, decoder.L.common.size)
    for first in chains.heads:
        for addr, buf in chain_entries(decoder.mem, first, chains, size, least, errors, None, walked):
            try:
                s = _decode(decoder, addr, buf, family)
            except FaultError as e:
                tolerate(errors, "sockets", e)
                continue
            if s is not None:
                out.append(s)
