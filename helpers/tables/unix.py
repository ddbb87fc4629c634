"""Where the kernel keeps unix sockets: one hash table of ``UNIX_HASH_SIZE`` plain hlist
chains (net/unix/af_unix.c), linked through ``sk->__sk_common.skc_node``, which unix_diag
dumps bucket by bucket (net/unix/diag.c, unix_diag_dump()): the order ss prints them in.
Every unix socket is in it, bound or not (unbound ones in the upper half).
"""

from __future__ import annotations

from drgn_ss.kernel.facts import KernelFacts, kernel_layout
from drgn_ss.kernel.memory import Memory
from drgn_ss.tables.hashtable import Chains, bucket_heads

__all__ = ["UNIX_HASH_SIZE", "unix_table_chains", "unix_table_shared"]

#: Buckets of the table: ``2 * UNIX_HASH_SIZE`` (256) of 5.10's global array, and
#: ``UNIX_HASH_SIZE`` (256 * 2) of a namespace's own since 5.19: 512 either way.
UNIX_HASH_SIZE = 512


def unix_table_shared(facts: KernelFacts) -> bool:
    """Whether every namespace's unix sockets are in one global table (before 5.19)."""
    return not kernel_layout(facts.prog).unix_table_per_netns


def unix_table_chains(facts: KernelFacts, mem: Memory, net: int) -> Chains:
    """
    The chains of the unix socket table that holds ``net``'s sockets (``struct net *``):
    ``net->unx.table.buckets`` (5.19+), else the global ``unix_socket_table``, which holds
    every namespace's (:func:`unix_table_shared`: the caller filters them by namespace).
    """
    if unix_table_shared(facts):
        array = facts.symbol("unix_socket_table")
    else:
        array = mem.read_u64(net + facts.offset("struct net", "unx.table.buckets"))
    heads, head_at = bucket_heads(mem, array, UNIX_HASH_SIZE, 8, 0)
    return Chains(heads, facts.offset("struct sock", "__sk_common.skc_node"), False, -1, head_at, array)
