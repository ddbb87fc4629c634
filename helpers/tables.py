"""Where the kernel keeps TCP sockets: the hash tables of ``struct inet_hashinfo``.

Layout differences between kernel versions are answered by the members that
exist, here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator

from drgn import Object
from drgn.helpers.linux.list import hlist_for_each_entry
from drgn.helpers.linux.list_nulls import hlist_nulls_for_each_entry


def _has_member(type_: object, name: str) -> bool:
    try:
        type_.member(name)  # type: ignore[attr-defined]
    except LookupError:
        return False
    return True


def net_tcp_hashinfo(net: Object) -> Object:
    """
    Get the TCP hash tables that a network namespace uses.

    :param net: ``struct net *``
    :return: ``struct inet_hashinfo *``
    """
    death_row = net.ipv4.tcp_death_row
    if _has_member(death_row.type_, "hashinfo"):
        return death_row.hashinfo
    return net.prog_["tcp_hashinfo"].address_of_()


def tcp_listening_socks(hashinfo: Object) -> Iterator[Object]:
    """
    Iterate over the listening sockets in the ``lhash2`` table (bound address and port).

    Before Linux 5.19 the chain is the bucket's ``hlist_head head`` linked through
    ``inet_connection_sock.icsk_listen_portaddr_node``; since, it is its
    ``hlist_nulls_head nulls_head`` linked through ``__sk_common.skc_nulls_node``.

    :param hashinfo: ``struct inet_hashinfo *``
    :return: Iterator of ``struct sock *`` objects.
    """
    # 5.10's bucket has a union of head and nulls_head, so the bucket type does not
    # tell; the link member of the socket does (removed in 5.19).
    portaddr_node = _has_member(
        hashinfo.prog_.type("struct inet_connection_sock"), "icsk_listen_portaddr_node"
    )
    for i in range(hashinfo.lhash2_mask.value_() + 1):
        bucket = hashinfo.lhash2[i]
        if not portaddr_node:
            yield from hlist_nulls_for_each_entry(
                "struct sock", bucket.nulls_head.address_of_(), "__sk_common.skc_nulls_node"
            )
        else:
            for icsk in hlist_for_each_entry(
                "struct inet_connection_sock",
                bucket.head.address_of_(),
                "icsk_listen_portaddr_node",
            ):
                yield icsk.icsk_inet.sk.address_of_()


def sock_num(sk: Object) -> int:
    """
    Get the local port of a socket, in host byte order.

    :param sk: ``struct sock *``
    """
    return int(sk.__sk_common.skc_num.value_())


__all__ = ["net_tcp_hashinfo", "sock_num", "tcp_listening_socks"]
