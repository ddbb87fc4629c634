"""Where the kernel keeps raw sockets: ``raw_v4_hashinfo`` and ``raw_v6_hashinfo``, each
``RAW_HTABLE_SIZE`` plain hlist chains (``ht[]``) linked through ``sk->__sk_common.skc_node``,
shared by every namespace; raw_diag dumps a family's table bucket by bucket
(net/ipv4/raw_diag.c, raw_diag_dump()), which is ss's order.
"""

from __future__ import annotations

from drgn_ss.kernel.facts import KernelFacts
from drgn_ss.kernel.memory import Memory
from drgn_ss.tables.hashtable import Chains, bucket_heads

__all__ = ["RAW_HTABLE_SIZE", "raw_table_chains"]

#: include/net/raw.h (5.10 to 7.x): the buckets of each table.
RAW_HTABLE_SIZE = 256


def raw_table_chains(facts: KernelFacts, mem: Memory, hashinfo: int) -> Chains:
    """The chains of a raw socket table (``struct raw_hashinfo``: raw_v4_hashinfo, raw_v6_hashinfo)."""
    array = hashinfo + facts.offset("struct raw_hashinfo", "ht")
    heads, head_at = bucket_heads(mem, array, RAW_HTABLE_SIZE, 8, 0)
    return Chains(heads, facts.offset("struct sock", "__sk_common.skc_node"), False, -1, head_at, array)
