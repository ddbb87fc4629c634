"""The fast decoder: a socket's bytes read in one or two ``prog.read()`` calls.

It produces the same :class:`~drgn_ss.inet.InetSock` records as the
Object-based :func:`~drgn_ss.inet.decode_sock`, which stays as the reference
the kernel matrix compares it with.
"""

from __future__ import annotations

import socket

from drgn import FaultError, Object, Program
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
from drgn_ss.layout import jiffies, kernel_hz, kernel_layout, prog_cached
from drgn_ss.raw import Field, Unpacker, field, offset, span


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

        # One struct.Struct call per kind of record instead of a call per field.
        self.common = Unpacker({
            "family": self.family, "state": self.state, "rcv_saddr": self.rcv_saddr,
            "daddr": self.daddr, "num": self.num, "dport": self.dport,
            "bound_dev_if": self.bound_dev_if, "ipv6only": self.ipv6only, "cookie": self.cookie,
            "net": self.net,
        })
        ino = {"sk_ino": self.sk_ino} if self.sk_ino else {"sk_socket": self.sk_socket}
        full_fields = {"uid": self.uid, "shutdown": self.shutdown, "cgroup": self.cgroup, **ino}
        self.tcp = Unpacker({**full_fields, "ack_backlog": self.ack_backlog,
                             "max_ack_backlog": self.max_ack_backlog, "rcv_nxt": self.rcv_nxt,
                             "copied_seq": self.copied_seq, "write_seq": self.write_seq,
                             "snd_una": self.snd_una, "pending": self.pending,
                             "retransmits": self.retransmits, "probes_out": self.probes_out,
                             "timeout": self.timeout, "keepalive_pprev": self.keepalive_pprev,
                             "keepalive_expires": self.keepalive_expires})
        self.udp = Unpacker({**full_fields, "rmem_alloc": self.rmem_alloc, "wmem_alloc": self.wmem_alloc,
                             "forward_deficit": self.forward_deficit})
        # How much of a full socket to read: everything the unpackers decode.
        self.tcp_end = max(self.common_end, self.tcp.size)
        self.udp_end = max(self.common_end, self.udp.size)


def sock_layout(prog: Program) -> SockLayout:
    return prog_cached(prog, "sock_layout", SockLayout)


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
        end = L.tcp_end if proto == "tcp" else L.udp_end
        try:
            # Most sockets are full ones: one read. A minisock is smaller, so this may read
            # past it into a page that is not there (a filtered dump): then read less.
            buf = self.prog.read(addr, end)
        except FaultError:
            buf = self.prog.read(addr, L.common_end)
        (family, raw_state, rcv_saddr, daddr, sport, dport_be, ifindex, ipv6only, cookie,
         net) = L.common.unpack(buf)
        if family == AF_INET6:
            o, n = L.v6_rcv_saddr
            src = bytes(buf[o : o + n])
            o, n = L.v6_daddr
            dst = bytes(buf[o : o + n])
        else:
            src = rcv_saddr.to_bytes(4, "little")
            dst = daddr.to_bytes(4, "little")
        dport = socket.ntohs(dport_be)
        netns = self.netns_inum(net)
        if raw_state == TCP_TIME_WAIT:
            if len(buf) < L.tw_end:
                buf = self.prog.read(addr, L.tw_end)
            return InetSock(proto, family, L.tw_substate.get(buf), src, sport, dst, dport, ifindex,
                            None, 0, 0, 0, 0, cookie, netns, None, None, "timewait", addr, 3,
                            self._ms(L.tw_expires.get(buf)), 0)
        if raw_state == TCP_NEW_SYN_RECV:
            if len(buf) < L.req_end:
                buf = self.prog.read(addr, L.req_end)
            return InetSock(proto, family, TCP_SYN_RECV, src, sport, dst, dport, ifindex, None, 0,
                            0, 0, 0, cookie, netns, None, None, "request", addr, 1,
                            self._ms(L.req_expires.get(buf)), L.req_retrans.get(buf))
        if len(buf) < end:
            buf = self.prog.read(addr, end)  # a full socket after all: fault here if it must
        timer = timer_ms = retrans = 0
        if proto == "tcp":
            (uid, shutdown, cgroup, ino_or_sock, ack_backlog, max_ack_backlog, rcv_nxt, copied_seq,
             write_seq, snd_una, pending, retransmits, probes_out, timeout, keepalive_pprev,
             keepalive_expires) = L.tcp.unpack(buf)
            if raw_state == TCP_LISTEN:
                recv_q, send_q = ack_backlog, max_ack_backlog
            else:
                diff = (rcv_nxt - copied_seq) & 0xFFFFFFFF
                recv_q = 0 if diff >= 1 << 31 else diff
                send_q = (write_seq - snd_una) & 0xFFFFFFFF
            if pending in (ICSK_TIME_RETRANS, ICSK_TIME_PROBE0, ICSK_TIME_LOSS_PROBE,
                           ICSK_TIME_REO_TIMEOUT):
                timer_ms = self._ms(timeout)
                if pending == ICSK_TIME_PROBE0:
                    timer, retrans = 4, probes_out
                else:
                    timer, retrans = 1, retransmits
            elif keepalive_pprev:
                timer, timer_ms, retrans = 2, self._ms(keepalive_expires), probes_out
        else:
            (uid, shutdown, cgroup, ino_or_sock, rmem_alloc, wmem_alloc,
             forward_deficit) = L.udp.unpack(buf)
            recv_q = rmem_alloc - forward_deficit
            send_q = wmem_alloc - 1
        if L.sk_ino is not None:
            ino = ino_or_sock
        else:
            ino = self.prog.read_u64(ino_or_sock + L.inode_from_socket) if ino_or_sock else 0
        v6only = (bool(ipv6only)
                  if family == AF_INET6 and raw_state in (TCP_LISTEN, TCP_CLOSE) else None)
        return InetSock(
            proto, family, raw_state, src, sport, dst, dport, ifindex, v6only, recv_q, send_q,
            ino, uid, cookie, netns, shutdown, self._cgroup(addr, cgroup), "full", addr, timer,
            timer_ms, retrans,
        )
