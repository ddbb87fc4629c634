"""Which socket tables and families a listing covers: ss's ``-t -u -w -x -0 -M -S --vsock
-4 -6 -f FAMILY -A QUERY`` as misc/ss.c's main() combines them (``filter_db_set()``,
``filter_af_set()``, ``filter_db_parse()``, ``filter_merge_defaults()``).

ss keeps a set of socket tables ("dbs", one per netid: tcp, u_str, p_raw, nl...), a set of
address families and one state mask for all of them; each option adds to them in the order
given, and what one names implies the other (``-x`` names AF_UNIX, which brings in the unix
tables; ``-t`` names TCP's table, which brings in AF_INET and AF_INET6). Without any of them
every table is listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from drgn_ss.selection.errors import SelectionError, printable

__all__ = [
    "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET", "AF_TIPC", "AF_UNIX", "AF_UNSPEC", "AF_VSOCK",
    "AF_XDP", "FAMILY_NAMES", "QUERY_NAMES", "SHOW_ORDER", "TABLES", "Tables", "inet_families",
    "socket_tables",
]

# include/linux/socket.h
AF_UNSPEC, AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET = 0, 1, 2, 10, 16, 17
AF_TIPC, AF_VSOCK, AF_XDP = 30, 40, 44

#: ss's socket tables (its enum of dbs, in that order), each by the netid ss prints for its
#: sockets.
TABLES = ("tcp", "mptcp", "dccp", "udp", "raw", "u_dgr", "u_str", "u_seq", "p_dgr", "p_raw", "nl",
          "sctp", "v_str", "v_dgr", "tipc", "xdp")
_INET = (AF_INET, AF_INET6)
# ss's states, as in selection.states (which imports this module): ESTABLISHED 1, CLOSE 7.
_ESTAB, _CLOSE = 1 << 1, 1 << 7
_SS_CONN = ((1 << 12) - 1) & ~((1 << 10) | (1 << 7) | (1 << 6) | (1 << 3))
_TIPC_CONN = _ESTAB | (1 << 10) | _CLOSE

#: default_dbs[]: each table's families, and the states naming it adds.
_TABLE_DEFAULTS: dict[str, tuple[tuple[int, ...], int]] = {
    "tcp": (_INET, _SS_CONN), "mptcp": (_INET, _SS_CONN), "dccp": (_INET, _SS_CONN),
    "udp": (_INET, _ESTAB), "raw": (_INET, _ESTAB),
    "u_dgr": ((AF_UNIX,), _CLOSE), "u_str": ((AF_UNIX,), _SS_CONN), "u_seq": ((AF_UNIX,), _SS_CONN),
    "p_dgr": ((AF_PACKET,), _CLOSE), "p_raw": ((AF_PACKET,), _CLOSE), "nl": ((AF_NETLINK,), _CLOSE),
    "sctp": (_INET, _SS_CONN), "v_str": ((AF_VSOCK,), _SS_CONN), "v_dgr": ((AF_VSOCK,), _SS_CONN),
    "tipc": ((AF_TIPC,), _TIPC_CONN), "xdp": ((AF_XDP,), _CLOSE),
}
_INET_TABLES = ("tcp", "mptcp", "udp", "dccp", "sctp", "raw")
#: default_afs[]: each family's tables, and the states naming it adds.
_FAMILY_DEFAULTS: dict[int, tuple[tuple[str, ...], int]] = {
    AF_INET: (_INET_TABLES, _SS_CONN), AF_INET6: (_INET_TABLES, _SS_CONN),
    AF_UNIX: (("u_dgr", "u_str", "u_seq"), _SS_CONN), AF_PACKET: (("p_dgr", "p_raw"), _CLOSE),
    AF_NETLINK: (("nl",), _CLOSE), AF_VSOCK: (("v_str", "v_dgr"), _SS_CONN),
    AF_TIPC: (("tipc",), _TIPC_CONN), AF_XDP: (("xdp",), _CLOSE),
}

#: -A/--query's names (filter_db_parse()), a leading "!" taking them away.
QUERY_NAMES: dict[str, tuple[str, ...]] = {
    "all": ("udp", "dccp", "tcp", "mptcp", "raw", "u_str", "u_dgr", "u_seq", "p_raw", "p_dgr", "nl",
            "sctp", "v_str", "v_dgr", "xdp"),
    "inet": ("udp", "dccp", "tcp", "mptcp", "sctp", "raw"),
    "udp": ("udp",), "dccp": ("dccp",), "tcp": ("tcp",), "mptcp": ("mptcp",), "sctp": ("sctp",),
    "raw": ("raw",), "unix": ("u_str", "u_dgr", "u_seq"),
    "unix_stream": ("u_str",), "u_str": ("u_str",), "unix_dgram": ("u_dgr",), "u_dgr": ("u_dgr",),
    "unix_seqpacket": ("u_seq",), "u_seq": ("u_seq",),
    "packet": ("p_raw", "p_dgr"), "packet_raw": ("p_raw",), "p_raw": ("p_raw",),
    "packet_dgram": ("p_dgr",), "p_dgr": ("p_dgr",), "netlink": ("nl",), "tipc": ("tipc",),
    "vsock": ("v_str", "v_dgr"), "vsock_stream": ("v_str",), "v_str": ("v_str",),
    "vsock_dgram": ("v_dgr",), "v_dgr": ("v_dgr",), "xdp": ("xdp",),
}

#: -f/--family's names.
FAMILY_NAMES = {"inet": AF_INET, "inet6": AF_INET6, "link": AF_PACKET, "unix": AF_UNIX,
                "netlink": AF_NETLINK, "tipc": AF_TIPC, "vsock": AF_VSOCK, "xdp": AF_XDP}

#: The order ss's main() lists the tables in.
SHOW_ORDER = ("nl", "p_raw", "p_dgr", "u_str", "u_dgr", "u_seq", "raw", "udp", "tcp", "dccp", "sctp",
              "v_str", "v_dgr", "tipc", "xdp", "mptcp")


class Tables(NamedTuple):
    """The socket tables and families a listing covers, and the states their options imply."""

    #: Netids of the tables, in :data:`TABLES` order.
    tables: tuple[str, ...]
    families: tuple[int, ...]
    #: The states the options imply (0: none was implied; -a, -l and ``state`` decide).
    states: int
    #: ss's preferred family: the last one an option named (AF_UNSPEC if none).
    preferred: int
    #: Whether no option named a table or family: every table is listed (ss's do_default).
    default: bool
    #: Whether -A was given: like the default, it makes ss's state filter SS_CONN unless
    #: -a, -l or ``state`` say otherwise (rather than the states its tables imply).
    query: bool


def socket_tables(options: Sequence[tuple[str, str]]) -> Tables:
    """
    The tables and families that ss's options select, in the order given: each is
    ("table", NETID) for -t -u -w -S -M -d, ("family", NAME) for -4 -6 -x -0 --vsock and
    -f NAME, ("query", NAMES) for -A NAMES (comma-separated, each maybe "!"-prefixed).

    :raises SelectionError: for a family or query name ss does not know, in ss's words
    """
    tables: set[str] = set()
    families: set[int] = set()
    states = 0
    preferred = AF_UNSPEC
    default = True
    saw_query = False
    for kind, value in options:
        default = False
        if kind == "table":
            tables.add(value)
            states |= _TABLE_DEFAULTS[value][1]
        elif kind == "family":
            if value not in FAMILY_NAMES:
                raise SelectionError(f'"{printable(value)}" is invalid family')
            af = FAMILY_NAMES[value]
            states |= _FAMILY_DEFAULTS[af][1]
            families.add(af)
            preferred = af
        elif kind == "query":
            if not saw_query:
                tables.clear()
                saw_query = True
            for name in value.split(","):
                enable = not name.startswith("!")
                names = QUERY_NAMES.get(name if enable else name[1:])
                if names is None:
                    raise SelectionError(f'"{printable(name)}" is illegal socket table id')
                for table in names:
                    if enable:
                        tables.add(table)
                        states |= _TABLE_DEFAULTS[table][1]
                    else:
                        tables.discard(table)
        else:
            raise ValueError(f"unknown kind of option {kind!r}")
    if default:
        tables.update(QUERY_NAMES["all"])
    # filter_merge_defaults(): a table brings its families, a family its tables, unless
    # one of them was named already.
    for table in list(tables):
        table_families = _TABLE_DEFAULTS[table][0]
        if not families & set(table_families):
            families.update(table_families)
    for af in list(families):
        family_tables = _FAMILY_DEFAULTS[af][0]
        if not tables & set(family_tables):
            tables.update(family_tables)
    return Tables(tuple(t for t in TABLES if t in tables), tuple(sorted(families)), states,
                  preferred, default, saw_query)


def inet_families(families: Sequence[int], preferred: int) -> tuple[int, ...]:
    """
    The IP families an inet table lists (inet_show_netlink()): only IPv4 if the preferred
    family is AF_INET, only IPv6 if AF_INET6, else both; of those, the ones selected.
    """
    asked = (AF_INET,) if preferred == AF_INET else (AF_INET6,) if preferred == AF_INET6 else _INET
    return tuple(af for af in asked if af in families)
