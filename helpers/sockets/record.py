"""A socket of any family as one immutable record (:class:`Socket`), with the values its
family's ``*_diag`` module reports.

A record is plain data: it can be filtered, rendered, compared and serialised without a
kernel. Every family fills the fields all families share (ss's netid, state, queues, the
local and peer endpoints, inode, uid, cookie, network namespace, the kernel addresses that
owners are found by) and puts what only it has in ``extra``, so that selection, output,
owners and ``--all-netns`` take a new family without a change. A family is one module of
:mod:`drgn_ss.sockets` that walks its tables and makes these records: TCP and UDP are
:mod:`drgn_ss.sockets.inet` (:func:`~drgn_ss.sockets.inet.inet_sockets`), whose values
follow inet_diag (tcp_diag.c, udp_diag.c, inet_diag.c) so that they match what ss prints.
"""

from __future__ import annotations

import _socket as socket  # the C module: "socket" adds 2.5 ms of start-up (enums, selectors)
from typing import NamedTuple

__all__ = [
    "AF_INET", "AF_INET6", "ICSK_TIME_LOSS_PROBE", "ICSK_TIME_PROBE0", "ICSK_TIME_REO_TIMEOUT",
    "ICSK_TIME_RETRANS", "Socket", "TCP_CLOSE", "TCP_CLOSE_WAIT", "TCP_CLOSING", "TCP_ESTABLISHED",
    "TCP_FIN_WAIT1", "TCP_FIN_WAIT2", "TCP_LAST_ACK", "TCP_LISTEN", "TCP_NEW_SYN_RECV", "TCP_SYN_RECV",
    "TCP_SYN_SENT", "TCP_TIME_WAIT", "jiffies_delta",
]

# include/net/tcp_states.h; ss numbers its states the same way.
TCP_ESTABLISHED = 1
TCP_SYN_SENT = 2
TCP_SYN_RECV = 3
TCP_FIN_WAIT1 = 4
TCP_FIN_WAIT2 = 5
TCP_TIME_WAIT = 6
TCP_CLOSE = 7
TCP_CLOSE_WAIT = 8
TCP_LAST_ACK = 9
TCP_LISTEN = 10
TCP_CLOSING = 11
TCP_NEW_SYN_RECV = 12

AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6


class Socket(NamedTuple):
    """
    One socket as its family's ``*_diag`` module reports it (a named tuple: cheap to make by
    the 100,000; ``drgn_ss._fast`` makes them in C, SOCKET_FIELDS in _fast.h counts them).
    """

    #: ss's netid: "tcp" or "udp".
    proto: str
    #: AF_INET or AF_INET6.
    family: int
    #: TCP state number as reported: a TIME_WAIT minisock's substate, SYN_RECV for a request.
    state: int
    #: Local address, network byte order (4 or 16 bytes), and port.
    src: bytes
    sport: int
    #: Peer address and port.
    dst: bytes
    dport: int
    #: Interface index the socket is bound to (SO_BINDTODEVICE), 0 if none.
    ifindex: int
    #: IPV6_V6ONLY for IPv6 full sockets; None where inet_diag reports none.
    v6only: bool | None
    recv_q: int
    send_q: int
    #: Socket inode number (0: no struct socket, e.g. minisocks, orphans; or not asked for).
    ino: int
    uid: int
    #: The socket cookie (``skc_cookie``); 0 until something asked for it.
    cookie: int
    #: Inode number of the socket's network namespace.
    netns: int
    #: ``sk_shutdown`` bits for full sockets; None for minisocks.
    shutdown: int | None
    #: The cgroup v2 path for full sockets; None for minisocks (or not asked for).
    cgroup: str | None
    #: "full", "timewait" or "request".
    kind: str
    #: Kernel address of the ``struct sock`` (or minisock).
    address: int
    #: inet_diag's timer: 0 off, 1 on (retransmit), 2 keepalive, 3 timewait, 4 persist.
    timer: int = 0
    #: Milliseconds until the timer expires, and the retransmits or probes count.
    timer_ms: int = 0
    retrans: int = 0
    #: Address of the ``struct socket`` (``sk_socket``) of a full socket, else 0: what a
    #: file's ``private_data`` points to, so owners are found without inode numbers.
    socket: int = 0
    #: What only this socket's family has (None for TCP and UDP): a family's own record.
    extra: object = None


# include/net/inet_connection_sock.h
ICSK_TIME_RETRANS = 1
ICSK_TIME_PROBE0 = 3
ICSK_TIME_LOSS_PROBE = 5
ICSK_TIME_REO_TIMEOUT = 6


def jiffies_delta(expires: int, now: int) -> int:
    """expires - now as the kernel's signed long arithmetic on jiffies."""
    delta = (expires - now) & 0xFFFFFFFFFFFFFFFF
    return delta - (1 << 64) if delta >= 1 << 63 else delta
