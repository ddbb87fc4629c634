"""An independent reading of a kernel's sockets and their owners, for the tests to check drgn-ss's.

It is written on drgn's own helpers and drgn Objects, with none of drgn_ss's readers, and
reaches sockets by other routes than drgn-ss does: full sockets through the open files of
every process (found through the pid table, not the task list), TIME-WAIT and SYN-RECV
minisocks and orphans through the established table. It reads only what the tests compare.
"""

from __future__ import annotations

import socket
import stat
from typing import NamedTuple

from drgn import FaultError, Object, Program, cast
from drgn.helpers.linux.fs import for_each_file
from drgn.helpers.linux.net import SOCK_INODE, sk_nulls_for_each
from drgn.helpers.linux.pid import for_each_task
from drgn_ss.kernel.damage import WalkErrors

# include/net/tcp_states.h
TCP_SYN_RECV, TCP_TIME_WAIT, TCP_NEW_SYN_RECV = 3, 6, 12
#: (sk_protocol, sk_type) of the sockets in the TCP and UDP tables.
PROTOCOLS = {(socket.IPPROTO_TCP, socket.SOCK_STREAM): "tcp", (socket.IPPROTO_UDP, socket.SOCK_DGRAM): "udp"}


class SocketFile(NamedTuple):
    """An open socket file: who holds it, and its ``struct socket *``."""

    comm: str
    pid: int
    fd: int
    ino: int
    sock: Object


#: What :func:`sockets` gives of each socket: (proto, family, state, local address, local
#: port, peer address, peer port, inode number); addresses as in Socket, state as ss's.
Socket = tuple[str, int, int, bytes, int, bytes, int, int]


def socket_files(prog: Program, errors: WalkErrors) -> list[SocketFile]:
    """The socket files every process holds; a process that cannot be read is counted as a task."""
    out = []
    try:
        for task in for_each_task(prog):
            try:
                if task.pid.value_() != task.tgid.value_():
                    continue  # a thread: it shares its leader's files
                pid = task.tgid.value_()
                comm = task.comm.string_().decode(errors="surrogateescape")
                mine = []
                for fd, file in for_each_file(task):
                    if not file:
                        continue
                    inode = file.f_inode.read_()
                    if stat.S_ISSOCK(inode.i_mode.value_()):
                        sock = cast("struct socket *", file.private_data)
                        mine.append(SocketFile(comm, pid, fd, inode.i_ino.value_(), sock))
                out += mine
            except FaultError as e:
                errors.count("tasks", e)
    except FaultError as e:
        errors.count("tasks", e)
    return out


def owners(prog: Program, errors: WalkErrors) -> dict[int, list[tuple[str, int, int]]]:
    """Each socket inode's holders, (comm, pid, fd), in ss's order: highest pid, then fd, first."""
    out: dict[int, list[tuple[str, int, int]]] = {}
    for f in socket_files(prog, errors):
        out.setdefault(f.ino, []).append((f.comm, f.pid, f.fd))
    for holders in out.values():
        holders.sort(key=lambda o: (o[1], o[2]), reverse=True)
    return out


def _address(common: Object, family: int, v4: str, v6: str) -> bytes:
    if family == socket.AF_INET6:
        return bytes(common.member_(v6).in6_u.u6_addr8.value_())
    return common.member_(v4).value_().to_bytes(4, "little")


def _socket(sk: Object, proto: str, ino: int | None) -> Socket:
    common = sk.__sk_common
    family = common.skc_family.value_()
    state = common.skc_state.value_()
    if state == TCP_TIME_WAIT:
        state = cast("struct inet_timewait_sock *", sk).tw_substate.value_()
        ino = 0
    elif state == TCP_NEW_SYN_RECV:
        state, ino = TCP_SYN_RECV, 0
    elif ino is None:
        sock = sk.sk_socket.read_()
        ino = SOCK_INODE(sock).i_ino.value_() if sock else 0
    return (proto, family, state, _address(common, family, "skc_rcv_saddr", "skc_v6_rcv_saddr"),
            common.skc_num.value_(), _address(common, family, "skc_daddr", "skc_v6_daddr"),
            socket.ntohs(common.skc_dport.value_()), ino)


def sockets(prog: Program, net: Object, errors: WalkErrors) -> list[Socket]:
    """
    The TCP and UDP sockets of a network namespace that ss lists, sorted: those that
    processes hold and the kernel has hashed (``sk_hashed()``), and every socket of the
    established table (the global ``tcp_hashinfo``: ``net`` must not have an ehash of its
    own). A chain that cannot be followed is counted as a bucket.

    :param net: ``struct net *``
    """
    found: dict[int, Socket] = {}
    for f in socket_files(prog, errors):
        sk = f.sock.sk.read_()
        if not sk:
            continue
        common = sk.__sk_common
        proto = PROTOCOLS.get((sk.sk_protocol.value_(), sk.sk_type.value_()))
        if (proto is None or common.skc_family.value_() not in (socket.AF_INET, socket.AF_INET6)
                or common.skc_net.net.value_() != net.value_() or not common.skc_node.pprev.value_()):
            continue
        found[sk.value_()] = _socket(sk, proto, f.ino)
    hashinfo = prog["tcp_hashinfo"]
    for i in range(hashinfo.ehash_mask.value_() + 1):
        try:
            for sk in sk_nulls_for_each(hashinfo.ehash[i].chain.address_of_()):
                if sk.__sk_common.skc_net.net.value_() == net.value_() and sk.value_() not in found:
                    found[sk.value_()] = _socket(sk, "tcp", None)
        except FaultError as e:
            errors.count("buckets", e)
    return sorted(found.values())
