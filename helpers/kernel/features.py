"""What differs between kernel versions, decided once per kernel build by feature
detection (does this type have this member?), never by the release string.
Every difference the project knows about is an entry of :class:`KernelLayout`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from drgn import Type, TypeKind
from drgn_ss.kernel.type_sources import TypeSource

__all__ = ["KernelLayout", "detect_layout", "has_member"]


def has_member(type_: Type, name: str) -> bool:
    """Whether a struct or union type has a member (through anonymous members too)."""
    try:
        type_.member(name)
    except LookupError:
        return False
    return True


class KernelLayout(NamedTuple):
    """
    Every kernel difference drgn-ss knows, one boolean each, detected from the kernel's
    types (:func:`detect_layout`); each entry says which kernels have which side (the
    matrix's are Debian's 5.10, 6.1, 6.12 and 7.2).
    """

    #: The port-only ``inet_hashinfo.listening_hash[32]`` exists (before 5.19):
    #: inet_diag lists listeners from it, so ss's order follows it.
    listening_hash: bool
    #: ``lhash2`` chains are linked through ``icsk_listen_portaddr_node`` (before
    #: 5.19) rather than ``__sk_common.skc_nulls_node``.
    lhash2_portaddr_node: bool
    #: ``net->ipv4.udp_table`` exists: UDP tables are per network namespace (6.2+).
    udp_table_per_netns: bool
    #: ``struct sock`` caches its inode in ``sk_ino`` (6.18+).
    sk_ino: bool
    #: ``struct sock_cgroup_data`` has a ``cgroup`` pointer (5.15+) rather than ``val``.
    sock_cgroup_pointer: bool
    #: ``ip_local_ports.range`` is one u32 holding low | high << 16 (6.3+), not ``int[2]``.
    local_ports_packed: bool
    #: ``icsk_timeout`` holds the pending timer's expiry (before 6.14); later kernels
    #: read ``sk->tcp_retransmit_timer.expires``.
    icsk_timeout: bool
    #: The keepalive timer is ``icsk_keepalive_timer`` (a union with ``mptcp_tout_timer``
    #: in Debian's 6.1.192, 6.12 and 7.2) rather than ``sk->sk_timer`` (5.10).
    icsk_keepalive_timer: bool
    #: The timekeeper lives in ``tk_core`` (5.10 to 6.12 in the matrix) rather than
    #: ``timekeeper_data[TIMEKEEPER_CORE]`` (7.2).
    tk_core: bool
    #: ``struct kernfs_node`` names its parent ``__parent`` (6.15+, RCU) rather than ``parent``.
    kernfs_parent_rcu: bool
    #: ``struct prot_inuse`` counts every socket in ``all`` (6.0+), rather than
    #: ``net->core.sock_inuse`` (ss -s's Total).
    prot_inuse_all: bool
    #: TCP's orphans are counted by ``struct percpu_counter tcp_orphan_count`` (before
    #: 5.15), rather than a per-CPU int of that name.
    orphan_percpu_counter: bool
    #: TIME-WAIT sockets are counted by ``tcp_death_row.tw_refcount`` (6.0+, one more than
    #: there are) rather than ``tw_count``.
    tw_refcount: bool
    #: ``sk_drops`` is added to the NUMA drop counters ``sk->sk_drop_counters`` points to
    #: (UDP's, 6.17+), as ``sk_drops_read()`` does.
    sk_drop_counters: bool
    #: Each network namespace has its own unix socket table, ``net->unx.table.buckets``
    #: (5.19+, "af_unix: Define a per-netns hash table."), rather than the global
    #: ``unix_socket_table`` that unix_diag filters by namespace (5.10).
    unix_table_per_netns: bool
    #: ``unix_sock.inq_len`` counts a stream socket's unread bytes, which unix_inq_len()
    #: reports (6.17+), rather than a walk of its receive queue.
    unix_inq_len: bool
    #: A packet socket's running, vnet-header and loss flags are bits of ``po->flags``
    #: (6.1+, "net/packet: convert po->... to atomic flags") rather than members of their
    #: own (5.10: ``running``, ``has_vnet_hdr``, ``tp_loss``).
    packet_flag_bits: bool
    #: ``packet_sock.vnet_hdr_sz`` holds the vnet header's size, whose being set is
    #: PDI_VNETHDR (between 6.1 and 6.12), rather than a PACKET_SOCK_HAS_VNET_HDR bit.
    packet_vnet_hdr_sz: bool
    #: A TPACKET_V3 ring's block timeout is an hrtimer interval, ``interval_ktime`` (7.x),
    #: rather than ``retire_blk_tov`` in milliseconds.
    packet_interval_ktime: bool
    #: An inet socket's options (IP_RECVERR, IP_FREEBIND...) are bits of ``inet->inet_flags``
    #: numbered by an anonymous enum's ``INET_FLAGS_*`` (6.6+, "inet: introduce
    #: inet->inet_flags"), rather than bitfields of ``struct inet_sock`` of their own.
    inet_flags: bool
    #: An MPTCP socket's Recv-Q adds ``mptcp_sock.backlog_len`` (7.x) to its receive memory.
    mptcp_backlog_len: bool
    #: TCP's and UDP's pages allocated are members of ``net_aligned_data`` (6.16+, "net:
    #: add struct net_aligned_data") rather than variables of their own
    #: (``tcp_memory_allocated``, ``udp_memory_allocated``: 5.10 to 6.12 in the matrix).
    net_aligned_data: bool


def detect_layout(prog: TypeSource) -> KernelLayout:
    """Detect every :class:`KernelLayout` entry from ``prog``'s types (DWARF or BTF) and symbols."""
    hashinfo = prog.type("struct inet_hashinfo")
    icsk = prog.type("struct inet_connection_sock")
    netns_ipv4 = prog.type("struct netns_ipv4")
    cgroup_data = prog.type("struct sock_cgroup_data")
    ports_range = prog.type("struct netns_ipv4").member("ip_local_ports").type.member("range").type
    return KernelLayout(
        listening_hash=has_member(hashinfo, "listening_hash"),
        lhash2_portaddr_node=has_member(icsk, "icsk_listen_portaddr_node"),
        udp_table_per_netns=has_member(netns_ipv4, "udp_table"),
        sk_ino=has_member(prog.type("struct sock"), "sk_ino"),
        sock_cgroup_pointer=has_member(cgroup_data, "cgroup"),
        local_ports_packed=ports_range.unqualified().kind != TypeKind.ARRAY,
        icsk_timeout=has_member(icsk, "icsk_timeout"),
        icsk_keepalive_timer=has_member(icsk, "icsk_keepalive_timer"),
        tk_core=prog.symbol("tk_core") is not None,
        kernfs_parent_rcu=has_member(prog.type("struct kernfs_node"), "__parent"),
        prot_inuse_all=has_member(prog.type("struct prot_inuse"), "all"),
        orphan_percpu_counter=(has_member(prog.type("struct proto"), "orphan_count")
                               and _pointee_kind(prog.type("struct proto").member("orphan_count").type)
                               == TypeKind.STRUCT),
        tw_refcount=has_member(prog.type("struct inet_timewait_death_row"), "tw_refcount"),
        sk_drop_counters=has_member(prog.type("struct sock"), "sk_drop_counters"),
        unix_table_per_netns=has_member(prog.type("struct netns_unix"), "table"),
        unix_inq_len=has_member(prog.type("struct unix_sock"), "inq_len"),
        packet_flag_bits=not has_member(prog.type("struct packet_sock"), "running"),
        packet_vnet_hdr_sz=has_member(prog.type("struct packet_sock"), "vnet_hdr_sz"),
        packet_interval_ktime=has_member(prog.type("struct tpacket_kbdq_core"), "interval_ktime"),
        inet_flags=has_member(prog.type("struct inet_sock"), "inet_flags"),
        mptcp_backlog_len=_type_has_member(prog, "struct mptcp_sock", "backlog_len"),
        net_aligned_data=_type_has_member(prog, "struct net_aligned_data", "tcp_memory_allocated"),
    )


def _type_has_member(prog: TypeSource, type_name: str, member: str) -> bool:
    """Whether a type exists and has a member (MPTCP's types are absent where it is not built)."""
    try:
        type_ = prog.type(type_name)
    except LookupError:
        return False
    return has_member(type_, member)


def _pointee_kind(pointer: Any) -> TypeKind:
    """The kind of what a pointer type points to, typedefs and qualifiers set aside."""
    return pointer.unaliased().type.unaliased().kind


