"""The engine's ReceiveStream (insane/engine/src/rxstream.c) against its Python reference
(insane/protocol/reliability.py): the same schedules of datagrams (duplicated, reordered,
lost, far ahead), TAILs, GAPs (with and without counts, overlapping, inverted, out of range),
abandons and NACK timers fed to both, every result and the whole observable state compared
after each step; then a lossy network between a SendStream and the two; then the edge cases
a user relies on, and the documented differences (numbers past 64 bits)."""

from __future__ import annotations

import heapq
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insane.engine import native
from insane.engine.node import NATIVE_PARTS, NativeLinks
from insane.protocol import reliability
from insane.protocol.reliability import Gap, ReceiveStats, SendStream

C = native().ReceiveStream
P = reliability.ReceiveStream
TOP = 2**64 - 1  # the wire's highest number

# ------------------------------------------------------------------ the observable state


def state(r: Any, now: float) -> tuple[Any, ...]:
    s = r.stats
    return (
        r.ordered, r.next_expected, r.highest, r.held, r.missing(), r.next_timer(now),
        (s.received, s.duplicates, s.nacks, s.recovered, s.lost),
        r.nack_delay, r.nack_interval, r.max_held_bytes,
    )


def private(r: Any) -> tuple[Any, ...]:
    return r._held_bytes, r._gap_since, r._last_nack, r._backoff


def same(p: Any, c: Any, now: float) -> None:
    assert state(c, now) == state(p, now)
    assert private(c) == private(p)
    assert repr(c.stats) == repr(p.stats)
    assert c.stats == p.stats and p.stats == c.stats


def same_out(a: Any, b: Any) -> None:
    """Results equal, and of the same types (lists of bytes, tuples, Gap instances)."""
    assert a == b
    assert type(a) is type(b)
    if isinstance(a, (list, tuple)):
        for x, y in zip(a, b, strict=True):
            same_out(x, y)


# ------------------------------------------------------------------ schedules

# A number relative to where the reference stream is (resolved when the step runs).
numbers = st.one_of(
    st.tuples(st.just("abs"), st.integers(-3, 70)),
    st.tuples(st.just("ne"), st.integers(-3, 12)),
    st.tuples(st.just("hi"), st.integers(-6, 6)),
    st.tuples(st.just("far"), st.sampled_from([2**20, 2**32, 2**63, TOP - 3, TOP - 1, TOP])),
)
payloads = st.binary(max_size=6)
steps = st.one_of(
    st.tuples(st.just("data"), numbers, payloads),
    st.tuples(st.just("data"), numbers, payloads),
    st.tuples(st.just("data"), numbers, payloads),
    st.tuples(st.just("again"), st.integers(0, 30)),  # a datagram seen before, once more
    st.tuples(st.just("tail"), numbers),
    st.tuples(
        st.just("gap"), numbers, st.integers(-3, 12) | numbers,
        st.none() | st.sampled_from([0, 1, 7, 2**32 - 2]),
    ),
    st.tuples(st.just("nack")),
    st.tuples(st.just("nack")),
    st.tuples(st.just("abandon")),
    st.tuples(st.just("time"), st.sampled_from([0.0, 0.0005, 0.001, 0.002, 0.005, 0.02, 0.3, 7.0])),
)
configs = st.tuples(
    st.booleans(),
    st.sampled_from([(0.002, 0.02), (0.0, 0.0), (0.01, 0.001), (0.002, 0.5)]),
    st.sampled_from([32 * 1024 * 1024, 12, 3, 0, -1]),
)


def resolve(n: Any, r: Any) -> int:
    kind, v = n
    if kind == "abs":
        return int(v)
    if kind == "ne":
        return int(r.next_expected + v)
    if kind == "hi":
        return int(r.highest + v)
    return int(v)


def settles_too_much(p: Any, start: int, end: int) -> bool:
    """The reference marks every settled number one by one (a range ahead of a gap that
    stays): keep the schedules to what it can do in time."""
    cost = 0
    for a, b in p.missing():
        a, b = max(a, start), min(b, end)
        if b > a and a != p.next_expected:
            cost += b - a
    return cost > 5000


def run_schedule(config: Any, schedule: list[Any]) -> None:
    ordered, (delay, interval), max_held = config
    p = P(ordered, delay, interval, max_held)
    c = C(ordered, delay, interval, max_held)
    c_stats = c.stats  # a live view, as the reference's object: held across calls
    now = 0.0
    seen: list[tuple[int, bytes]] = []
    for step in schedule:
        op = step[0]
        if op in ("data", "again"):
            if op == "data":
                seq, d = resolve(step[1], p), step[2]
                if seq > TOP:
                    continue
                seen.append((seq, d))
            else:
                if not seen:
                    continue
                seq, d = seen[step[1] % len(seen)]
            same_out(c.on_data(seq, d, now), p.on_data(seq, d, now))
        elif op == "tail":
            last = resolve(step[1], p)
            if last > TOP:
                continue
            assert c.on_tail(last, now) is None
            p.on_tail(last, now)
        elif op == "gap":
            start = resolve(step[1], p)
            end = start + step[2] if isinstance(step[2], int) else resolve(step[2], p)
            if settles_too_much(p, start, end):
                continue
            same_out(c.on_gap(start, end, now, step[3]), p.on_gap(start, end, now, step[3]))
        elif op == "nack":
            same_out(c.nack_due(now), p.nack_due(now))
        elif op == "abandon":
            if settles_too_much(p, p.next_expected, p.highest + 1):
                continue
            same_out(c.abandon(now), p.abandon(now))
        else:
            now += step[1]
        same(p, c, now)
        assert c_stats == p.stats


@settings(max_examples=500, deadline=None)
@given(configs, st.lists(steps, max_size=60))
def test_the_same_schedules_give_the_same_results(config: Any, schedule: list[Any]) -> None:
    run_schedule(config, schedule)


# Long runs of reordering around a moving front, the ordered stream's hold the point.
window_steps = st.one_of(
    st.tuples(st.just("data"), st.tuples(st.just("ne"), st.integers(-2, 8)), payloads),
    st.tuples(st.just("data"), st.tuples(st.just("ne"), st.integers(0, 2)), payloads),
    st.tuples(st.just("again"), st.integers(0, 100)),
    st.tuples(st.just("tail"), st.tuples(st.just("hi"), st.integers(0, 4))),
    st.tuples(
        st.just("gap"), st.tuples(st.just("ne"), st.integers(-1, 6)), st.integers(-1, 5),
        st.none() | st.just(3),
    ),
    st.tuples(st.just("nack")),
    st.tuples(st.just("time"), st.sampled_from([0.0005, 0.002, 0.03])),
)


@settings(max_examples=100, deadline=None)
@given(configs, st.lists(window_steps, min_size=50, max_size=150))
def test_long_reordering_schedules(config: Any, schedule: list[Any]) -> None:
    run_schedule(config, schedule)


# ------------------------------------------------------------------ through a lossy network


@settings(max_examples=40, deadline=None)
@given(
    ordered=st.booleans(),
    seed=st.integers(0, 2**32),
    loss=st.sampled_from([0.0, 0.1, 0.3]),
    dup=st.sampled_from([0.0, 0.2]),
    jitter=st.sampled_from([0.0, 0.003]),
    max_bytes=st.sampled_from([1 << 30, 40]),
)
def test_a_lossy_network_gives_both_the_same(
    ordered: bool, seed: int, loss: float, dup: float, jitter: float, max_bytes: int
) -> None:
    """A SendStream, a network that loses, duplicates and reorders both ways, and the two
    receivers fed the same: the same deliveries, NACKs and gaps at every step."""
    rng = random.Random(seed)
    queue: list[tuple[float, int, tuple[Any, ...]]] = []
    n = 0

    def send(now: float, item: tuple[Any, ...]) -> None:
        nonlocal n
        if rng.random() < loss:
            return
        for _ in range(2 if rng.random() < dup else 1):
            n += 1
            heapq.heappush(queue, (now + 0.001 + rng.random() * jitter, n, item))

    tx = SendStream(max_bytes=max_bytes)
    p, c = P(ordered), C(ordered)
    now = 0.0
    for tick in range(1500):
        now = tick * 0.001
        if tick < 200:
            seq = tx.number()
            d = seq.to_bytes(4, "big")
            tx.sent(seq, d, now)
            send(now, ("data", seq, d))
        if tx.tail_due(now):
            send(now, ("tail", tx.tail(now)))
        while queue and queue[0][0] <= now:
            item = heapq.heappop(queue)[2]
            if item[0] == "data":
                same_out(c.on_data(item[1], item[2], now), p.on_data(item[1], item[2], now))
            elif item[0] == "tail":
                c.on_tail(item[1], now)
                p.on_tail(item[1], now)
                tx.on_ack(p.next_expected)
            elif item[0] == "gap":
                _, a, b, m = item
                same_out(c.on_gap(a, b, now, m), p.on_gap(a, b, now, m))
            elif item[0] == "nack":
                again, gaps = tx.on_nack(item[1], now)
                for d in again:
                    send(now, ("data", int.from_bytes(d, "big"), d))
                for g in gaps:
                    send(now, ("gap", g.start, g.end, g.messages))
        ranges = c.nack_due(now)
        assert ranges == p.nack_due(now)
        if ranges:
            send(now, ("nack", ranges))
        same(p, c, now)
        if tick > 200 and p.next_expected > 200:
            break
    same_out(c.abandon(now), p.abandon(now))
    same(p, c, now)


# ------------------------------------------------------------------ plain cases


def test_the_reference_examples() -> None:
    rx = C(ordered=False)
    assert rx.on_data(1, b"1", 0.0) == [b"1"]
    assert rx.on_data(3, b"3", 0.0) == [b"3"]
    assert rx.missing() == [(2, 3)]
    assert rx.nack_due(0.001) == []
    assert rx.nack_due(0.003) == [(2, 3)]
    assert rx.on_data(2, b"2", 0.004) == [b"2"]
    assert rx.on_data(3, b"3", 0.005) == []
    assert (rx.stats.recovered, rx.stats.duplicates, rx.next_expected) == (1, 1, 4)

    rx = C(ordered=True)
    assert rx.on_data(2, b"2", 0.0) == [] and rx.on_data(3, b"3", 0.0) == []
    assert rx.held == 2
    assert rx.on_data(1, b"1", 0.001) == [b"1", b"2", b"3"]
    assert rx.held == 0

    rx = C(ordered=True)
    rx.on_data(1, b"1", 0.0)
    rx.on_data(4, b"4", 0.0)
    rx.on_tail(6, 0.0)
    out, gaps = rx.abandon(1.0)
    assert out == [b"4"] and gaps == [Gap(2, 4), Gap(5, 7)]
    assert all(type(g) is Gap for g in gaps)
    assert rx.next_expected == 7


def test_the_arriving_datagram_is_handed_back_itself_and_held_ones_are_copies() -> None:
    rx = C(ordered=True)
    buf = bytearray(b"early")
    assert rx.on_data(2, buf, 0.0) == []
    buf[:] = b"XXXXX"  # the stream kept its own copy
    first = b"first"
    out = rx.on_data(1, first, 0.0)
    assert out[0] is first and out == [b"first", b"early"] and type(out[1]) is bytes
    u = C(ordered=False)
    m = memoryview(b"abc")
    assert u.on_data(5, m, 0.0)[0] is m


def test_a_gap_message_count_goes_to_the_whole_range_only() -> None:
    rx = C(ordered=True)
    rx.on_data(1, b"1", 0.0)
    rx.on_data(5, b"5", 0.0)
    out, gaps = rx.on_gap(2, 5, 0.1, 9)
    assert (out, gaps) == ([b"5"], [Gap(2, 5, 9)])
    rx.on_tail(10, 0.1)
    assert rx.on_gap(7, 20, 0.2, 4) == ([], [Gap(7, 11, None)])
    assert rx.missing() == [(6, 7)]
    # the settled numbers after it: empty datagrams (as the reference's _drain hands them)
    assert rx.on_data(6, b"6", 0.3) == [b"6", b"", b"", b"", b""]
    assert rx.next_expected == 11 and rx.stats.lost == 7


def test_an_ordered_stream_holds_within_its_byte_budget() -> None:
    rx = C(ordered=True, max_held_bytes=10)
    assert rx.on_data(2, b"x" * 6, 0.0) == []
    assert rx.on_data(3, b"y" * 6, 0.0) == []  # over the budget: forgotten
    assert (rx.held, rx._held_bytes, rx.stats.received, rx.highest) == (1, 6, 1, 3)
    assert rx.missing() == [(1, 2), (3, 4)]
    assert rx.on_data(1, b"1", 0.0) == [b"1", b"x" * 6]


def test_nack_backoff_doubles_up_to_the_maximum() -> None:
    asked: dict[type, list[float]] = {}
    for cls in (P, C):
        rx = cls(ordered=True, nack_delay=0.002, nack_interval=0.02)
        rx.on_data(2, b"2", 0.0)
        asked[cls] = []
        for ms in range(3000):
            if rx.nack_due(ms / 1000):
                asked[cls].append(ms / 1000)
        assert rx._backoff == reliability._MAX_BACKOFF
        assert rx.next_timer(3.0) == rx._last_nack + reliability._MAX_BACKOFF
        rx.on_data(1, b"1", 3.0)
        assert rx.next_timer(3.0) is None and rx._backoff == 0.02
    assert asked[C] == asked[P]
    times = asked[C]
    assert times[0] == 0.002 and 0.019 < times[1] - times[0] < 0.022
    assert 0.19 < times[-1] - times[-2] < 0.202


def test_far_numbers_and_huge_ranges() -> None:
    """A TAIL at the wire's last number, a GAP far ahead of a gap that stays: the stream keeps
    ranges (the reference marks each number, which it cannot do in time for these), and
    next_expected may reach 2**64."""
    rx = C(ordered=True)
    rx.on_data(1, b"1", 0.0)
    rx.on_data(2**40, b"far", 0.0)
    rx.on_tail(TOP, 0.0)
    assert rx.missing() == [(2, 2**40), (2**40 + 1, 2**64)]
    out, gaps = rx.on_gap(10, 2**64, 0.1, 3)
    assert out == [] and gaps == [Gap(10, 2**40), Gap(2**40 + 1, 2**64, None)]
    assert rx.missing() == [(2, 10)]
    assert rx.held == 1
    out, gaps = rx.on_gap(2, 10, 0.2)
    assert out == [b"far"] and gaps == [Gap(2, 10)]
    assert rx.next_expected == 2**64 and rx.highest == TOP and rx.held == 0
    assert rx.stats.lost == 2**64 - 3
    assert rx.on_data(TOP, b"late", 0.3) == [] and rx.stats.duplicates == 1
    assert rx.abandon(0.4) == ([], []) and rx.next_timer(0.4) is None

    u = C(ordered=False)
    u.on_tail(TOP, 0.0)
    assert u.abandon(0.0) == ([], [Gap(1, 2**64)]) and u.stats.lost == TOP
    u.stats.lost = -(2**70)
    assert u.stats.lost == -(2**70)


def test_drained_settled_numbers_are_empty_datagrams_in_an_ordered_stream() -> None:
    """(the reference's _drain hands over a settled number as b"", _drain_settled skips it)"""
    for cls in (P, C):
        rx = cls(ordered=True)
        rx.on_data(4, b"4", 0.0)
        assert rx.on_gap(2, 4, 0.0, 1) == ([], [Gap(2, 4, 1)])
        assert rx.on_data(1, b"1", 0.0) == [b"1", b"", b"", b"4"]


def test_stats_are_a_live_view_that_outlives_its_stream() -> None:
    rx = C(ordered=False)
    s = rx.stats
    assert s is rx.stats
    rx.on_data(1, b"", 0.0)
    rx.on_data(1, b"", 0.0)
    assert (s.received, s.duplicates) == (2, 1)
    assert s == ReceiveStats(received=2, duplicates=1)
    assert str(s) == "ReceiveStats(received=2, duplicates=1, nacks=0, recovered=0, lost=0)"
    s.received = 10
    assert rx.stats.received == 10
    del rx
    assert s.received == 10 and s.duplicates == 1
    with pytest.raises(TypeError):
        hash(s)


def test_numbers_past_64_bits_are_refused() -> None:
    """The wire's numbers are 64-bit; the reference (Python ints) takes any: a documented
    difference. Below 1 and in GAPs any int gives the reference's result."""
    rx = C(ordered=True)
    with pytest.raises(OverflowError):
        rx.on_data(2**64, b"x", 0.0)
    with pytest.raises(OverflowError):
        rx.on_tail(2**64, 0.0)
    assert rx.stats.received == 0 and rx.highest == 0
    for cls in (P, C):
        r = cls(ordered=True)
        assert r.on_data(-(2**70), b"x", 0.0) == [] and r.stats.duplicates == 1
        r.on_data(5, b"5", 0.0)
        assert r.on_gap(-(2**70), 3, 0.0) == ([], [Gap(1, 3)])
        assert r.on_gap(2**65, 2**66, 0.0) == ([], [])
        assert r.on_gap(4, 2**80, 0.0, 2) == ([], [Gap(4, 5)])
        r = cls(ordered=False)
        r.on_data(10, b"10", 0.0)
        # start >= end inside a missing range: the reference's inverted Gap, a negative count
        assert r.on_gap(5, 3, 0.0, 6) == ([], [Gap(5, 3, 6)]) and r.stats.lost == -2
        assert r.on_gap(9, 9, 0.0) == ([], [Gap(9, 9)]) and r.missing() == [(1, 10)]


def test_constructor_and_attributes() -> None:
    rx = C(True, 0.5, 1.5, max_held_bytes=7)
    assert (rx.ordered, rx.nack_delay, rx.nack_interval, rx.max_held_bytes) == (True, 0.5, 1.5, 7)
    assert (rx.next_expected, rx.highest, rx.held, rx.missing()) == (1, 0, 0, [])
    assert rx.next_timer(0.0) is None and rx._backoff == 1.5
    rx.nack_delay, rx.nack_interval, rx.max_held_bytes = 0.1, 0.2, 3
    assert (rx.nack_delay, rx.nack_interval, rx.max_held_bytes) == (0.1, 0.2, 3)
    assert rx.stats == C(False).stats and rx.stats != ReceiveStats(lost=1)
    assert rx.stats != (0, 0, 0, 0, 0)
    rx.stats.lost = 5
    rx.stats.nacks = 2
    assert (rx.stats.lost, rx.stats.nacks) == (5, 2)
    rx.on_data(2, b"x", 0.0)
    rx.__init__(False)  # a fresh stream again, the same stats object
    assert (rx.ordered, rx.highest, rx.stats.lost, rx.nack_interval) == (False, 0, 0, 0.02)
    with pytest.raises(AttributeError):
        rx.next_expected = 5
    with pytest.raises(TypeError):
        C()
    with pytest.raises(TypeError):
        rx.on_data(1, b"x")
    assert rx.on_data(seq=1, datagram=b"x", now=0.0) == [b"x"]
    assert rx.on_gap(1, 2, now=0.0, messages=3) == ([], [])


def test_the_native_links_use_it() -> None:
    assert "rxstream" in NATIVE_PARTS
    assert NativeLinks.receive_stream_class is C
