"""The kernel's resizable hash tables (``struct rhashtable``, lib/rhashtable.c), walked raw
as rhashtable_walk_next() walks them: the current bucket table bucket by bucket, then the
one a resize is moving to (``future_tbl``). Each bucket holds the first node (its bit 0 is
the bucket's lock; an empty bucket is NULL); chains end in an odd "nulls" value.
"""

from __future__ import annotations

from collections.abc import Callable

from drgn import FaultError
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import KernelFacts
from drgn_ss.kernel.memory import Memory
from drgn_ss.tables.hashtable import Chains, bucket_heads

__all__ = ["MAX_RHT_BUCKETS", "NESTED", "rhashtable_chains"]

#: More buckets than any rhashtable has (max_size is at most 2^31 but the kernel's tables
#: grow with their elements: a billion buckets is damage).
MAX_RHT_BUCKETS = 1 << 30
#: A bucket table made of pages of buckets (after an atomic allocation failed): not read.
NESTED = "a nested rhashtable (made when memory was short) is not read"
#: Bucket tables followed through ``future_tbl`` (one resize at a time; more is a loop).
_MAX_TABLES = 4


def _unlocked(head_at: Callable[[int], int]) -> Callable[[int], int]:
    """A bucket's first node read again, as :func:`rhashtable_chains` reads it."""
    return lambda i: head_at(i) & ~1 or 1


def rhashtable_chains(facts: KernelFacts, mem: Memory, table: int, link: int,
                      errors: WalkErrors | None) -> list[Chains]:
    """
    The chains of the rhashtable at ``table`` whose objects are linked by the ``struct
    rhash_head`` at ``link`` in them: of its bucket table, and of the one a resize is filling.
    A bucket table whose size is damaged, or nested, is counted in ``errors``.
    """
    R, B = "struct rhashtable", "struct bucket_table"
    size_at, nest_at = facts.offset(B, "size"), facts.offset(B, "nest")
    buckets_at, future_at = facts.offset(B, "buckets"), facts.offset(B, "future_tbl")
    out: list[Chains] = []
    tbl = mem.read_u64(table + facts.offset(R, "tbl"))
    seen: set[int] = set()
    while tbl and tbl not in seen and len(seen) < _MAX_TABLES:
        seen.add(tbl)
        try:
            size = mem.read_u32(tbl + size_at)
            if size & (size - 1) or not 0 < size <= MAX_RHT_BUCKETS:
                raise FaultError(f"a hash table's size is damaged ({size:#x})", tbl)
            if mem.read_u32(tbl + nest_at):
                raise FaultError(NESTED, tbl)
            raw, head_at = bucket_heads(mem, tbl + buckets_at, size, 8, 0)
            # Empty buckets (NULL) as a nulls marker; the lock bit cleared.
            heads = [head & ~1 or 1 for head in raw]
            out.append(Chains(heads, link, True, -1, _unlocked(head_at), tbl + buckets_at))
        except FaultError as e:
            tolerate(errors, "tables", e)
        tbl = mem.read_u64(tbl + future_at)
    return out
