"""drgn_ss._fast.AddressSet against a set of ints: the same answers after any mix of operations."""

from __future__ import annotations

import random
from typing import Any

import pytest
from drgn_ss.kernel.native import native
from drgn_ss.tables.hashtable import Walked


def _address_set() -> Any:
    fast = native()
    if fast is None:
        pytest.skip("drgn_ss._fast is not built")
    return fast.AddressSet()


@pytest.mark.parametrize("seed", range(4))
def test_address_set_is_a_set_of_addresses(seed: int) -> None:
    rnd = random.Random(seed)
    fast, ref = _address_set(), set[int]()
    # Slab-like addresses (many in a few pages: long probe runs) and random ones, to and
    # past several resizes, with discards that wrap around the table's end.
    pool = [0xFFFF888000000000 + 64 * i for i in range(3000)]
    pool += [rnd.randrange(8, 1 << 64, 8) for _ in range(3000)]
    for _ in range(30000):
        addr = rnd.choice(pool)
        op = rnd.random()
        if op < 0.6:
            fast.add(addr)
            ref.add(addr)
        elif op < 0.9:
            fast.discard(addr)
            ref.discard(addr)
        else:
            some = rnd.sample(pool, 20)
            fast.difference_update(some)
            ref.difference_update(some)
        assert len(fast) == len(ref)
    assert sorted(fast) == sorted(ref)
    assert all(addr in fast for addr in ref)
    assert not any(addr in fast for addr in set(pool) - ref)


def test_address_set_refuses_what_is_no_address() -> None:
    fast = _address_set()
    with pytest.raises(ValueError):
        fast.add(0)
    with pytest.raises(OverflowError):
        fast.add(1 << 64)
    assert 0 not in fast and -8 not in fast and (1 << 70) not in fast and "x" not in fast
    fast.discard(1 << 70)  # nothing to do, as set.discard of an absent element


def test_walked_nodes_in_c_where_built_else_a_set(monkeypatch: pytest.MonkeyPatch) -> None:
    if native() is not None:
        assert type(Walked().nodes).__name__ == "AddressSet"
    monkeypatch.setenv("DRGN_SS_PURE_PYTHON", "1")
    assert isinstance(Walked().nodes, set)
