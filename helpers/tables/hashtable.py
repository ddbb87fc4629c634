"""The kernel's socket hash tables, walked raw: bucket arrays bounded by what the kernel
could have allocated (:func:`bucket_limit`), read in one go, and each chain's nodes once
(:func:`chain_entries`), loop-checked, in the order the kernel's ``*_diag`` dump visits
them, which is the order ss prints them in. A family's tables (:mod:`drgn_ss.tables.inet`)
say where their buckets are; the family's module decodes what the walk finds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple, Protocol

from drgn import FaultError, Program, TypeKind
from drgn_ss.kernel.damage import WalkErrors, tolerate
from drgn_ss.kernel.facts import KernelFacts
from drgn_ss.kernel.memory import Memory
from drgn_ss.kernel.native import native
from drgn_ss.kernel.target import physical_memory_bytes

__all__ = [
    "BUCKETS_PER_READ", "Chains", "LISTENING_NULLS_BASE", "MAX_CHAIN", "MAX_CHILD_EHASH_BUCKETS",
    "MET_AGAIN", "NULL_IN_NULLS", "NodeSet", "OTHER_MARKER", "OUTSIDE", "STRAYED", "TableDamaged", "UNHASHED",
    "Walked",    "bucket_head_ok", "bucket_heads", "bucket_limit", "chain_entries", "chase", "hashed_heads",
    "member_address", "new_walked",
]

#: A namespace's own ehash has at most tcp_child_ehash_entries' maximum, 16M buckets: the
#: least :func:`bucket_limit` allows a table sized by memory.
MAX_CHILD_EHASH_BUCKETS = 1 << 24

#: Longest chain followed before it is taken for a loop (a freed node pointing back).
MAX_CHAIN = 1 << 20
#: A chain of a nulls table (ehash; the listening tables, but for 5.10's lhash2) ends in an
#: odd marker: a NULL pointer there is damage (a zeroed node or bucket), counted as a bucket.
NULL_IN_NULLS = "NULL in a nulls hash chain: a zeroed node or bucket"


class Chains(NamedTuple):
    """The chains of one hash table: each bucket's first pointer, and how nodes link."""

    #: First pointer of each chain (0, or a nulls marker with bit 0 set, when empty).
    heads: list[int]
    #: Offset of the ``hlist_node``/``hlist_nulls_node`` in the struct it links.
    link: int
    #: Whether chains end in a nulls marker (odd pointer) rather than NULL.
    nulls: bool
    #: For nulls tables, the marker value that ends bucket 0's chain (bucket i's is i more:
    #: ``INIT_HLIST_NULLS_HEAD(head, i + base)``); -1 where markers are not checked. A chain
    #: that ends in another bucket's marker strayed (a node freed and reused under the walk).
    marker_base: int = -1
    #: Reads bucket i's first pointer again (a retry on a live kernel), or None.
    head_at: Callable[[int], int] | None = None
    #: Address of the bucket array: the same for namespaces that share the table.
    array: int = 0
    #: For plain hlists, the address of bucket 0's first pointer and the distance between
    #: buckets (0: unknown): on a running kernel each node's ``pprev`` must point back at the
    #: pointer the walk came through, else the node was unhashed (perhaps freed and reused in
    #: another chain) under the walk, which then strays unseen; the chain is walked again.
    first_at: int = 0
    stride: int = 0


#: A plain hlist node whose ``pprev`` is not the pointer the walk followed to it: unhashed
#: (hlist_del_init_rcu()) or linked elsewhere since; its ``next`` may lead into another
#: chain. drgn_ss._fast says the same.
UNHASHED = "a hash chain's node was unhashed under the walk"
#: drgn_ss._fast says the same.
OTHER_MARKER = "a bucket holds another bucket's nulls marker: damaged"


def bucket_head_ok(chains: Chains, i: int, first: int, errors: WalkErrors | None) -> bool:
    """
    Whether bucket ``i``'s first pointer can start a chain (or be an empty bucket): a nulls
    chain's bucket never holds NULL, and an empty one holds its own marker; anything else
    is counted and not walked.
    """
    if not chains.nulls:
        return True
    if not first:
        tolerate(errors, "buckets", FaultError(NULL_IN_NULLS, 0))
        return False
    if first & 1 and chains.marker_base >= 0 and first >> 1 != i + chains.marker_base:
        tolerate(errors, "buckets", FaultError(OTHER_MARKER, first))
        return False
    return True


#: The nulls base of the listening tables (include/net/inet_hashtables.h: LISTENING_NULLS_BASE).
LISTENING_NULLS_BASE = 1 << 29
#: drgn_ss._fast says the same.
STRAYED = "hash chain ends in another bucket's marker: a node freed and reused under the walk"


#: drgn_ss._fast says the same.
OUTSIDE = "hash chain pointer outside the direct map: damaged"
#: drgn_ss._fast says the same.
MET_AGAIN = "hash chain meets a node already walked: chains that loop or join"


class NodeSet(Protocol):
    """What :attr:`Walked.nodes` does: a set of addresses (a set of ints, or an AddressSet)."""

    def __contains__(self, addr: object) -> bool: ...
    def __len__(self) -> int: ...
    def add(self, addr: int) -> None: ...
    def discard(self, addr: int) -> None: ...
    def difference_update(self, addrs: Iterable[int]) -> None: ...


class Walked:
    """
    What a listing's walks have visited: every node of every chain, so that no socket is
    listed twice, and the span of addresses a node may have (slab objects live in the direct
    map). In a dump, chains that loop or join are cut where they meet a node already seen,
    and counted. On a running kernel (``live``), a node met again in the chain being walked
    is a loop, cut (and the chain walked once more); one met in an earlier chain is a socket
    freed and reused in another bucket while the walk ran (SLAB_TYPESAFE_BY_RCU): it is not
    listed again, and the chain goes on through it.
    """

    def __init__(self, lo: int = 0, hi: int = 1 << 64, live: bool = False) -> None:
        fast = native()
        #: The nodes: a set of addresses in C (drgn_ss._fast.AddressSet: no int object per
        #: node, which the walks in C use directly), else a set of ints.
        self.nodes: NodeSet = fast.AddressSet() if fast is not None else set()
        self.lo, self.hi = lo, hi
        self.live = live

    def valid(self, addr: int) -> bool:
        """Whether a node may be at ``addr``: in the direct map, 8-byte aligned."""
        return self.lo <= addr < self.hi and not addr & 7


def new_walked(mem: Memory, memory_bytes: int, live: bool) -> Walked:
    """
    A :class:`Walked` for one listing: nodes bounded by the direct map once reads there
    are known to work (``memory_bytes`` of it: the machine's memory), else unbounded.
    """
    if mem.lo and mem.hi and not mem.probing:
        return Walked(mem.lo, min(mem.hi, mem.lo + memory_bytes), live)
    return Walked(live=live)


def chain_entries(mem: Memory, first: int, chains: Chains, size: int, least: int,
              errors: WalkErrors | None, marker: int | None = None,
              walked: Walked | None = None, added: list[int] | None = None,
              head: int | None = None) -> Iterator[tuple[int, bytes]]:
    """
    Follow one chain, reading each struct once: ``size`` bytes (or ``least`` where
    that reaches a missing page). Yields (address, bytes); the next pointer is taken
    from those bytes, so ``least`` must cover the node. A chain that faults, points outside
    the direct map, comes back to a node it or another chain of the listing passed (a loop
    through a freed node, chains that join: ``walked``), or is longer than
    :data:`MAX_CHAIN`, is cut there and counted; so is one that ends in a nulls marker other
    than ``marker`` (see :attr:`Chains.marker_base`), and, given ``head`` (the address of the
    bucket's first pointer, a plain hlist on a running kernel), one whose node's ``pprev``
    does not point back at the pointer the walk came through (:data:`UNHASHED`). The nodes
    walked are added to ``walked.nodes`` and to ``added``.
    """
    link, nulls = chains.link, chains.nulls
    walked = walked if walked is not None else Walked()
    seen, live = walked.nodes, walked.live
    mine = added if added is not None else []
    pos = first
    hops = 0
    addr = 0
    try:
        while pos and not (nulls and pos & 1):
            addr = pos - link
            if not walked.valid(addr):
                raise FaultError(OUTSIDE, pos)
            again = addr in seen
            if again and (not live or addr in mine):
                raise FaultError(MET_AGAIN, pos)
            buf = mem.read_some(addr, size, least)
            if head is not None:
                if int.from_bytes(buf[link + 8 : link + 16], "little") != head:
                    raise FaultError(UNHASHED, addr)
                head = pos
            if not again:  # else moved here from a chain already walked: listed there
                seen.add(addr)
                mine.append(addr)
                yield addr, buf
            pos = int.from_bytes(buf[link : link + 8], "little")
            hops += 1
            if hops > MAX_CHAIN:
                raise FaultError("hash chain too long: a loop?", pos)
        if nulls and not pos:
            raise FaultError(NULL_IN_NULLS, addr)
        if marker is not None and pos >> 1 != marker:
            raise FaultError(STRAYED, addr)
    except FaultError as e:
        tolerate(errors, "buckets", e)


#: Largest bucket array read at once; a larger table is read in pieces.
BUCKETS_PER_READ = 1 << 16


def bucket_heads(mem: Memory, array: int, count: int, size: int, off: int
                  ) -> tuple[list[int], Callable[[int], int]]:
    """
    The first pointers of ``count`` buckets of ``size`` bytes, read a piece at a time, and a
    function that reads bucket i's again (for a retry on a running kernel).
    """
    heads: list[int] = []
    for start in range(0, count, BUCKETS_PER_READ):
        n = min(BUCKETS_PER_READ, count - start)
        buf = memoryview(mem.read(array + start * size, n * size))
        if size == 8 and off == 0:
            heads += buf.cast("Q").tolist()
        else:
            heads += [int.from_bytes(buf[i * size + off : i * size + off + 8], "little") for i in range(n)]
    return heads, lambda i: mem.read_u64(array + i * size + off)


class TableDamaged(FaultError):
    """A table's size (mask) that the kernel could not have made: its chains are not walked."""


def bucket_limit(facts: KernelFacts, bucket_type: str, cap: int | None) -> int:
    """
    The most buckets a table can have: ``cap`` (the kernel's own limit), or for the
    established table, 1/16 of memory's worth or 16M, whichever is more.
    """
    if cap is not None:
        return cap
    return max(physical_memory_bytes(facts.prog) // 16 // facts.size(bucket_type), MAX_CHILD_EHASH_BUCKETS)


def hashed_heads(facts: KernelFacts, mem: Memory, table: int, table_type: str, array: str, mask: str,
                  bucket_type: str, head: str, cap: int | None
                  ) -> tuple[list[int], Callable[[int], int], int]:
    """
    The chain heads of a table whose ``array`` member points to ``mask + 1`` buckets, a
    function that reads one of them again, and the address of the buckets.

    :raises TableDamaged: if the mask is not a power of two less one, or allows more
        buckets than the kernel could have made (:func:`bucket_limit`)
    """
    buckets = mem.read_u64(table + facts.offset(table_type, array))
    count = mem.read_u32(table + facts.offset(table_type, mask)) + 1
    if count & (count - 1) or count > bucket_limit(facts, bucket_type, cap):
        raise TableDamaged(f"a hash table's mask is damaged ({count - 1:#x})", table)
    return (*bucket_heads(mem, buckets, count, facts.size(bucket_type), facts.offset(bucket_type, head)),
            buckets)


def chase(facts: KernelFacts, mem: Memory, addr: int, type_name: str, path: str) -> int:
    """
    The value of a member path, following the pointers on the way as C's ``->``
    would: ``chase(net, "struct net", "ipv4.tcp_death_row.hashinfo")`` works whether
    ``tcp_death_row`` is embedded or a pointer.
    """
    steps = facts.value(f"chase:{type_name}:{path}", lambda p: _chase_steps(p, type_name, path))
    for off in steps:
        addr = mem.read_u64(addr + off)
    return addr


def member_address(facts: KernelFacts, mem: Memory, addr: int, type_name: str, path: str) -> int:
    """
    The address of a member path's last member, following the pointers on the way as
    :func:`chase` does (``net->ipv4.tcp_death_row.tw_refcount`` whether ``tcp_death_row``
    is embedded or a pointer).
    """
    steps, last = facts.value(f"address:{type_name}:{path}", lambda p: _address_steps(p, type_name, path))
    for off in steps:
        addr = mem.read_u64(addr + off)
    return int(addr + last)


def _address_steps(prog: Program, type_name: str, path: str) -> tuple[list[int], int]:
    """Offsets to add then dereference, one per pointer crossed before the last member, then its offset."""
    steps = []
    current = prog.type(type_name)
    off = 0
    names = path.split(".")
    for i, name in enumerate(names):
        member = current.unaliased().member(name)
        off += member.bit_offset // 8
        current = member.type
        if current.unaliased().kind == TypeKind.POINTER and i < len(names) - 1:
            steps.append(off)
            off = 0
            current = current.unaliased().type
    return steps, off


def _chase_steps(prog: Program, type_name: str, path: str) -> list[int]:
    """Offsets to add then dereference, one per pointer crossed (the last: the value)."""
    steps = []
    off = 0
    current = prog.type(type_name)
    for name in path.split("."):
        member = current.unaliased().member(name)
        off += member.bit_offset // 8
        current = member.type
        if current.unaliased().kind == TypeKind.POINTER:
            steps.append(off)
            off = 0
            current = current.unaliased().type
    if off:
        raise TypeError(f"{type_name}.{path} does not end in a pointer")
    return steps
