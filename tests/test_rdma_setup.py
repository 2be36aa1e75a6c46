"""RDMA connection set-up over the control plane (insane/control/rdma_setup.py): the codec,
and the exchange under loss, duplication, reordering, simultaneous offers and refusals."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insane.control import rdma_setup
from insane.control.rdma_setup import (
    ANSWER,
    REFUSE,
    Connect,
    Endpoint,
    EndpointWanted,
    Failed,
    PeerReady,
    RdmaSetup,
)
from insane.protocol import wire
from insane.protocol.validate import decode_body

A_ID, B_ID = 0xA, 0xB
A_ADDR, B_ADDR = ("10.0.0.1", 5000), ("10.0.0.2", 5000)


def ep(qpn: int, **kw: object) -> Endpoint:
    fields: dict[str, object] = {
        "qpn": qpn,
        "psn": 0x123456,
        "lid": 0,
        "gid": bytes(10) + b"\xff\xff" + bytes((10, 0, 0, qpn & 0xFF)),
        "mtu": 1024,
        "credits": 64,
        "buffer": 65536,
    }
    fields.update(kw)
    return Endpoint(**fields)  # type: ignore[arg-type]


endpoints = st.builds(
    Endpoint,
    qpn=st.integers(1, (1 << 24) - 1),
    psn=st.integers(0, (1 << 24) - 1),
    lid=st.integers(0, 0xFFFF),
    gid=st.binary(min_size=16, max_size=16),
    mtu=st.sampled_from(rdma_setup.MTUS),
    credits=st.integers(3, 0xFFFF),
    buffer=st.integers(rdma_setup.MIN_BUFFER, rdma_setup.MAX_BUFFER),
)


# ---------------------------------------------------------------------------------------------
# Codec


@given(endpoints, st.sampled_from([0, ANSWER]), st.integers(0, 2**64 - 1))
def test_round_trip(e: Endpoint, flags: int, to: int) -> None:
    body = rdma_setup.encode(flags, to, e)
    assert len(body) == rdma_setup.BODY_SIZE
    assert rdma_setup.decode(body) == (flags, to, e, "")
    decode_body(wire.RDMA_SETUP, body, 0, len(body))  # the generic decoder knows it


def test_refuse_carries_a_reason_and_no_endpoint() -> None:
    body = rdma_setup.encode(REFUSE, 7, None, "no RDMA device (ibv_devices lists none)")
    assert rdma_setup.decode(body) == (REFUSE, 7, None, "no RDMA device (ibv_devices lists none)")
    long = rdma_setup.encode(REFUSE, 7, None, "x" * 1000)
    assert rdma_setup.decode(long)[3] == "x" * rdma_setup.MAX_REASON


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "truncated"),
        (rdma_setup.encode(0, 1, ep(5))[:-1], "truncated"),
        (b"\x80" + rdma_setup.encode(0, 1, ep(5))[1:], "malformed"),  # unknown flag
        (rdma_setup.encode(0, 1, ep(5)) + b"junk", "malformed"),  # trailing bytes
        (rdma_setup.encode(REFUSE, 1, None, "") + b"x" * 300, "malformed"),  # long reason
    ],
)
def test_malformed(body: bytes, reason: str) -> None:
    with pytest.raises(wire.WireError) as e:
        rdma_setup.decode(body)
    assert e.value.reason == reason


@pytest.mark.parametrize(
    ("field", "offset", "value"),
    [
        ("qpn 0", 9, b"\x00\x00\x00\x00"),
        ("qpn > 24 bits", 9, b"\x01\x00\x00\x00"),
        ("mtu 1500", 19, b"\x05\xdc"),
        ("2 credits", 37, b"\x00\x02"),
        ("buffer 10", 39, b"\x00\x00\x00\x0a"),
    ],
)
def test_bad_values_are_malformed(field: str, offset: int, value: bytes) -> None:
    good = bytearray(rdma_setup.encode(0, 1, ep(5)))
    good[offset : offset + len(value)] = value
    with pytest.raises(wire.WireError) as e:
        rdma_setup.decode(bytes(good))
    assert e.value.reason == "malformed", field


@settings(max_examples=1000)
@given(st.binary(max_size=120))
def test_garbage_raises_only_wire_error(data: bytes) -> None:
    try:
        rdma_setup.decode(data)
    except wire.WireError:
        pass


# ---------------------------------------------------------------------------------------------
# The exchange


class Net:
    """Two set-up machines and the frames between them, with loss, duplication and reordering
    drawn from ``rng``; each machine's caller makes a queue pair when asked."""

    def __init__(self, rng: random.Random, loss: float = 0.0, dup: float = 0.0) -> None:
        self.rng = rng
        self.loss = loss
        self.dup = dup
        self.m = {A_ID: RdmaSetup(A_ID), B_ID: RdmaSetup(B_ID)}
        self.local = {A_ID: ep(0xA1), B_ID: ep(0xB1)}
        self.addr = {A_ID: A_ADDR, B_ID: B_ADDR}
        self.flight: list[tuple[int, int, bytes]] = []  # (to, from, body)
        self.connected: dict[int, list[Endpoint]] = {A_ID: [], B_ID: []}
        self.failed: dict[int, list[str]] = {A_ID: [], B_ID: []}
        self.ready: dict[int, int] = {A_ID: 0, B_ID: 0}

    def other(self, me: int) -> int:
        return B_ID if me == A_ID else A_ID

    def collect(self) -> None:
        for me, m in self.m.items():
            for _addr, ftype, body in m.take_outgoing():
                assert ftype == wire.RDMA_SETUP
                copies = 0 if self.rng.random() < self.loss else 1
                copies += self.rng.random() < self.dup
                self.flight += [(self.other(me), me, body)] * copies
            for ev in m.take_events():
                if isinstance(ev, EndpointWanted):
                    assert ev.remote == self.local[ev.peer_id]
                    self.connected[me].append(ev.remote)
                    m.accept(ev.peer_id, self.local[me])
                elif isinstance(ev, Connect):
                    self.connected[me].append(ev.remote)
                elif isinstance(ev, PeerReady):
                    assert self.connected[me], "ready before connected"
                    assert self.m[self.other(me)].connected(me), "the peer is not connected"
                    self.ready[me] += 1
                else:
                    assert isinstance(ev, Failed)
                    self.failed[me].append(ev.reason)

    def run(self, until: float, now: float = 0.0, step: float = 0.01) -> float:
        while now < until:
            self.collect()
            self.rng.shuffle(self.flight)
            flight, self.flight = self.flight, []
            for to, sender, body in flight:
                self.m[to].on_frame(sender, self.addr[sender], body, now)
            for m in self.m.values():
                m.tick(now)
            now += step
        self.collect()
        return now


def test_simultaneous_offers_connect_both_sides_once() -> None:
    net = Net(random.Random(1))
    for me in (A_ID, B_ID):
        net.m[me].offer(net.other(me), net.addr[net.other(me)], net.local[me], 0.0)
    net.run(1.0)
    assert net.connected == {A_ID: [net.local[B_ID]], B_ID: [net.local[A_ID]]}
    assert net.m[A_ID].connected(B_ID) and net.m[B_ID].connected(A_ID)
    assert net.m[A_ID].next_deadline() is None  # answered: nothing more to send
    assert net.ready == {A_ID: 1, B_ID: 1}  # both got answers: both may send at once


def test_an_offer_to_a_side_without_a_queue_pair_asks_for_one() -> None:
    net = Net(random.Random(2))
    net.m[A_ID].offer(B_ID, B_ADDR, net.local[A_ID], 0.0)
    net.run(1.0)
    assert net.connected == {A_ID: [net.local[B_ID]], B_ID: [net.local[A_ID]]}
    # the offerer may send at once; the answerer waits for its first message
    assert net.ready == {A_ID: 1, B_ID: 0}


def test_lost_frames_are_offered_again() -> None:
    net = Net(random.Random(3))
    a = net.m[A_ID]
    a.offer(B_ID, B_ADDR, net.local[A_ID], 0.0)
    assert len(a.take_outgoing()) == 1  # lost
    a.tick(0.05)
    assert a.take_outgoing() == []  # not yet
    assert a.next_deadline() == pytest.approx(0.1)
    a.tick(0.1)
    again = a.take_outgoing()
    assert len(again) == 1 and rdma_setup.decode(again[0][2])[2] == net.local[A_ID]


def test_repeated_offers_are_answered_every_time_but_connect_once() -> None:
    b = RdmaSetup(B_ID)
    offer = rdma_setup.encode(0, B_ID, ep(0xA1))
    b.on_frame(A_ID, A_ADDR, offer, 0.0)
    (wanted,) = b.take_events()
    assert isinstance(wanted, EndpointWanted)
    b.accept(A_ID, ep(0xB1))
    assert len(b.take_outgoing()) == 1
    b.on_frame(A_ID, A_ADDR, offer, 0.2)  # our answer was lost: they ask again
    (answer,) = b.take_outgoing()
    assert rdma_setup.decode(answer[2]) == (ANSWER, A_ID, ep(0xB1), "")
    assert b.take_events() == []


def test_no_answer_fails_after_the_timeout() -> None:
    net = Net(random.Random(4), loss=1.0)
    net.m[A_ID].offer(B_ID, B_ADDR, net.local[A_ID], 0.0)
    net.run(4.0)
    assert net.failed[A_ID] == ["no answer to the RDMA set-up within 3 s"]
    assert not net.m[A_ID].connected(B_ID)


def test_a_refusal_fails_the_offerer_with_its_reason() -> None:
    a, b = RdmaSetup(A_ID), RdmaSetup(B_ID)
    a.offer(B_ID, B_ADDR, ep(0xA1), 0.0)
    (_addr, _t, offer), = a.take_outgoing()
    b.on_frame(A_ID, A_ADDR, offer, 0.0)
    assert isinstance(b.take_events()[0], EndpointWanted)
    b.refuse(A_ID, A_ADDR, "cannot create a queue pair: out of memory")
    (_addr, _t, refusal), = b.take_outgoing()
    a.on_frame(B_ID, B_ADDR, refusal, 0.01)
    assert a.take_events() == [
        Failed(B_ID, "the peer refused: cannot create a queue pair: out of memory")
    ]
    a.tick(5.0)
    assert a.take_outgoing() == [] and a.take_events() == []  # given up: no more offers


def test_frames_for_another_session_or_a_second_queue_pair_are_refused() -> None:
    b = RdmaSetup(B_ID)
    with pytest.raises(wire.WireError) as e:
        b.on_frame(A_ID, A_ADDR, rdma_setup.encode(0, 0xDEAD, ep(0xA1)), 0.0)
    assert e.value.reason == "misaddressed"
    b.on_frame(A_ID, A_ADDR, rdma_setup.encode(0, B_ID, ep(0xA1)), 0.0)
    with pytest.raises(wire.WireError) as e:
        b.on_frame(A_ID, A_ADDR, rdma_setup.encode(0, B_ID, ep(0xA2)), 0.1)
    assert e.value.reason == "rdma_setup_conflict"


def test_a_failed_link_stays_failed_and_forget_clears_it() -> None:
    a = RdmaSetup(A_ID)
    a.offer(B_ID, B_ADDR, ep(0xA1), 0.0)
    a.take_outgoing()
    a.fail(B_ID, "queue pair error: retry count exceeded")
    assert a.take_events() == [Failed(B_ID, "queue pair error: retry count exceeded")]
    (_addr, _t, told), = a.take_outgoing()  # the peer learns it at once
    assert rdma_setup.decode(told) == (REFUSE, B_ID, None, "queue pair error: retry count exceeded")
    a.on_frame(B_ID, B_ADDR, rdma_setup.encode(ANSWER, A_ID, ep(0xB1)), 0.1)
    assert a.take_events() == [] and not a.connected(B_ID)
    a.forget(B_ID)
    assert not a.knows(B_ID)


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    loss=st.floats(0, 0.6),
    dup=st.floats(0, 0.5),
    starts=st.sampled_from(["a", "b", "both"]),
)
def test_under_loss_duplication_and_reordering_both_sides_agree(
    seed: int, loss: float, dup: float, starts: str
) -> None:
    net = Net(random.Random(seed), loss, dup)
    if starts in ("a", "both"):
        net.m[A_ID].offer(B_ID, B_ADDR, net.local[A_ID], 0.0)
    if starts in ("b", "both"):
        net.m[B_ID].offer(A_ID, A_ADDR, net.local[B_ID], 0.0)
    net.run(4.0)
    for me in (A_ID, B_ID):
        # at most one connection each, always to the other side's real queue pair
        assert net.connected[me] in ([], [net.local[net.other(me)]])
    offered = {"a": [A_ID], "b": [B_ID], "both": [A_ID, B_ID]}[starts]
    for me in offered:  # an offerer that did not connect has said so
        if not net.connected[me]:
            assert net.failed[me]
    if net.connected[A_ID] and net.connected[B_ID]:
        assert not net.failed[A_ID] and not net.failed[B_ID]
    assert net.ready[A_ID] <= 1 and net.ready[B_ID] <= 1  # (and only when both connected)
    if loss == 0:
        assert not net.failed[A_ID] and not net.failed[B_ID]
        assert net.connected[A_ID] and net.connected[B_ID]
