"""The fast decoder: a socket's bytes read in one or two ``prog.read()`` calls.

It produces the same :class:`~drgn_ss.inet.InetSock` records as the
Object-based :func:`~drgn_ss.inet.decode_sock`, which stays as the reference
the kernel matrix compares it with.
"""

from __future__ import annotations

import socket

from drgn import Object, Program
from drgn_ss.inet import (
    AF_INET6,
    ICSK_TIME_LOSS_PROBE,
    ICSK_TIME_PROBE0,
    ICSK_TIME_REO_TIMEOUT,
    ICSK_TIME_RETRANS,
    TCP_CLOSE,
    TCP_LISTEN,
    TCP_NEW_SYN_RECV,
    TCP_SYN_RECV,
    TCP_TIME_WAIT,
    InetSock,
    _cgroup_path,
    _jdelta,
)
from drgn_ss.layout import jiffies, kernel_hz, kernel_layout
from drgn_ss.raw import Field, field, offset, span


class SockLayout:
    """Where everything :class:`RawDecoder` reads lives, resolved once per kernel."""

    def __init__(self, prog: Program) -> None:
        layout = kernel_layout(prog)

        def f(type_name: str, path: str) -> Field:
            return field(prog, type_name, path)

        S = "struct sock"
        c = "__sk_common."
        self.family = f(S, c + "skc_family")
        self.state = f(S, c + "skc_state")
        self.rcv_saddr = f(S, c + "skc_rcv_saddr")
        self.daddr = f(S, c + "skc_daddr")
        self.v6_rcv_saddr = span(prog, S, c + "skc_v6_rcv_saddr")
        self.v6_daddr = span(prog, S, c + "skc_v6_daddr")
        self.num = f(S, c + "skc_num")
        self.dport = f(S, c + "skc_dport")
        self.bound_dev_if = f(S, c + "skc_bound_dev_if")
        self.ipv6only = f(S, c + "skc_ipv6only")
        self.cookie = f(S, c + "skc_cookie.counter")
        self.net = f(S, c + "skc_net.net")
        self.common_end = prog.type("struct sock_common").size

        self.tw_substate = f("struct inet_timewait_sock", "tw_substate")
        self.tw_expires = f("struct inet_timewait_sock", "tw_timer.expires")
        self.tw_end = max(self.common_end, self.tw_substate.end, self.tw_expires.end)
        self.req_retrans = f("struct request_sock", "num_retrans")
        self.req_expires = f("struct request_sock", "rsk_timer.expires")
        self.req_end = max(self.common_end, self.req_retrans.end, self.req_expires.end)

        self.ack_backlog = f(S, "sk_ack_backlog")
        self.max_ack_backlog = f(S, "sk_max_ack_backlog")
        self.uid = f(S, "sk_uid.val")
        self.shutdown = f(S, "sk_shutdown")
        self.sk_ino = f(S, "sk_ino") if layout.sk_ino else None
        self.sk_socket = f(S, "sk_socket")
        self.cgroup = f(S, "sk_cgrp_data.cgroup" if layout.sock_cgroup_pointer else "sk_cgrp_data.val")
        self.rmem_alloc = f(S, "sk_backlog.rmem_alloc.counter")
        self.wmem_alloc = f(S, "sk_wmem_alloc.refs.counter")
        # SOCK_INODE(sock)->i_ino, from the struct socket pointer.
        self.inode_from_socket = (offset(prog, "struct socket_alloc", "vfs_inode")
                                  - offset(prog, "struct socket_alloc", "socket")
                                  + offset(prog, "struct inode", "i_ino"))
        self.ns_inum = offset(prog, "struct net", "ns.inum")

        T = "struct tcp_sock"
        self.rcv_nxt = f(T, "rcv_nxt")
        self.copied_seq = f(T, "copied_seq")
        self.write_seq = f(T, "write_seq")
        self.snd_una = f(T, "snd_una")
        I = "struct inet_connection_sock"  # noqa: E741
        self.pending = f(I, "icsk_pending")
        self.retransmits = f(I, "icsk_retransmits")
        self.probes_out = f(I, "icsk_probes_out")
        if layout.icsk_timeout:
            self.timeout = f(I, "icsk_timeout")
        else:
            self.timeout = f(S, "tcp_retransmit_timer.expires")
        keepalive = "icsk_keepalive_timer" if layout.icsk_keepalive_timer else "icsk_inet.sk.sk_timer"
        self.keepalive_pprev = f(I, keepalive + ".entry.pprev")
        self.keepalive_expires = f(I, keepalive + ".expires")
        self.forward_deficit = f("struct udp_sock", "forward_deficit")

        full = [self.ack_backlog, self.max_ack_backlog, self.uid, self.shutdown, self.sk_socket,
                self.cgroup, self.rmem_alloc, self.wmem_alloc] + ([self.sk_ino] if self.sk_ino else [])
        self.full_end = max(self.common_end, *(x.end for x in full))
        tcp = [self.rcv_nxt, self.copied_seq, self.write_seq, self.snd_una, self.pending,
               self.retransmits, self.probes_out, self.timeout, self.keepalive_pprev,
               self.keepalive_expires]
        self.tcp_end = max(self.full_end, *(x.end for x in tcp))
        self.udp_end = max(self.full_end, self.forward_deficit.end)


def sock_layout(prog: Program) -> SockLayout:
    try:
        cached: SockLayout = prog.cache["drgn_ss.sock_layout"]
    except KeyError:
        cached = prog.cache["drgn_ss.sock_layout"] = SockLayout(prog)
    return cached


class RawDecoder:
    """Decode sockets from raw reads; one per listing (it remembers jiffies and caches)."""

    def __init__(self, prog: Program) -> None:
        self.prog = prog
        self.L = sock_layout(prog)
        self.now = jiffies(prog)
        self.hz = kernel_hz(prog)
        self._netns: dict[int, int] = {}
        self._cgroups: dict[int, str] = {}
        self._cgroup_paths: dict[int, str] = {}

    def _ms(self, expires: int) -> int:
        return max(_jdelta(expires, self.now), 0) * 1000 // self.hz

    def netns_inum(self, net: int) -> int:
        if net not in self._netns:
            self._netns[net] = self.prog.read_u32(net + self.L.ns_inum)
        return self._netns[net]

    def _cgroup(self, addr: int, raw: int) -> str:
        if raw not in self._cgroups:
            sk = Object(self.prog, "struct sock *", addr)
            self._cgroups[raw] = _cgroup_path(sk, self._cgroup_paths)
        return self._cgroups[raw]

    def decode(self, addr: int, proto: str) -> InetSock:
        """Decode the socket (or minisock) at ``addr``, found in a TCP or UDP table."""
        L = self.L
        read = self.prog.read
        buf = read(addr, L.common_end)
        family = L.family.get(buf)
        raw_state = L.state.get(buf)
        if family == AF_INET6:
            o, n = L.v6_rcv_saddr
            src = bytes(buf[o : o + n])
            o, n = L.v6_daddr
            dst = bytes(buf[o : o + n])
        else:
            src = L.rcv_saddr.get(buf).to_bytes(4, "little")
            dst = L.daddr.get(buf).to_bytes(4, "little")
        sport = L.num.get(buf)
        dport = socket.ntohs(L.dport.get(buf))
        ifindex = L.bound_dev_if.get(buf)
        cookie = L.cookie.get(buf)
        netns = self.netns_inum(L.net.get(buf))
        if raw_state == TCP_TIME_WAIT:
            buf = read(addr, L.tw_end)
            return InetSock(proto, family, L.tw_substate.get(buf), src, sport, dst, dport, ifindex,
                            None, 0, 0, 0, 0, cookie, netns, None, None, "timewait", addr, 3,
                            self._ms(L.tw_expires.get(buf)), 0)
        if raw_state == TCP_NEW_SYN_RECV:
            buf = read(addr, L.req_end)
            return InetSock(proto, family, TCP_SYN_RECV, src, sport, dst, dport, ifindex, None, 0,
                            0, 0, 0, cookie, netns, None, None, "request", addr, 1,
                            self._ms(L.req_expires.get(buf)), L.req_retrans.get(buf))
        buf = read(addr, L.tcp_end if proto == "tcp" else L.udp_end)
        timer = timer_ms = retrans = 0
        if proto == "tcp":
            if raw_state == TCP_LISTEN:
                recv_q, send_q = L.ack_backlog.get(buf), L.max_ack_backlog.get(buf)
            else:
                diff = (L.rcv_nxt.get(buf) - L.copied_seq.get(buf)) & 0xFFFFFFFF
                recv_q = 0 if diff >= 1 << 31 else diff
                send_q = (L.write_seq.get(buf) - L.snd_una.get(buf)) & 0xFFFFFFFF
            pending = L.pending.get(buf)
            if pending in (ICSK_TIME_RETRANS, ICSK_TIME_PROBE0, ICSK_TIME_LOSS_PROBE,
                           ICSK_TIME_REO_TIMEOUT):
                timer_ms = self._ms(L.timeout.get(buf))
                if pending == ICSK_TIME_PROBE0:
                    timer, retrans = 4, L.probes_out.get(buf)
                else:
                    timer, retrans = 1, L.retransmits.get(buf)
            elif L.keepalive_pprev.get(buf):
                timer, timer_ms = 2, self._ms(L.keepalive_expires.get(buf))
                retrans = L.probes_out.get(buf)
        else:
            recv_q = L.rmem_alloc.get(buf) - L.forward_deficit.get(buf)
            send_q = L.wmem_alloc.get(buf) - 1
        if L.sk_ino is not None:
            ino = L.sk_ino.get(buf)
        else:
            sock = L.sk_socket.get(buf)
            ino = self.prog.read_u64(sock + L.inode_from_socket) if sock else 0
        v6only = (bool(L.ipv6only.get(buf))
                  if family == AF_INET6 and raw_state in (TCP_LISTEN, TCP_CLOSE) else None)
        return InetSock(
            proto, family, raw_state, src, sport, dst, dport, ifindex, v6only, recv_q, send_q,
            ino, L.uid.get(buf), cookie, netns, L.shutdown.get(buf),
            self._cgroup(addr, L.cgroup.get(buf)), "full", addr, timer, timer_ms, retrans,
        )
