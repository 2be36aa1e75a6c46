"""The engine's SendStream (insane/engine/src/txstream.c) against its reference,
insane.protocol.reliability.SendStream: both fed the same schedules of operations (sends,
ACKs old, new and beyond, NACKs of kept, evicted and never-sent ranges, NACKs repeated within
the resend guard, time past max_age, a byte budget overflowing, TAILs, abandon, settings
changed on the way), every result and the whole visible state compared after each step; plus
the edge cases a user relies on, the node's wiring, and the core's fuzzer entry.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import random
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insane.engine import native
from insane.engine.node import NATIVE_PARTS, NativeLinks, NativeNode
from insane.protocol import reliability, wire
from insane.protocol.batching import OutQueue
from insane.protocol.reliability import Gap, SendStats, SendStream
from insane.protocol.reliable_links import ReliableLinks
from insane.qos.model import ReliabilityConfig

#: The reference's own simulation (tests/test_reliability.py), run with either sender.
test_reliability: Any = importlib.import_module("test_reliability")

engine = native()
CSendStream: Any = engine.SendStream
CSendStats: Any = engine.SendStats

#: What is compared after every step (the reference's attributes, private ones included).
STATE = (
    "next_seq", "acked", "kept", "full", "unacked", "max_bytes", "window", "resend_guard",
    "_kept_bytes", "_gap_reported", "_unreported", "_last_send", "_last_tail",
)


def count(d: bytes) -> int:
    return d[0] % 4 if d else 1


def datagram(size: int, first: int) -> bytes:
    return bytes((first + i) % 256 for i in range(size))


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except Exception as exc:
        return "raised", (type(exc), str(exc))


def assert_same(ref: Any, c: Any, now: float) -> None:
    for name in STATE:
        a, b = getattr(ref, name), getattr(c, name)
        assert (a, type(a)) == (b, type(b)), name
    assert c.stats == ref.stats and ref.stats == c.stats
    assert repr(c.stats) == repr(ref.stats)
    for probe in (now, now + 0.003, now + 1.0):
        assert c.tail_due(probe) == ref.tail_due(probe)
        assert c.next_timer(probe) == ref.next_timer(probe)


HUGE = st.sampled_from([2**63, 2**64 + 3, -(2**63) - 1, 2**70, -(2**70)])
DT = st.sampled_from([0.0, 0.0, 0.001, 0.004, 0.005, 0.01, 0.0101, 0.03, 0.2, 1.0, 11.0])
BASE = st.sampled_from(["zero", "acked", "next", "kept", "kept"])
RANGE = st.one_of(
    st.tuples(BASE, st.integers(-6, 6), st.integers(-2, 12)),
    st.tuples(st.just("abs"), HUGE | st.integers(-3, 3), HUGE | st.integers(0, 400)),
)

NACK = st.tuples(
    st.just("nack"), st.lists(RANGE, max_size=4), DT, st.booleans(), st.just(None)
)
NACK_TWICE = st.tuples(  # and again, within the resend guard or not
    st.just("nack"), st.lists(RANGE, min_size=1, max_size=3), DT, st.just(False),
    st.sampled_from([0.0, 0.002, 0.0099, 0.01, 0.02]),
)
BURST = st.tuples(st.just("burst"), st.integers(1, 25), st.integers(0, 120), st.integers(0, 255))
ACK = st.tuples(st.just("ack"), BASE, st.integers(-3, 8))

OPS = st.one_of(
    st.tuples(st.just("send"), st.integers(0, 300), st.integers(0, 255), DT),
    st.tuples(st.just("send"), st.integers(0, 40), st.integers(0, 255), st.just(0.0)),
    BURST,
    ACK,
    st.tuples(st.just("ack"), st.just("abs"), HUGE),
    NACK,
    NACK_TWICE,
    st.tuples(st.just("tail"), DT),
    st.tuples(st.just("time"), DT),
    st.tuples(st.just("abandon")),
    st.tuples(st.just("take")),
    st.tuples(
        st.just("set"),
        st.sampled_from(["max_bytes", "window"]),
        st.sampled_from([-1, 0, 1, 40, 300, 1000, 5000, 2**64]),
    ),
    st.tuples(
        st.just("set"),
        st.sampled_from(["resend_guard", "max_age"]),
        st.sampled_from([0, 1, 0.0, 0.005, 0.01, 0.05, 2e9, float("inf")]),
    ),
)

PARAMS = st.fixed_dictionaries(
    {
        "max_bytes": st.sampled_from([-1, 0, 1, 100, 600, 2000, 1 << 20, 1 << 20])
        | st.integers(0, 3000),
        "max_age": st.sampled_from([0.0, 0.005, 0.02, 0.1, 10.0, 10.0]),
        "tail_delay": st.sampled_from([0.0, 0.005, 0.01]),
        "tail_interval": st.sampled_from([0.0, 0.01, 0.05]),
        "window": st.sampled_from([0, 200, 1000, 4 << 20]) | st.integers(0, 3000),
    }
)


def where(base: str, off: int, s: Any) -> int:
    # ("kept": the first kept number, where every number sent was kept in order)
    first = s.next_seq - s.kept
    bases = {"zero": 0, "acked": s.acked, "next": s.next_seq, "kept": first, "abs": 0}
    return off + int(bases[base])


def step(op: tuple[Any, ...], s: Any, now: float) -> tuple[float, Callable[[], Any]]:
    """The time after ``op``, and the call that does it on stream ``s`` (computed from the
    reference's state, which the native one shares)."""
    kind = op[0]
    if kind == "send":
        _, size, first, dt = op
        now += dt
        d = datagram(size, first)

        def send(t: float = now) -> int:
            seq = s.number()
            s.sent(seq, d, t)
            return int(seq)

        return now, send
    if kind == "burst":  # many datagrams at once
        _, n, size, first = op

        def burst(t: float = now) -> list[int]:
            out = []
            for i in range(n):
                seq = s.number()
                s.sent(seq, datagram(size, first + i), t)
                out.append(int(seq))
            return out

        return now, burst
    if kind == "ack":
        ne = where(op[1], op[2], s) if op[1] != "abs" else op[2]
        return now, lambda: s.on_ack(ne)
    if kind == "nack":
        _, specs, dt, as_lists, again = op
        now += dt
        ranges = [
            (a, a + b) if base != "abs" else (a, b)
            for base, off, b in specs
            for a in [where(base, off, s) if base != "abs" else off]
        ]
        items = [list(r) for r in ranges] if as_lists else ranges
        if again is None:
            return now, lambda t=now: s.on_nack(iter(items), t)
        return now + again, lambda t=now: (s.on_nack(items, t), s.on_nack(items, t + again))
    if kind == "tail":
        now += op[1]
        return now, lambda t=now: s.tail(t) if s.tail_due(t) else None
    if kind == "time":
        now += op[1]
        return now, lambda t=now: s.evict_expired(t)
    if kind == "abandon":
        return now, s.abandon
    if kind == "take":
        return now, s.take_discarded
    _, name, value = op
    return now, lambda: setattr(s, name, value)


def run_both(params: dict[str, Any], ops: list[tuple[Any, ...]], counter: Any = count) -> None:
    ref = SendStream(**params, epoch=7, count_messages=counter)
    c = CSendStream(**params, epoch=7, count_messages=counter)
    now_r = now_c = 0.0
    for op in ops:
        now_r, fr = step(op, ref, now_r)
        now_c, fc = step(op, c, now_c)
        got_r, got_c = outcome(fr), outcome(fc)
        assert got_c == got_r, op
        if got_r[0] == "ok":
            assert type(got_c[1]) is type(got_r[1]), op
        assert_same(ref, c, now_r)


@settings(max_examples=400, deadline=None)
@given(PARAMS, st.lists(OPS, max_size=60))
def test_same_results_as_the_reference(params: dict[str, Any], ops: list[Any]) -> None:
    run_both(params, ops)


@settings(max_examples=150, deadline=None)
@given(
    st.fixed_dictionaries(
        {"max_bytes": st.sampled_from([3000, 1 << 20]), "window": st.sampled_from([500, 1 << 20])}
    ),
    st.lists(st.one_of(BURST, NACK, NACK_TWICE, ACK, st.tuples(st.just("time"), DT)), max_size=30),
)
def test_same_results_with_room_to_resend(params: dict[str, Any], ops: list[Any]) -> None:
    """A budget that keeps what is sent: NACKs are answered mostly with retransmissions."""
    run_both(params, ops)


@settings(max_examples=150, deadline=None)
@given(PARAMS, st.lists(OPS, max_size=60), st.integers(0, 4))
def test_same_results_past_the_detailed_discard_record(
    params: dict[str, Any], ops: list[Any], detail: int
) -> None:
    """Beyond ``_DISCARD_DETAIL`` evicted datagrams only their total is kept: GAP message
    counts become None where the reference's do (a small detail reaches that quickly)."""
    saved = reliability._DISCARD_DETAIL
    reliability._DISCARD_DETAIL = detail
    try:
        ref = SendStream(**params, epoch=7, count_messages=count)
        c = CSendStream(**params, epoch=7, count_messages=count)
        c._discard_detail = detail
        now_r = now_c = 0.0
        for op in ops:
            now_r, fr = step(op, ref, now_r)
            now_c, fc = step(op, c, now_c)
            assert outcome(fc) == outcome(fr), op
            assert_same(ref, c, now_r)
    finally:
        reliability._DISCARD_DETAIL = saved


@settings(max_examples=60, deadline=None)
@given(PARAMS, st.lists(OPS, max_size=40))
def test_default_count_and_the_count_calls_are_the_same(
    params: dict[str, Any], ops: list[Any]
) -> None:
    """Without count_messages each datagram counts one; with it, it is asked exactly for the
    datagrams evicted unacknowledged, in the same order."""
    run_both(params, ops, counter=None)
    calls: dict[str, list[bytes]] = {"ref": [], "c": []}

    def counter(who: str) -> Callable[[bytes], int]:
        def fn(d: bytes) -> int:
            assert type(d) is bytes
            calls[who].append(d)
            return count(d)

        return fn

    ref = SendStream(**params, epoch=1, count_messages=counter("ref"))
    c = CSendStream(**params, epoch=1, count_messages=counter("c"))
    now_r = now_c = 0.0
    for op in ops:
        now_r, fr = step(op, ref, now_r)
        now_c, fc = step(op, c, now_c)
        assert outcome(fc) == outcome(fr)
    assert calls["c"] == calls["ref"]


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([True, False]),
    st.integers(0, 10_000),
    st.sampled_from([0.0, 0.1, 0.3]),
    st.sampled_from([40, 400, 1 << 30]),
)
def test_a_lossy_network_runs_the_same(ordered: bool, seed: int, loss: float, budget: int) -> None:
    """tests/test_reliability.py's simulation (random loss, duplication, reordering, both
    ways) with either sender: the same deliveries, gaps and counters."""
    out = []
    for cls in (SendStream, CSendStream):
        saved = test_reliability.SendStream
        test_reliability.SendStream = cls
        try:
            got, gaps, tx, rx = test_reliability.run(
                300, ordered, seed, loss=loss, dup=0.05, jitter=0.003, max_bytes=budget
            )
        finally:
            test_reliability.SendStream = saved
        out.append((got, gaps, repr(tx.stats), tx.next_seq, tx.acked, tx.kept, rx.stats))
    assert out[0] == out[1]


# ------------------------------------------------------------------ edge cases, by hand


def test_epoch_is_drawn_like_the_reference() -> None:
    for epoch in (None, 0):
        random.seed(1234)
        a = SendStream(epoch=epoch).epoch
        random.seed(1234)
        b = CSendStream(epoch=epoch).epoch
        assert a == b and type(b) is int and b != 0
    assert CSendStream(epoch=99).epoch == 99


def test_constructor_defaults_and_settings() -> None:
    ref, c = SendStream(), CSendStream()
    for name in ("max_bytes", "window", "max_age", "tail_delay", "tail_interval",
                 "resend_guard", "next_seq", "acked"):
        assert getattr(c, name) == getattr(ref, name), name
    c = CSendStream(1000, 2.5, 0.1, 0.2, 500, epoch=5, count_messages=count)
    assert (c.max_bytes, c.max_age, c.tail_delay, c.tail_interval, c.window) == (
        1000, 2.5, 0.1, 0.2, 500
    )
    with pytest.raises(TypeError):
        CSendStream(1, 2, 3, 4, 5, 6)  # epoch is keyword-only
    c.resend_guard = 0.5
    c.next_seq = 40
    c.max_bytes = 2**80  # read back as given; past int64 it is as good as unbounded
    assert (c.resend_guard, c.number(), c.max_bytes) == (0.5, 40, 2**80)
    with pytest.raises(AttributeError):
        c.custom = 1  # no instance dict (faster method calls); a subclass has one
    sub = type("Sub", (CSendStream,), {})(epoch=1)
    sub.custom = 1
    assert sub.custom == 1 and sub.number() == 1


def test_keyword_arguments_and_their_errors() -> None:
    for cls in (SendStream, CSendStream):
        s: Any = cls(epoch=1)
        s.sent(seq=s.number(), datagram=b"ab", now=0.0)
        assert s.on_nack(now=0.5, ranges=[(1, 2)]) == ([b"ab"], [])
        assert s.on_ack(next_expected=2) is False
        assert s.tail_due(now=1.0) is False and s.next_timer(now=1.0) is None
        calls: list[tuple[str, tuple[Any, ...], dict[str, Any], str]] = [
            ("sent", (1, b""), {}, "missing 1 required positional argument: 'now'"),
            ("sent", (1, b"", 0.0, 4), {}, "takes 4 positional arguments but 5 were given"),
            ("on_ack", (2,), {"next_expected": 2},
             "got multiple values for argument 'next_expected'"),
            ("tail", (), {"when": 1}, "got an unexpected keyword argument 'when'"),
        ]
        for name, args, kwargs, message in calls:
            with pytest.raises(TypeError) as info:
                getattr(s, name)(*args, **kwargs)
            message = f"SendStream.{name}() {message}"
            assert str(info.value) == message, cls


def test_stats_are_a_live_view_equal_to_the_reference() -> None:
    c = CSendStream(epoch=1)
    st = c.stats
    c.sent(c.number(), b"x", 0.0)
    assert st.sent == 1 and st == SendStats(sent=1) and SendStats(sent=1) == st
    assert st != SendStats(sent=2) and st != CSendStats()
    assert repr(st) == repr(SendStats(sent=1))
    st.nacks = 5
    assert c.stats.nacks == 5
    c.stats = SendStats(gaps=3)
    assert c.stats == CSendStats(gaps=3) == SendStats(gaps=3)
    assert CSendStats(1, 2, 3) == SendStats(1, 2, 3)
    with pytest.raises(TypeError):
        hash(st)
    assert (st == 5) is False


def test_resend_guard_and_gaps_with_message_counts() -> None:
    for cls in (SendStream, CSendStream):
        s = cls(max_bytes=30, epoch=1, count_messages=count)
        for _ in range(5):
            s.sent(s.number(), datagram(10, 1), 0.0)  # 2 evicted: 1 message each
        again, gaps = s.on_nack([(1, 6)], 0.0)
        assert (len(again), gaps) == (3, [Gap(1, 3, 2)])
        assert s.on_nack([(1, 6)], 0.005) == ([], [Gap(1, 3, 2)])  # within the guard
        again, _ = s.on_nack([(4, 5)], 0.0101)
        assert again == [datagram(10, 1)]
        assert s.take_discarded() == 2 and s.take_discarded() == 0
        assert s.abandon() == 3  # the 3 kept: now discarded too, not reported yet
        assert s.on_nack([(9, 20)], 1.0) == ([], [])  # never sent


def test_errors_are_the_reference_s() -> None:
    cases: list[tuple[Any, type[Exception]]] = [
        (5, TypeError),
        ([(1, 2, 3)], ValueError),
        ([(1,)], ValueError),
        ([7], TypeError),
        ([(1.5, 3)], TypeError),
    ]
    for bad, exc in cases:
        results = []
        for cls in (SendStream, CSendStream):
            s = cls(epoch=1)
            for _ in range(3):
                s.sent(s.number(), b"abc", 0.0)
            with pytest.raises(exc) as info:
                s.on_nack(bad, 0.5)
            results.append((str(info.value), s.stats.nacks, s.stats.retransmitted))
        assert results[0][1:] == results[1][1:], bad
        if exc is ValueError:
            assert results[0][0] == results[1][0]
    # numbered, never sent: the reference's deque index fails, so does ours
    for cls in (SendStream, CSendStream):
        s = cls(epoch=1)
        s.sent(s.number(), b"a", 0.0)
        s.number()
        with pytest.raises(IndexError, match="deque index out of range"):
            s.on_nack([(1, 3)], 0.5)
        assert s.stats.retransmitted == 0


def test_a_failing_count_messages_leaves_the_same_state() -> None:
    def boom(d: bytes) -> int:
        if d[0] == 2:
            raise RuntimeError("boom")
        return 3

    states = []
    for cls in (SendStream, CSendStream):
        s = cls(max_bytes=10, epoch=1, count_messages=boom)
        s.sent(s.number(), bytes([1]) * 10, 0.0)
        s.sent(s.number(), bytes([2]) * 10, 0.0)  # evicts 1 (3 messages)
        with pytest.raises(RuntimeError, match="boom"):
            s.sent(s.number(), bytes([3]) * 10, 0.0)  # evicts 2: its count fails
        states.append((repr(s.stats), s.kept, s.abandon()))
    assert states[0] == states[1]
    c = CSendStream(max_bytes=0, epoch=1, count_messages=lambda d: -1)
    with pytest.raises(OverflowError):
        c.sent(c.number(), b"x", 0.0)


def test_count_messages_may_call_into_the_stream() -> None:
    """The evicted datagram is out of the stream when it is counted (as in the reference)."""
    seen = []
    for cls in (SendStream, CSendStream):
        box: list[Any] = []

        def fn(d: bytes, box: list[Any] = box) -> int:
            s = box[0]
            s.on_ack(s.next_seq)
            return int(s.kept) + len(d)

        s = cls(max_bytes=25, epoch=1, count_messages=fn)
        box.append(s)
        for i in range(6):
            s.sent(s.number(), bytes([i]) * 10, float(i))
        seen.append((repr(s.stats), s.kept, s.acked, s.abandon()))
    assert seen[0] == seen[1]


def test_kept_bytes_stay_within_the_budget() -> None:
    c = CSendStream(max_bytes=64 * 1400, epoch=1)
    for i in range(2000):
        c.sent(c.number(), bytes(1400), i * 1e-4)
        assert c._kept_bytes <= c.max_bytes
    assert c.kept == 64 and c.full
    assert c.on_ack(c.next_seq) is True and c.kept == 0 and not c.full


def test_cycles_through_the_stream_are_collected() -> None:
    sub = type("Sub", (CSendStream,), {})
    c = sub(epoch=1)
    c.me = c  # through a subclass instance's dict
    box: list[Any] = []
    c2 = CSendStream(epoch=1, count_messages=lambda d, b=box: b[0].kept)  # through the callable
    box.append(c2)
    c2.sent(c2.number(), b"x" * 100, 0.0)
    c3 = sub(epoch=1)
    c3.stats_seen = c3.stats  # through its own stats view
    refs = [weakref.ref(c), weakref.ref(c2), weakref.ref(c3)]
    del c, c2, c3, box
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
    c4 = CSendStream(epoch=1)
    view = c4.stats
    c4.sent(c4.number(), b"x", 0.0)
    del c4  # the view keeps its stream
    assert view.sent == 1


def test_the_native_node_uses_it() -> None:
    """NativeLinks builds the engine's streams, with the wire's message count: datagrams
    built by OutQueue, evicted unacknowledged, count their MSG frames as the reference's."""
    assert "txstream" in NATIVE_PARTS
    assert NativeNode.links_class is NativeLinks
    results = []
    for links in (ReliableLinks(ReliabilityConfig()), NativeLinks(ReliabilityConfig())):
        random.seed(99)  # the same epoch
        s = links.send_stream(5, reliability.ORDERED)
        assert links.send_stream(5, reliability.ORDERED) is s
        assert s.max_bytes == ReliabilityConfig().retransmit_bytes
        s.max_bytes = 1000
        q = OutQueue(wire.encode_header(1, 2), 300, stream=s, kind=reliability.ORDERED,
                     clock=lambda: 0.0)
        for i in range(40):
            q.add(wire.frame(wire.MSG, bytes([i]) * (10 + i)))
        sent = q.take()
        body = wire.nack_body(reliability.ORDERED, s.epoch, [(1, 5), (s.next_seq - 2, 99)])
        again, frames = links.on_nack(5, memoryview(body), 0.5)
        results.append((type(s), sent, again, frames, repr(s.stats), links.take_discarded()))
    assert results[0][0] is SendStream and results[1][0] is CSendStream
    assert results[0][1:] == results[1][1:]
    assert results[1][-1] and results[1][3]  # something was evicted, and announced


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_the_core_fuzz_entry_holds_its_invariants(data: bytes) -> None:
    lib = ctypes.CDLL(engine.__file__)
    fn = lib.txstream_fuzz_one
    fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    fn.restype = ctypes.c_int
    assert fn(data, len(data)) == 0
