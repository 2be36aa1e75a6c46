"""Slots of registered memory (insane/transports/rdma/buffers.py): taken and given back, never
twice, and completions for a slot's earlier use recognised as stale."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from insane.transports.rdma.buffers import SlotPool


def test_take_until_empty_then_give_back() -> None:
    pool = SlotPool(3, 4096)
    slots = [pool.take("a"), pool.take("a"), pool.take("b")]
    assert sorted(s for s in slots if s is not None) == [0, 1, 2]
    assert pool.take() is None and pool.free == 0 and pool.in_use == 3
    pool.give(1)
    assert pool.take("c") == 1  # the warmest slot first
    with pytest.raises(ValueError, match="not in use"):
        pool.give(7)


def test_a_slot_is_not_given_back_twice() -> None:
    pool = SlotPool(2, 64)
    s = pool.take()
    assert s is not None
    pool.give(s)
    with pytest.raises(ValueError, match="not in use"):
        pool.give(s)


def test_completions_of_an_earlier_use_are_stale() -> None:
    pool = SlotPool(1, 64)
    s = pool.take("first")
    assert s is not None
    old = pool.wr_id(s)
    assert pool.owner(old) == "first"
    assert pool.release_all("first") == 1  # its connection was dropped
    assert pool.release(old) is None  # its late completion frees nothing
    s = pool.take("second")
    assert s is not None
    assert pool.release(old) is None  # nor the slot's new use
    assert pool.owner(pool.wr_id(s)) == "second"
    assert pool.release(pool.wr_id(s)) == "second" and pool.free == 1


@given(st.lists(st.tuples(st.sampled_from(["take", "release", "drop"]), st.integers(0, 9))))
def test_against_a_model(ops: list[tuple[str, int]]) -> None:
    pool = SlotPool(4, 16)
    owners = [object(), object(), object()]  # (connections: owned by identity)
    held: dict[int, tuple[int, object]] = {}  # wr_id -> (slot, owner)
    for op, n in ops:
        owner = owners[n % 3]
        if op == "take":
            slot = pool.take(owner)
            if len({s for s, _ in held.values()}) == 4:
                assert slot is None
            else:
                assert slot is not None and slot not in {s for s, _ in held.values()}
                held[pool.wr_id(slot)] = (slot, owner)
        elif op == "release" and held:
            wr_id = sorted(held)[n % len(held)]
            assert pool.release(wr_id) == held.pop(wr_id)[1]
        elif op == "drop":
            mine = [w for w, (_, o) in held.items() if o == owner]
            assert pool.release_all(owner) == len(mine)
            for w in mine:
                del held[w]
                assert pool.release(w) is None
        assert pool.in_use == len(held)
