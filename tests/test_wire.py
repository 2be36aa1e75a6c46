"""The wire codec: round-trips, and garbage in never escapes as anything but WireError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insane.protocol import wire
from insane.protocol.fragments import Fragmenter, Reassembler
from insane.protocol.validate import decode_body

text = st.text(min_size=1, max_size=40).filter(lambda s: len(s.encode()) < 200)
headers = st.none() | st.dictionaries(text, st.text(max_size=40), min_size=1, max_size=5)


@given(
    subject=text,
    reply=st.text(max_size=40),
    hdrs=headers,
    queues=st.lists(
        st.text(min_size=1, max_size=20).filter(lambda q: len(q.encode()) < 256), max_size=3
    ),
    payload=st.binary(max_size=2000),
)
def test_msg_round_trip(
    subject: str, reply: str, hdrs: dict[str, str] | None, queues: list[str], payload: bytes
) -> None:
    body = wire.encode_msg_body(
        subject.encode(),
        reply.encode(),
        wire.encode_headers(hdrs),
        tuple(q.encode() for q in queues),
        payload,
    )
    m = wire.decode_msg(body)
    assert (m.subject, m.reply, m.headers, m.queues, m.payload) == (
        subject,
        reply,
        hdrs,
        tuple(queues),
        payload,
    )


@given(
    st.integers(0, 2**32 - 1),
    st.lists(st.tuples(st.integers(0, 2**32 - 1), text, st.text(max_size=10)), max_size=20),
)
def test_interest_round_trip(version: int, entries: list[tuple[int, str, str]]) -> None:
    es = [wire.InterestEntry(*e) for e in entries]
    assert wire.decode_interest(wire.encode_interest_body(version, es)) == (version, es)


def test_datagram_round_trip_with_several_frames() -> None:
    header = wire.encode_header(7, 0xDEADBEEF)
    frames = [
        wire.frame(wire.MSG, wire.encode_msg_body(b"a.b", b"", b"", (), bytes([i]) * i))
        for i in range(50)
    ]
    datagrams = wire.pack_datagrams(header, frames, 600)
    assert len(datagrams) > 1
    assert all(len(d) <= 600 for d in datagrams)
    seen = []
    for d in datagrams:
        h = wire.decode_header(d)
        assert (h.domain, h.sender) == (7, 0xDEADBEEF)
        for ftype, _flags, body in wire.iter_frames(d):
            assert ftype == wire.MSG
            seen.append(wire.decode_msg(body).payload)
    assert seen == [bytes([i]) * i for i in range(50)]


def test_heartbeat_and_announce_round_trip() -> None:
    assert wire.decode_heartbeat(memoryview(wire.heartbeat_body(3, 4, 5, 6))) == (3, 4, 5, 6)
    info = {"name": "x", "transports": ["udp"]}
    assert wire.decode_announce(memoryview(wire.announce_body(info))) == info


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"XX" + bytes(14), "foreign"),
        (b"IN\x09" + bytes(13), "bad_version"),
    ],
)
def test_bad_headers(data: bytes, reason: str) -> None:
    with pytest.raises(wire.WireError) as e:
        wire.decode_header(data)
    assert e.value.reason == reason


def _decode_everything(data: bytes) -> None:
    """What the session does with a datagram, minus the delivery."""
    wire.decode_header(data)
    for ftype, _flags, start, end in wire.frame_spans(data):
        decode_body(ftype, data, start, end)


@settings(max_examples=2000)
@given(st.binary(max_size=300))
def test_garbage_raises_only_wire_error(data: bytes) -> None:
    for candidate in (data, wire.encode_header(0, 1) + data):
        try:
            _decode_everything(candidate)
        except wire.WireError:
            pass


@settings(max_examples=1000)
@given(st.data())
def test_mutated_valid_datagrams_raise_only_wire_error(data: st.DataObject) -> None:
    body = wire.encode_msg_body(b"a.b", b"r", wire.encode_headers({"k": "v"}), (b"q",), b"payload")
    good = bytearray(
        wire.encode_header(0, 1)
        + wire.frame(wire.MSG, body)
        + wire.frame(
            wire.INTEREST, wire.encode_interest_body(1, [wire.InterestEntry(1, "x.>", "")])
        )
    )
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(good) - 1))
        good[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(good)))
    try:
        _decode_everything(bytes(good[:cut]))
    except wire.WireError:
        pass


@given(st.binary(min_size=1, max_size=5000), st.integers(1, 700), st.randoms(use_true_random=False))
def test_fragments_reassemble_in_any_order_with_duplicates(
    body: bytes, chunk: int, rnd: object
) -> None:
    import random

    assert isinstance(rnd, random.Random)
    frames = Fragmenter().split(wire.MSG, body, chunk)
    order = frames + rnd.sample(frames, k=min(3, len(frames)))
    rnd.shuffle(order)
    r = Reassembler()
    done = []
    for f in order:
        msg_id, total, off, inner, piece = wire.decode_frag(memoryview(f)[wire.FRAME_HEADER_SIZE :])
        out = r.feed(1, msg_id, total, off, inner, piece, now=0.0)
        if out is not None:
            done.append(out)
    assert len(done) == 1 and done[0].body == body and done[0].inner_type == wire.MSG
    assert r.pending_bytes == 0


def test_reassembly_limits_and_hostile_fragments() -> None:
    r = Reassembler(max_message=1000, max_pending_bytes=1500, timeout=1.0)
    assert r.feed(1, 1, 10_000, 0, wire.MSG, b"x" * 10, 0.0) is None
    assert r.take_drops() == ["too_large"]
    assert r.feed(1, 2, 1000, 0, wire.MSG, b"x" * 10, 0.0) is None
    assert r.feed(1, 3, 1000, 0, wire.MSG, b"x" * 10, 0.0) is None  # over the pending budget
    assert r.take_drops() == ["reassembly_memory"]
    assert r.feed(1, 2, 1000, 5, wire.MSG, b"y" * 10, 0.0) is None  # overlaps [0, 10)
    assert r.take_drops() == ["inconsistent_fragment"]
    assert r.pending_bytes == 0
    assert r.feed(1, 4, 100, 0, wire.MSG, b"x" * 10, 0.0) is None
    assert r.expire(5.0) == 1
    assert r.take_drops() == ["reassembly_timeout"]
    assert r.pending_bytes == 0
