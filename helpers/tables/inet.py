"""The TCP and UDP tables: the established and listening hash tables of a
``struct inet_hashinfo`` and a ``struct udp_table``'s port hash, as chains to walk.
"""

from __future__ import annotations

from drgn_ss.kernel.facts import KernelFacts, kernel_layout
from drgn_ss.kernel.memory import Memory
from drgn_ss.tables.hashtable import (
    LISTENING_NULLS_BASE,
    Chains,
    TableDamaged,
    bucket_heads,
    chase,
    hashed_heads,
)

__all__ = [
    "MAX_LISTENING_BUCKETS", "MAX_UDP_BUCKETS", "listening_table", "tcp_ehash_chains",
    "tcp_hashinfo_address", "tcp_listening_chains", "udp_hash_chains", "udp_table_address",
]

#: The most buckets each table can have, by the kernel's own limits: the listening table's
#: and UDP's are allocated with a high limit of 64K entries (inet_hashinfo2_init() and
#: udp_table_init(): 64 * 1024; a namespace's own UDP table, UDP_HTABLE_SIZE_MAX, the same);
#: a namespace's own ehash has at most tcp_child_ehash_entries' maximum, 16M, and the global
#: one at most 1/16 of memory (alloc_large_system_hash()'s limit), see :func:`bucket_limit`.
MAX_LISTENING_BUCKETS = 1 << 16
MAX_UDP_BUCKETS = 1 << 16
T_SLOT = "struct udp_hslot"


def tcp_hashinfo_address(facts: KernelFacts, mem: Memory, net: int) -> int:
    """
    The TCP hash tables a namespace uses: its own ehash when ``tcp_child_ehash_entries``
    was set when it was created (6.1+), else the global one.

    :param net: ``struct net *`` address
    :return: ``struct inet_hashinfo *`` address
    """
    return chase(facts, mem, net, "struct net", "ipv4.tcp_death_row.hashinfo")


def udp_table_address(facts: KernelFacts, mem: Memory, net: int) -> int:
    """
    The UDP table a namespace uses, an address: ``net->ipv4.udp_table`` since Linux 6.2,
    the global ``udp_table`` before.
    """
    if kernel_layout(facts.prog).udp_table_per_netns:
        return chase(facts, mem, net, "struct net", "ipv4.udp_table")
    return facts.symbol("udp_table")


def tcp_ehash_chains(facts: KernelFacts, mem: Memory, hashinfo: int) -> Chains:
    """The established table's chains: full sockets and TIME_WAIT and NEW_SYN_RECV minisocks."""
    heads, head_at, array = hashed_heads(facts, mem, hashinfo, "struct inet_hashinfo", "ehash", "ehash_mask",
                                          "struct inet_ehash_bucket", "chain.first", None)
    return Chains(heads, facts.offset("struct sock", "__sk_common.skc_nulls_node"), True, 0, head_at, array)


def tcp_listening_chains(facts: KernelFacts, mem: Memory, hashinfo: int) -> Chains:
    """
    The listeners' chains, in inet_diag's order: ``listening_hash`` where it exists
    (before 5.19), else ``lhash2``; both tables hold every listener. Before 5.19 an
    ``lhash2`` chain links ``inet_connection_sock.icsk_listen_portaddr_node``; since, both
    link ``__sk_common.skc_nulls_node``.
    """
    layout = kernel_layout(facts.prog)
    H = "struct inet_hashinfo"
    B = "struct inet_listen_hashbucket"
    nulls_link = facts.offset("struct sock", "__sk_common.skc_nulls_node")
    if layout.listening_hash:
        count = facts.value("length:struct inet_hashinfo:listening_hash",
                            lambda p: p.type(H).member("listening_hash").type.unaliased().length)
        array = hashinfo + facts.offset(H, "listening_hash")
        heads, head_at = bucket_heads(mem, array, count, facts.size(B), facts.offset(B, "nulls_head.first"))
        return Chains(heads, nulls_link, True, LISTENING_NULLS_BASE, head_at, array)
    if layout.lhash2_portaddr_node:
        heads, head_at, array = hashed_heads(facts, mem, hashinfo, H, "lhash2", "lhash2_mask", B,
                                              "head.first", MAX_LISTENING_BUCKETS)
        return Chains(heads, facts.offset("struct inet_connection_sock", "icsk_listen_portaddr_node"), False,
                      -1, head_at, array, array + facts.offset(B, "head.first"), facts.size(B))
    heads, head_at, array = hashed_heads(facts, mem, hashinfo, H, "lhash2", "lhash2_mask", B,
                                          "nulls_head.first", MAX_LISTENING_BUCKETS)
    return Chains(heads, nulls_link, True, LISTENING_NULLS_BASE, head_at, array)


def listening_table(facts: KernelFacts, mem: Memory, hashinfo: int) -> int:
    """
    What tells listening tables apart: the ``lhash2`` array's address (a namespace's own
    hashinfo, 6.1+, is a copy of the global one that shares its lhash2), or, where the
    listeners are in ``listening_hash`` (before 5.19), the hashinfo's.
    """
    if kernel_layout(facts.prog).listening_hash:
        return hashinfo
    return mem.read_u64(hashinfo + facts.offset("struct inet_hashinfo", "lhash2"))


def udp_hash_chains(facts: KernelFacts, mem: Memory, udptable: int) -> Chains:
    """
    A UDP table's port-hash chains (``hash``, every socket, as udp_diag walks them),
    linked through ``__sk_common.skc_node``. Its ``mask`` must agree with
    its ``log`` (both set by udp_table_init() or udp_pernet_table_alloc()).
    """
    T = "struct udp_table"
    log = mem.read_u32(udptable + facts.offset(T, "log"))
    mask = mem.read_u32(udptable + facts.offset(T, "mask"))
    if log >= 32 or mask != (1 << log) - 1:
        raise TableDamaged(f"a UDP table's mask and log disagree ({mask:#x}, {log})", udptable)
    heads, head_at, array = hashed_heads(facts, mem, udptable, T, "hash", "mask",
                                          T_SLOT, "head.first", MAX_UDP_BUCKETS)
    return Chains(heads, facts.offset("struct sock", "__sk_common.skc_node"), False, -1, head_at, array,
                  array + facts.offset(T_SLOT, "head.first"), facts.size(T_SLOT))
