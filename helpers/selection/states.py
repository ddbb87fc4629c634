"""Which sockets to show: ss's protocol, family and state sets (misc/ss.c)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple, cast

from drgn_ss.selection.errors import AF_UNSPEC, SelectionError, printable
from drgn_ss.selection.tables import inet_families, socket_tables
from drgn_ss.sockets.record import (
    AF_INET,
    AF_INET6,
    TCP_CLOSE,
    TCP_LISTEN,
    TCP_SYN_RECV,
    TCP_SYN_SENT,
    TCP_TIME_WAIT,
    Socket,
)

if TYPE_CHECKING:
    from drgn_ss.selection.filter import Filter

__all__ = [
    "SS_ALL", "SS_CONN", "SS_LISTENING", "SS_MAX", "STATE_GROUPS", "STATE_NAMES_HELP", "STATE_NAMES_LONG",
    "Selection", "build_selection", "scan_state",
]

SS_MAX = 12
SS_ALL = (1 << SS_MAX) - 1
_PACKET = {"p_raw", "p_dgr"}
_UNFILTERED = ("raw", "sctp")
#: ss's default: every connected state.
SS_CONN = SS_ALL & ~((1 << TCP_LISTEN) | (1 << TCP_CLOSE) | (1 << TCP_TIME_WAIT) | (1 << TCP_SYN_RECV))
#: -l: listening TCP and unconnected UDP.
SS_LISTENING = (1 << TCP_LISTEN) | (1 << TCP_CLOSE)

#: ss's state names for ``state``/``exclude``, index = state number.
STATE_NAMES_LONG = (
    "UNKNOWN", "established", "syn-sent", "syn-recv", "fin-wait-1", "fin-wait-2", "time-wait",
    "unconnected", "close-wait", "last-ack", "listening", "closing",
)

#: Groups and aliases ss accepts, checked before the names above.
STATE_GROUPS = {
    "close": 1 << TCP_CLOSE,
    "closed": 1 << TCP_CLOSE,
    "syn-rcv": 1 << TCP_SYN_RECV,
    "all": SS_ALL,
    "connected": SS_ALL & ~((1 << TCP_CLOSE) | (1 << TCP_LISTEN)),
    "synchronized": SS_ALL & ~((1 << TCP_CLOSE) | (1 << TCP_LISTEN) | (1 << TCP_SYN_SENT)),
    "bucket": (1 << TCP_SYN_RECV) | (1 << TCP_TIME_WAIT),
    "big": SS_ALL & ~((1 << TCP_SYN_RECV) | (1 << TCP_TIME_WAIT)),
}


#: What a wrong state name is told: ss's names and groups (ss --help's STATE-FILTER).
STATE_NAMES_HELP = "states: {}; groups: {}".format(
    ", ".join({"unconnected": "unconnected (or closed)"}.get(n, n) for n in STATE_NAMES_LONG[1:]),
    ", ".join(g for g in STATE_GROUPS if g not in ("close", "closed", "syn-rcv")))


def scan_state(name: str) -> int:
    """The state bits a ``state``/``exclude`` argument names (case-insensitive, as ss)."""
    lower = name.lower()
    if lower in STATE_GROUPS:
        return STATE_GROUPS[lower]
    for i, long_name in enumerate(STATE_NAMES_LONG):
        if lower == long_name.lower():
            return 1 << i
    raise SelectionError(f"wrong state name: {printable(name)} ({STATE_NAMES_HELP})")


class Selection(NamedTuple):
    """The sockets a listing shows."""

    #: ss's netids of the socket tables listed (:data:`~drgn_ss.selection.tables.TABLES`).
    protos: tuple[str, ...] = ("udp", "tcp")
    #: The address families listed; of AF_INET and AF_INET6, those inet tables list
    #: (:func:`~drgn_ss.selection.tables.inet_families`).
    families: tuple[int, ...] = (AF_INET, AF_INET6)
    states: int = SS_CONN
    #: ss's filter expression (``sport = :22 or dst 10.0.0.0/8``...), if one was given.
    expr: Filter | None = None
    #: Whether no option named a table or family (ss's do_default): ``-s`` alone is a summary.
    default: bool = True

    def select(self, socks: Iterable[Socket],
               ifname: Callable[[int, int], str] | None = None) -> list[Socket]:
        """
        The sockets :meth:`matches`, in order; one comprehension, with no call per socket
        but the filter expression's.

        :param ifname: (netns inode, ifindex) -> interface name, for a ``dev`` condition
        """
        protos, families, states = set(self.protos), self.families, self.states
        if protos & _PACKET:  # packet_show() lists both types if either table is asked for
            protos |= _PACKET
        if protos & {"v_str", "v_dgr"}:  # vsock_type_skip() never skips SEQPACKET sockets
            protos.add("v_seq")
        rows = getattr(socks, "select", None)  # a drgn_ss._fast.SockTable: TCP and UDP rows
        if rows is not None:
            out = rows(protos, tuple(families), states)
            if self.expr is not None:
                self.expr.ifname = ifname
                out = list(filter(self.expr.matches, out))
            return cast(list[Socket], out)
        # raw_diag lists raw sockets in every state; sctp_diag's passes are all its states do
        socks = socks if isinstance(socks, list) else list(socks)
        seen_states = set(map(operator.itemgetter(2), socks))
        if (protos.issuperset(map(operator.itemgetter(0), socks))
                and set(families).issuperset(map(operator.itemgetter(1), socks))
                and all(states >> state & 1 for state in seen_states)):
            out = socks  # all of them (-a): no socket to drop, no need to look at each
        else:
            out = [s for s in socks
                   if s[0] in protos and s[1] in families and (states >> s[2] & 1 or s[0] in _UNFILTERED)]
        if self.expr is not None:
            self.expr.ifname = ifname
            out = list(filter(self.expr.matches, out))
        return out

    @property
    def single_proto(self) -> bool:
        return len(self.protos) == 1

    @property
    def single_state(self) -> bool:
        return self.states & (self.states - 1) == 0


def build_selection(options: Sequence[tuple[str, str]], state_flag: int,
                    state_args: list[tuple[str, str]], expression: Sequence[str] = ()) -> Selection:
    """
    Combine options as ss does: ``options`` name tables and families in the order given
    (see :func:`~drgn_ss.selection.tables.socket_tables`); ``state_flag`` is SS_ALL (-a),
    SS_LISTENING (-l) or 0; ``state_args`` are ("state"|"exclude", NAME) pairs in order;
    ``expression`` the words of a filter expression (:mod:`drgn_ss.selection.filter`).

    :raises FilterError: a bad expression (a SelectionError)
    :raises SelectionError: a bad state, family or table name
    """
    chosen = socket_tables(options)
    states = state_flag
    saw_states = False
    for verb, name in state_args:
        if verb == "state":
            if not saw_states:
                states = 0
            states |= scan_state(name)
        else:
            if not saw_states:
                states = SS_ALL
            states &= ~scan_state(name)
        saw_states = True
    if not states and (chosen.default or chosen.query):
        states = SS_CONN
    if not states:  # filter_states_set(): the states the options implied
        states = chosen.states
    if not states & SS_ALL:
        raise SelectionError("no socket states to show with such filter.")
    families, preferred = set(chosen.families), chosen.preferred
    expr = None
    if expression:  # the parser and what it imports (dataclasses: ~10 ms), only with a filter
        from drgn_ss.selection.filter import parse_filter

        inet_protos = tuple(p for p in chosen.tables if p in ("tcp", "udp", "dccp", "sctp")) or ("tcp", "udp")
        expr = parse_filter(expression, preferred, inet_protos)
    if expr is not None and expr.family != AF_UNSPEC:
        # An address of a family (inet:, unix:, or any under -x...): parse_hostcond() makes it
        # the only family listed.
        families, preferred = {expr.family}, expr.family
    listed = tuple(af for af in sorted(families) if af not in (AF_INET, AF_INET6))
    listed += inet_families(tuple(families), preferred)
    return Selection(chosen.tables, listed, states, expr, chosen.default)
