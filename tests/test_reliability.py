"""The sans-IO reliable stream (insane/protocol/reliability.py), driven through a simulated
network with random loss, duplication, reordering and delay, in both directions."""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from insane.protocol.reliability import Gap, ReceiveStream, SendStream


@dataclass
class Net:
    """A one-way lossy link: what goes in comes out later, maybe twice, maybe never."""

    rng: random.Random
    loss: float
    dup: float
    jitter: float
    delay: float = 0.001
    queue: list[tuple[float, int, object]] = field(default_factory=list)
    n: int = 0

    def send(self, now: float, item: object) -> None:
        if self.rng.random() < self.loss:
            return
        copies = 2 if self.rng.random() < self.dup else 1
        for _ in range(copies):
            self.n += 1
            at = now + self.delay + self.rng.random() * self.jitter
            heapq.heappush(self.queue, (at, self.n, item))

    def due(self, now: float) -> list[object]:
        out = []
        while self.queue and self.queue[0][0] <= now:
            out.append(heapq.heappop(self.queue)[2])
        return out


def run(
    count: int,
    ordered: bool,
    seed: int,
    loss: float,
    dup: float,
    jitter: float,
    max_bytes: int = 1 << 30,
    heal_after: float | None = None,
) -> tuple[list[int], list[Gap], SendStream, ReceiveStream]:
    rng = random.Random(seed)
    fwd = Net(rng, loss, dup, jitter)
    back = Net(rng, loss, dup, jitter)
    tx = SendStream(max_bytes=max_bytes)
    rx = ReceiveStream(ordered)
    got: list[int] = []
    gaps: list[Gap] = []
    now = 0.0
    sent = 0
    while now < 30.0:
        if heal_after is not None and now >= heal_after:
            fwd.loss = back.loss = 0.0
        # The publisher sends a few datagrams each millisecond.
        for _ in range(3):
            if sent < count:
                seq = tx.number()
                d = seq.to_bytes(4, "big")
                tx.sent(seq, d, now)
                fwd.send(now, ("data", seq, d))
                sent += 1
        if tx.tail_due(now):
            fwd.send(now, ("tail", tx.tail(now)))
        for item in fwd.due(now):
            kind = item[0]  # type: ignore[index]
            if kind == "data":
                _, seq, d = item  # type: ignore[misc]
                got += [int.from_bytes(x, "big") for x in rx.on_data(seq, d, now)]
            elif kind == "tail":
                rx.on_tail(item[1], now)  # type: ignore[index]
                back.send(now, ("ack", rx.next_expected))
            elif kind == "gap":
                _, a, b = item  # type: ignore[misc]
                out, g = rx.on_gap(a, b, now)
                got += [int.from_bytes(x, "big") for x in out]
                gaps += g
        ranges = rx.nack_due(now)
        if ranges:
            back.send(now, ("nack", ranges))
        if int(now * 1000) % 10 == 0:
            back.send(now, ("ack", rx.next_expected))
        for item in back.due(now):
            if item[0] == "ack":  # type: ignore[index]
                tx.on_ack(item[1])  # type: ignore[index]
            else:
                again, lost = tx.on_nack(item[1], now)  # type: ignore[index]
                for d in again:
                    fwd.send(now, ("data", int.from_bytes(d, "big"), d))
                for g in lost:
                    fwd.send(now, ("gap", g.start, g.end))
        if sent == count and rx.next_expected > count:
            break
        now += 0.001
    return got, gaps, tx, rx


@settings(max_examples=200, deadline=None)
@given(
    count=st.integers(1, 300),
    ordered=st.booleans(),
    seed=st.integers(0, 2**32),
    loss=st.sampled_from([0.0, 0.01, 0.1, 0.3]),
    dup=st.sampled_from([0.0, 0.05, 0.2]),
    jitter=st.sampled_from([0.0, 0.0005, 0.003]),
)
def test_every_datagram_arrives_exactly_once_and_in_order_when_ordered(
    count: int, ordered: bool, seed: int, loss: float, dup: float, jitter: float
) -> None:
    got, gaps, _tx, rx = run(count, ordered, seed, loss, dup, jitter)
    assert gaps == []
    if ordered:
        assert got == list(range(1, count + 1))
    else:
        assert sorted(got) == list(range(1, count + 1))
    assert rx.next_expected == count + 1


def test_reliable_alone_hands_over_at_once_and_fills_gaps_later() -> None:
    rx = ReceiveStream(ordered=False)
    assert rx.on_data(1, b"1", 0.0) == [b"1"]
    assert rx.on_data(3, b"3", 0.0) == [b"3"]  # at once, although 2 is missing
    assert rx.missing() == [(2, 3)]
    assert rx.nack_due(0.001) == []  # reordering is not loss: wait nack_delay first
    assert rx.nack_due(0.003) == [(2, 3)]
    assert rx.on_data(2, b"2", 0.004) == [b"2"]
    assert rx.on_data(3, b"3", 0.005) == []  # a duplicate
    assert (rx.stats.recovered, rx.stats.duplicates, rx.next_expected) == (1, 1, 4)


def test_ordered_holds_early_datagrams_until_the_gap_is_filled() -> None:
    rx = ReceiveStream(ordered=True)
    assert rx.on_data(2, b"2", 0.0) == []
    assert rx.on_data(3, b"3", 0.0) == []
    assert rx.held == 2
    assert rx.on_data(1, b"1", 0.001) == [b"1", b"2", b"3"]
    assert rx.held == 0


def test_tail_reveals_loss_of_the_last_datagrams() -> None:
    tx = SendStream(tail_delay=0.005)
    rx = ReceiveStream(ordered=True)
    for seq in (tx.number(), tx.number(), tx.number()):
        tx.sent(seq, bytes([seq]), 0.0)
    assert rx.on_data(1, b"\x01", 0.0) == [b"\x01"]  # 2 and 3 are lost on the way
    assert not tx.tail_due(0.001)
    assert tx.tail_due(0.006)
    rx.on_tail(tx.tail(0.006), 0.006)
    assert rx.nack_due(0.009) == [(2, 4)]
    again, gaps = tx.on_nack([(2, 4)], 0.009)
    assert (again, gaps) == ([b"\x02", b"\x03"], [])


def test_evicted_datagrams_become_gaps_and_the_rest_still_flows() -> None:
    """A retransmit buffer too small to cover the losses: the receiver learns exactly which
    datagrams are gone (never silent loss) and gets every other one, in order."""
    got, gaps, tx, rx = run(400, True, seed=7, loss=0.2, dup=0.0, jitter=0.0, max_bytes=40)
    lost = sorted(seq for g in gaps for seq in range(g.start, g.end))
    assert lost  # the buffer (10 datagrams of 4 bytes) could not cover a 20% loss
    assert sorted(got + lost) == list(range(1, 401))
    assert got == sorted(got)
    assert rx.stats.lost == len(lost) <= tx.stats.gaps  # (a GAP may be announced twice)


def test_a_gone_sender_turns_every_gap_into_a_gap_event() -> None:
    rx = ReceiveStream(ordered=True)
    rx.on_data(1, b"1", 0.0)
    rx.on_data(4, b"4", 0.0)
    rx.on_tail(6, 0.0)
    out, gaps = rx.abandon(1.0)
    assert out == [b"4"]
    assert gaps == [Gap(2, 4), Gap(5, 7)]
    assert rx.next_expected == 7


def test_acknowledged_datagrams_are_released() -> None:
    tx = SendStream()
    for _ in range(10):
        seq = tx.number()
        tx.sent(seq, b"x" * 100, 0.0)
    tx.on_ack(8)
    assert tx.kept == 3
    assert tx.unacked
    tx.on_ack(11)
    assert tx.kept == 0 and not tx.unacked
    assert tx.on_nack([(1, 5)], 0.1) == ([], [])  # all acknowledged: nothing to do
