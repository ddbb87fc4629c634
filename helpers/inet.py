"""Decode a TCP or UDP socket into one immutable record, with the values inet_diag reports.

A record is plain data: it can be filtered, rendered, compared and serialised
without a kernel. Values follow the kernel's inet_diag (tcp_diag.c, udp_diag.c,
inet_diag.c) so that they match what ss prints.
"""

from __future__ import annotations

import _socket as socket  # the C module: "socket" adds 2.5 ms of start-up (enums, selectors)
from collections.abc import Iterator
from typing import NamedTuple

from drgn import FaultError, Object, cast, container_of
from drgn_ss.layout import jiffies, jiffies_delta_to_msecs, kernel_layout
from drgn_ss.tables import (
    WalkErrors,
    net_tcp_hashinfo,
    net_udp_table,
    tcp_ehash_socks,
    tcp_listening_socks,
    tolerate,
    udp_socks,
)

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


class InetSock(NamedTuple):
    """One TCP or UDP socket as inet_diag reports it (a named tuple: cheap to make by the 100,000)."""

    #: "tcp" or "udp".
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


def _addr(common: Object, family: int, v4: str, v6: str) -> bytes:
    if family == AF_INET6:
        return bytes(common.member_(v6).in6_u.u6_addr8.value_())
    return int(common.member_(v4).value_()).to_bytes(4, "little")


def sock_ino(sk: Object) -> int:
    """
    Get the inode number of a full socket's ``struct socket``, as ``sock_i_ino()``.

    :param sk: ``struct sock *``
    """
    if kernel_layout(sk.prog_).sk_ino:
        return int(sk.sk_ino.value_())
    sock = sk.sk_socket.read_()
    if not sock:
        return 0
    return int(container_of(sock, "struct socket_alloc", "socket").vfs_inode.i_ino.value_())


def sock_cgroup(sk: Object) -> Object:
    """
    Get the cgroup v2 a full socket belongs to (``sock_cgroup_ptr()``).

    :param sk: ``struct sock *``
    :return: ``struct cgroup *``
    """
    prog = sk.prog_
    data = sk.sk_cgrp_data
    if kernel_layout(prog).sock_cgroup_pointer:
        return data.cgroup.read_()
    val = data.val.value_()
    if val & 3 or not val:
        return prog["cgrp_dfl_root"].cgrp.address_of_()
    return Object(prog, "struct cgroup *", val)


def _cgroup_path(sk: Object, cache: dict[int, str]) -> str:
    # Imported here: drgn.helpers.linux takes ~50 ms to import, which the fast path skips.
    from drgn.helpers.linux.cgroup import cgroup_path
    cgrp = sock_cgroup(sk)
    key = cgrp.value_()
    if key not in cache:
        cache[key] = cgroup_path(cgrp).decode(errors="surrogateescape") or "/"
    return cache[key]


def decode_sock(sk: Object, proto: str, cgroup_cache: dict[int, str] | None = None) -> InetSock:
    """
    Decode a socket found in a TCP or UDP table.

    :param sk: ``struct sock *`` (possibly a TIME_WAIT or NEW_SYN_RECV minisock)
    :param proto: "tcp" or "udp"
    """
    prog = sk.prog_
    common = sk.__sk_common
    family = int(common.skc_family.value_())
    raw_state = int(common.skc_state.value_())
    src = _addr(common, family, "skc_rcv_saddr", "skc_v6_rcv_saddr")
    dst = _addr(common, family, "skc_daddr", "skc_v6_daddr")
    sport = int(common.skc_num.value_())
    dport = socket.ntohs(int(common.skc_dport.value_()))
    ifindex = int(common.skc_bound_dev_if.value_())
    cookie = int(common.skc_cookie.counter.value_())
    netns = int(common.skc_net.net.ns.inum.value_())
    address = sk.value_()
    now = jiffies(prog)
    if raw_state in (TCP_TIME_WAIT, TCP_NEW_SYN_RECV):
        if raw_state == TCP_TIME_WAIT:
            tw = cast("struct inet_timewait_sock *", sk)
            state, kind, timer, retrans = int(tw.tw_substate.value_()), "timewait", 3, 0
            expires = int(tw.tw_timer.expires.value_())
        else:
            req = cast("struct request_sock *", sk)
            state, kind, timer = TCP_SYN_RECV, "request", 1
            retrans = int(req.num_retrans.value_())
            expires = int(req.rsk_timer.expires.value_())
        return InetSock(proto, family, state, src, sport, dst, dport, ifindex, None, 0, 0, 0, 0,
                        cookie, netns, None, None, kind, address, timer,
                        jiffies_delta_to_msecs(prog, _jdelta(expires, now)), retrans)

    timer = timer_ms = retrans = 0
    if proto == "tcp":
        timer, timer_ms, retrans = _tcp_timer(sk, now)
        if raw_state == TCP_LISTEN:
            recv_q = int(sk.sk_ack_backlog.value_())
            send_q = int(sk.sk_max_ack_backlog.value_())
        else:
            tp = cast("struct tcp_sock *", sk)
            recv_q = max((tp.rcv_nxt.value_() - tp.copied_seq.value_()) & 0xFFFFFFFF, 0)
            if recv_q >= 1 << 31:  # max_t(int, ...): a negative difference is 0
                recv_q = 0
            send_q = (tp.write_seq.value_() - tp.snd_una.value_()) & 0xFFFFFFFF
    else:
        up = cast("struct udp_sock *", sk)
        recv_q = int(sk.sk_backlog.rmem_alloc.counter.value_()) - int(up.forward_deficit.value_())
        send_q = int(sk.sk_wmem_alloc.refs.counter.value_()) - 1
    # inet_diag reports IPV6_V6ONLY for IPv6 sockets in LISTEN and CLOSE only.
    v6only = (bool(common.skc_ipv6only.value_())
              if family == AF_INET6 and raw_state in (TCP_LISTEN, TCP_CLOSE) else None)
    cgroup = _cgroup_path(sk, cgroup_cache if cgroup_cache is not None else {})
    return InetSock(
        proto, family, raw_state, src, sport, dst, dport, ifindex, v6only, recv_q, send_q,
        sock_ino(sk), int(sk.sk_uid.val.value_()), cookie, netns, int(sk.sk_shutdown.value_()),
        cgroup, "full", address, timer, timer_ms, retrans, int(sk.sk_socket.value_()),
    )


# include/net/inet_connection_sock.h
ICSK_TIME_RETRANS = 1
ICSK_TIME_PROBE0 = 3
ICSK_TIME_LOSS_PROBE = 5
ICSK_TIME_REO_TIMEOUT = 6


def _jdelta(expires: int, now: int) -> int:
    """expires - now as the kernel's signed long arithmetic on jiffies."""
    delta = (expires - now) & 0xFFFFFFFFFFFFFFFF
    return delta - (1 << 64) if delta >= 1 << 63 else delta


def _timer_pending(timer: Object) -> bool:
    return bool(timer.entry.pprev.value_())


def _tcp_timer(sk: Object, now: int) -> tuple[int, int, int]:
    """inet_diag's (timer, expires in ms, retransmits) for a full TCP socket."""
    prog = sk.prog_
    layout = kernel_layout(prog)
    icsk = cast("struct inet_connection_sock *", sk)
    pending = int(icsk.icsk_pending.value_())
    if pending in (ICSK_TIME_RETRANS, ICSK_TIME_PROBE0, ICSK_TIME_LOSS_PROBE, ICSK_TIME_REO_TIMEOUT):
        if layout.icsk_timeout:
            expires = int(icsk.icsk_timeout.value_())
        else:
            expires = int(sk.tcp_retransmit_timer.expires.value_())
        ms = jiffies_delta_to_msecs(prog, _jdelta(expires, now))
        if pending == ICSK_TIME_PROBE0:
            return 4, ms, int(icsk.icsk_probes_out.value_())
        return 1, ms, int(icsk.icsk_retransmits.value_())
    keepalive = icsk.icsk_keepalive_timer if layout.icsk_keepalive_timer else sk.sk_timer
    if _timer_pending(keepalive):
        ms = jiffies_delta_to_msecs(prog, _jdelta(int(keepalive.expires.value_()), now))
        return 2, ms, int(icsk.icsk_probes_out.value_())
    return 0, 0, 0


def _in_netns(sk: Object, net: Object) -> bool:
    return bool(sk.__sk_common.skc_net.net.value_() == net.value_())


def tcp_socks(net: Object, listening: bool = True, established: bool = True,
              errors: WalkErrors | None = None) -> Iterator[Object]:
    """
    Iterate over the TCP sockets of one network namespace, as inet_diag does for one
    family: listeners first, then the established table. Shared tables are filtered
    by each socket's namespace.

    :param net: ``struct net *``
    :return: Iterator of ``struct sock *`` objects.
    """
    hashinfo = net_tcp_hashinfo(net)
    if listening:
        yield from _filter_netns(tcp_listening_socks(hashinfo, errors), net, errors)
    if established:
        yield from _filter_netns(tcp_ehash_socks(hashinfo, errors), net, errors)


def _filter_netns(socks: Iterator[Object], net: Object, errors: WalkErrors | None) -> Iterator[Object]:
    for sk in socks:
        try:
            mine = _in_netns(sk, net)
        except FaultError as e:
            tolerate(errors, "sockets", e)
            continue
        if mine:
            yield sk


def udp_netns_socks(net: Object, errors: WalkErrors | None = None) -> Iterator[Object]:
    """
    Iterate over the UDP sockets of one network namespace.

    :param net: ``struct net *``
    :return: Iterator of ``struct sock *`` objects.
    """
    yield from _filter_netns(udp_socks(net_udp_table(net), errors), net, errors)


def inet_socks(net: Object, protos: tuple[str, ...] = ("udp", "tcp"),
               listening: bool = True, established: bool = True,
               errors: WalkErrors | None = None, method: str = "raw") -> Iterator[InetSock]:
    """
    Decode the TCP and UDP sockets of a network namespace in ss's order: UDP before
    TCP, and within each, IPv4 before IPv6, each in table order.

    :param net: ``struct net *``
    :param errors: where to count what cannot be read; None: raise FaultError instead.
    :param method: "raw" (bulk reads, :mod:`drgn_ss.decode`) or "object" (drgn Objects,
        the reference the tests compare "raw" with).
    """
    if method == "raw":
        from drgn_ss.decode import raw_inet_socks  # it builds on this module

        yield from raw_inet_socks(net.prog_, net.value_(), protos, listening, established, errors)
        return
    for proto in ("udp", "tcp"):
        if proto not in protos:
            continue
        decoded = _object_socks(net, proto, listening, established, errors)
        for family in (AF_INET, AF_INET6):
            yield from (s for s in decoded if s.family == family)


def _object_socks(net: Object, proto: str, listening: bool, established: bool,
                  errors: WalkErrors | None) -> list[InetSock]:
    cgroups: dict[int, str] = {}
    if proto == "udp":
        raw = list(udp_netns_socks(net, errors))
    else:
        raw = list(tcp_socks(net, listening, established, errors))
    decoded = []
    for sk in raw:
        try:
            decoded.append(decode_sock(sk, proto, cgroups))
        except FaultError as e:
            tolerate(errors, "sockets", e)
    return decoded
