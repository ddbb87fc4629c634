"""Where the kernel keeps TCP and UDP sockets: the hash tables, walked in inet_diag's order.

Each walker yields ``struct sock *`` objects in the order the kernel's
inet_diag dump visits them, which is the order ss prints them in. Layout
differences come from :mod:`drgn_ss.layout`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from drgn import FaultError, Object, Program
from drgn.helpers.linux.list import hlist_for_each_entry
from drgn.helpers.linux.list_nulls import hlist_nulls_for_each_entry
from drgn_ss.layout import kernel_layout
from drgn_ss.raw import offset as raw_offset


@dataclass
class WalkErrors:
    """What a walk could not read (a freed or filtered page): counted, then reported once."""

    buckets: int = 0
    sockets: int = 0
    tasks: int = 0
    #: The first fault's message, as an example for the user.
    first: str = ""

    def __bool__(self) -> bool:
        return bool(self.buckets or self.sockets or self.tasks)

    def count(self, what: str, error: Exception) -> None:
        setattr(self, what, getattr(self, what) + 1)
        if not self.first:
            self.first = str(error)

    def describe(self) -> str:
        parts = [f"{n} {what}" for n, what in ((self.buckets, "hash chains"),
                                                (self.sockets, "sockets"),
                                                (self.tasks, "tasks")) if n]
        return ", ".join(parts) + (f" (first: {self.first})" if self.first else "")


def _chain(chain: Iterator[Object], errors: WalkErrors | None) -> Iterator[Object]:
    """Follow one hash chain (a lazy iterator); one that faults is abandoned and counted."""
    if errors is None:
        yield from chain
        return
    try:
        yield from chain
    except FaultError as e:
        errors.count("buckets", e)


def net_tcp_hashinfo(net: Object) -> Object:
    """
    Get the TCP hash tables a network namespace uses (its own ehash when
    ``tcp_child_ehash_entries`` was set when it was created, else the global one).

    :param net: ``struct net *``
    :return: ``struct inet_hashinfo *``
    """
    return net.ipv4.tcp_death_row.hashinfo


def net_udp_table(net: Object) -> Object:
    """
    Get the UDP table a network namespace uses: ``net->ipv4.udp_table`` since
    Linux 6.2, the global ``udp_table`` before.

    :param net: ``struct net *``
    :return: ``struct udp_table *``
    """
    if kernel_layout(net.prog_).udp_table_per_netns:
        return net.ipv4.udp_table
    return net.prog_["udp_table"].address_of_()


def tcp_lhash2_socks(hashinfo: Object, errors: WalkErrors | None = None) -> Iterator[Object]:
    """
    Iterate over the listening sockets in the ``lhash2`` table (by bound address and port).

    Before Linux 5.19 a chain is the bucket's ``hlist_head head`` linked through
    ``inet_connection_sock.icsk_listen_portaddr_node``; since, its
    ``hlist_nulls_head nulls_head`` linked through ``__sk_common.skc_nulls_node``.

    :param hashinfo: ``struct inet_hashinfo *``
    :return: Iterator of ``struct sock *`` objects.
    """
    portaddr = kernel_layout(hashinfo.prog_).lhash2_portaddr_node

    def portaddr_chain(bucket: Object) -> Iterator[Object]:
        for icsk in hlist_for_each_entry(
            "struct inet_connection_sock", bucket.head.address_of_(), "icsk_listen_portaddr_node"
        ):
            yield icsk.icsk_inet.sk.address_of_()

    def nulls_chain(bucket: Object) -> Iterator[Object]:
        return hlist_nulls_for_each_entry(
            "struct sock", bucket.nulls_head.address_of_(), "__sk_common.skc_nulls_node"
        )

    chain = portaddr_chain if portaddr else nulls_chain
    for i in range(hashinfo.lhash2_mask.value_() + 1):
        yield from _chain(chain(hashinfo.lhash2[i]), errors)


def tcp_listening_hash_socks(hashinfo: Object, errors: WalkErrors | None = None) -> Iterator[Object]:
    """
    Iterate over the listening sockets in the port-only ``listening_hash``
    table, which exists before Linux 5.19.

    :param hashinfo: ``struct inet_hashinfo *``
    :return: Iterator of ``struct sock *`` objects.
    """
    for bucket in hashinfo.listening_hash:
        yield from _chain(hlist_nulls_for_each_entry(
            "struct sock", bucket.nulls_head.address_of_(), "__sk_common.skc_nulls_node"
        ), errors)


def tcp_listening_socks(hashinfo: Object, errors: WalkErrors | None = None) -> Iterator[Object]:
    """
    Iterate over the listening TCP sockets in the order inet_diag lists them:
    ``listening_hash`` where it exists (before 5.19), else ``lhash2``. Both
    tables hold every listener.

    :param hashinfo: ``struct inet_hashinfo *``
    :return: Iterator of ``struct sock *`` objects.
    """
    if kernel_layout(hashinfo.prog_).listening_hash:
        return tcp_listening_hash_socks(hashinfo, errors)
    return tcp_lhash2_socks(hashinfo, errors)


def tcp_ehash_socks(hashinfo: Object, errors: WalkErrors | None = None) -> Iterator[Object]:
    """
    Iterate over the established table: full sockets, and ``TIME_WAIT``
    (``struct inet_timewait_sock``) and ``NEW_SYN_RECV`` (``struct
    request_sock``) minisocks, all linked through ``__sk_common.skc_nulls_node``.

    :param hashinfo: ``struct inet_hashinfo *``
    :return: Iterator of ``struct sock *`` objects; check ``__sk_common.skc_state``
        before reading anything beyond ``struct sock_common``.
    """
    ehash = hashinfo.ehash
    for i in range(hashinfo.ehash_mask.value_() + 1):
        yield from _chain(hlist_nulls_for_each_entry(
            "struct sock", ehash[i].chain.address_of_(), "__sk_common.skc_nulls_node"
        ), errors)


def udp_socks(udptable: Object, errors: WalkErrors | None = None) -> Iterator[Object]:
    """
    Iterate over every UDP socket in a table's port hash (``hash``), as udp_diag does.

    :param udptable: ``struct udp_table *``
    :return: Iterator of ``struct sock *`` objects.
    """
    for i in range(udptable.mask.value_() + 1):
        yield from _chain(hlist_for_each_entry(
            "struct sock", udptable.hash[i].head.address_of_(), "__sk_common.skc_node"
        ), errors)


def sock_num(sk: Object) -> int:
    """
    Get the local port of a socket, in host byte order.

    :param sk: ``struct sock *``
    """
    return int(sk.__sk_common.skc_num.value_())


# -- raw walks: bucket arrays read in one go, chains followed with 8-byte reads ----------

#: Longest chain followed before it is taken for a loop (a freed node pointing back).
MAX_CHAIN = 1 << 20


def _raw_chain(prog: Program, first: int, link: int, nulls: bool, errors: WalkErrors | None) -> Iterator[int]:
    """Addresses of the structs on a chain whose nodes sit ``link`` bytes into each."""
    pos = first
    hops = 0
    try:
        while pos and not (nulls and pos & 1):
            yield pos - link
            pos = prog.read_u64(pos)  # hlist_node.next and hlist_nulls_node.next come first
            hops += 1
            if hops > MAX_CHAIN:
                raise FaultError("hash chain too long: a loop?", pos)
    except FaultError as e:
        if errors is None:
            raise
        errors.count("buckets", e)


def _bucket_heads(prog: Program, array: int, count: int, bucket_type: str, head: str) -> Iterator[int]:
    """The first pointers of ``count`` buckets of an array, read in one go."""
    size = prog.type(bucket_type).size
    off = raw_offset(prog, bucket_type, head)
    buf = memoryview(prog.read(array, count * size))
    if size == 8 and off == 0:
        yield from buf.cast("Q")
        return
    for i in range(count):
        yield int.from_bytes(buf[i * size + off : i * size + off + 8], "little")


def raw_tcp_ehash(hashinfo: Object, errors: WalkErrors | None = None) -> Iterator[int]:
    """Addresses of every socket and minisock in the established table."""
    prog = hashinfo.prog_
    link = raw_offset(prog, "struct sock", "__sk_common.skc_nulls_node")
    count = hashinfo.ehash_mask.value_() + 1
    for first in _bucket_heads(prog, hashinfo.ehash.value_(), count, "struct inet_ehash_bucket",
                               "chain.first"):
        if not first & 1:
            yield from _raw_chain(prog, first, link, True, errors)


def raw_tcp_listening(hashinfo: Object, errors: WalkErrors | None = None) -> Iterator[int]:
    """Addresses of every listener, in inet_diag's order (as :func:`tcp_listening_socks`)."""
    prog = hashinfo.prog_
    layout = kernel_layout(prog)
    nulls_link = raw_offset(prog, "struct sock", "__sk_common.skc_nulls_node")
    if layout.listening_hash:
        array = hashinfo.listening_hash
        heads = _bucket_heads(prog, array.address_of_().value_(), len(array),
                              "struct inet_listen_hashbucket", "nulls_head.first")
        link, nulls = nulls_link, True
    else:
        count = hashinfo.lhash2_mask.value_() + 1
        if layout.lhash2_portaddr_node:
            head = "head.first"
            link = raw_offset(prog, "struct inet_connection_sock", "icsk_listen_portaddr_node")
            nulls = False
        else:
            head, link, nulls = "nulls_head.first", nulls_link, True
        heads = _bucket_heads(prog, hashinfo.lhash2.value_(), count, "struct inet_listen_hashbucket", head)
    for first in heads:
        if first and not (nulls and first & 1):
            yield from _raw_chain(prog, first, link, nulls, errors)


def raw_udp(udptable: Object, errors: WalkErrors | None = None) -> Iterator[int]:
    """Addresses of every socket in a UDP table's port hash."""
    prog = udptable.prog_
    link = raw_offset(prog, "struct sock", "__sk_common.skc_node")
    count = udptable.mask.value_() + 1
    for first in _bucket_heads(prog, udptable.hash.value_(), count, "struct udp_hslot", "head.first"):
        if first:
            yield from _raw_chain(prog, first, link, False, errors)
