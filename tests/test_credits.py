"""Receive credits (insane/transports/rdma/credits.py): never more messages than posted buffers, and
no deadlock, over random interleavings of two sides that send, receive and repost."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insane.transports.rdma.credits import MIN_DEPTH, RESERVE, Credits, default_batch


@dataclass
class Side:
    """One end of a simulated reliable connection with ``depth`` receive buffers."""

    credits: Credits
    depth: int
    posted: int  # receive buffers posted and empty right now
    to_send: int  # data messages the application still wants to send
    filled: int = 0  # buffers holding a message not yet read and reposted
    delivered: int = 0
    wire: collections.deque[tuple[bool, int]] = field(default_factory=collections.deque)


def pair(depth: int, msgs: tuple[int, int], batch: int | None = None) -> tuple[Side, Side]:
    a = Side(Credits(depth, depth, batch), depth, depth, msgs[0])
    b = Side(Credits(depth, depth, batch), depth, depth, msgs[1])
    return a, b


def send(src: Side) -> bool:
    """What a transport does when it may: data first, else an update that is due."""
    if src.to_send and src.credits.can_send:
        src.wire.append((True, src.credits.take()))
        src.to_send -= 1
        return True
    if src.credits.update_due:
        src.wire.append((False, src.credits.take_update()))
        return True
    return False


def arrive(src: Side, dst: Side) -> bool:
    """The oldest message in flight from ``src`` lands in one of ``dst``'s buffers."""
    if not src.wire:
        return False
    is_data, returned = src.wire.popleft()
    assert dst.posted > 0, "a message arrived with no receive buffer posted (RNR)"
    dst.posted -= 1
    dst.filled += 1
    dst.credits.on_receive(returned)
    if is_data:
        dst.delivered += 1
    return True


def repost(side: Side) -> bool:
    if not side.filled:
        return False
    side.filled -= 1
    side.posted += 1
    side.credits.on_reposted()
    return True


def run_fair(a: Side, b: Side, limit: int = 5_000) -> None:
    """Every side acts as a transport would, until nothing moves."""
    for _ in range(limit):
        moved = repost(a) | repost(b)
        moved |= arrive(a, b) | arrive(b, a)
        moved |= send(a) | send(b)
        if not moved:
            return
    raise AssertionError("still moving after the step limit")


ACTIONS = st.lists(st.sampled_from(["sa", "sb", "aa", "ab", "ra", "rb"]), max_size=400)


@st.composite
def setups(draw: st.DrawFn) -> tuple[int, int | None]:
    depth = draw(st.integers(MIN_DEPTH, 12))
    batch = draw(st.one_of(st.none(), st.integers(2, depth - RESERVE)))
    return depth, batch


@settings(max_examples=300, deadline=None)
@given(
    setup=setups(),
    msgs=st.tuples(st.integers(0, 60), st.integers(0, 60)),
    actions=ACTIONS,
)
def test_random_interleavings_never_overrun_and_never_deadlock(
    setup: tuple[int, int | None], msgs: tuple[int, int], actions: list[str]
) -> None:
    depth, batch = setup
    a, b = pair(depth, msgs, batch)
    step = {
        "sa": lambda: send(a),
        "sb": lambda: send(b),
        "aa": lambda: arrive(a, b),
        "ab": lambda: arrive(b, a),
        "ra": lambda: repost(a),
        "rb": lambda: repost(b),
    }
    for name in actions:  # an adversarial schedule first (arrive asserts no overrun)...
        step[name]()
        for s, peer in ((a, b), (b, a)):
            in_flight = len(s.wire)
            assert s.credits.available + in_flight <= peer.posted
    run_fair(a, b)  # ...then a fair one: everything gets through
    assert (b.delivered, a.delivered) == msgs
    assert not a.to_send and not b.to_send


def test_one_way_traffic_returns_credits_in_updates() -> None:
    a, b = pair(8, (100, 0), batch=2)
    run_fair(a, b)
    assert b.delivered == 100
    assert b.credits.sent_updates > 0  # b sends no data: its credits go back on their own
    # a returns the buffers b's updates filled, on its data; an update of its own only when
    # a batch of them waits after its last message
    assert a.credits.sent_updates <= b.credits.sent_updates // 2 + 1


def test_two_way_traffic_piggybacks_credits() -> None:
    """Returned credits ride on data: with steady traffic both ways, few updates."""
    a, b = pair(16, (500, 500), batch=8)
    for _ in range(10_000):
        moved = send(a) | send(b) | arrive(a, b) | arrive(b, a) | repost(a) | repost(b)
        if not moved:
            break
    assert a.delivered == b.delivered == 500
    assert a.credits.sent_updates + b.credits.sent_updates < 100


def test_the_reserve_is_kept_for_updates() -> None:
    c = Credits(peer_posted=3, posted=8, batch=2)
    c.take()
    assert c.can_send
    c.take()
    assert not c.can_send and c.available == RESERVE
    with pytest.raises(RuntimeError):
        c.take()
    c.on_reposted()
    assert not c.update_due  # one waiting: less than a batch
    c.on_reposted()
    assert c.update_due
    assert c.take_update() == 2
    assert c.available == 0 and not c.update_due
    c.on_receive(returned=5)
    assert c.available == 5 and c.can_send


def test_returned_credits_are_capped_by_the_field() -> None:
    c = Credits(peer_posted=5, posted=100_000)
    c.on_reposted(70_000)
    assert c.take() == 0xFFFF
    assert c.unannounced == 70_000 - 0xFFFF


def test_depth_and_batch_are_checked() -> None:
    assert default_batch(3) == 2 and default_batch(64) == 16
    with pytest.raises(ValueError, match="at least 3"):
        Credits(2, 8)
    with pytest.raises(ValueError, match=r"batch must be 2\.\.7"):
        Credits(8, 8, batch=8)
    with pytest.raises(ValueError, match=r"batch must be 2\.\.7"):
        Credits(8, 8, batch=1)
