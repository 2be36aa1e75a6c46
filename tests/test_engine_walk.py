"""The native datagram walk against wire.py: the same headers, POSITION and SEQ frames and
frame spans on valid datagrams, the same WireError (reason and text) on hostile ones."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netns import engine_built

from insane.protocol import wire

engine_built()
from insane.engine import native  # noqa: E402

E = native()


def outcome(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        result = fn(*args)
    except wire.WireError as exc:
        return ("error", exc.reason, str(exc))
    return ("ok", tuple(result) if not isinstance(result, list) else result)


frames = st.lists(
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=40)), max_size=5
)


@st.composite
def datagrams(draw: st.DrawFn) -> bytes:
    """A well-formed datagram (header, maybe POSITION, maybe SEQ, frames), then maybe spoilt:
    cut, extended, or a byte changed."""
    body = b"".join(wire.frame(t, b, f) for t, f, b in draw(frames))
    head = wire.encode_header(draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**64 - 1)))
    if draw(st.booleans()):
        head += struct.pack(
            "!BBHQ", wire.POSITION, draw(st.integers(0, 255)), 8, draw(st.integers(0, 2**64 - 1))
        )
    data = head + body
    if draw(st.booleans()):
        seq_at = len(head)
        seq = wire.seq_frame(
            draw(st.integers(0, 3)),
            draw(st.integers(0, 2**32 - 1)),
            draw(st.integers(0, 2**64 - 1)),
            0,
        )
        data = head + seq + body
        total = struct.pack("!I", len(data))
        data = data[: seq_at + 17] + total + data[seq_at + 21 :]
    spoil = draw(st.integers(0, 3))
    if spoil == 1 and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif spoil == 2:
        data += draw(st.binary(min_size=1, max_size=8))
    elif spoil == 3 and data:
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1 :]
    return data


@settings(max_examples=1500, deadline=None)
@given(st.one_of(datagrams(), st.binary(max_size=64)), st.integers(0, 40))
def test_the_walk_matches_wire_on_any_input(data: bytes, offset: int) -> None:
    assert outcome(E.decode_header, data) == outcome(wire.decode_header, data)
    assert outcome(E.frame_spans, data) == outcome(wire.frame_spans, data)
    assert outcome(E.frame_spans, data, offset) == outcome(wire.frame_spans, data, offset)
    assert outcome(E.read_position, data, offset) == outcome(wire.read_position, data, offset)
    assert outcome(E.read_seq, data, offset) == outcome(wire.read_seq, data, offset)
    if len(data) > 16 and data[16] == wire.POSITION:
        assert outcome(E.read_position, data, 16) == outcome(wire.read_position, data, 16)
    for at in (16, 28):
        if len(data) > at and data[at] == wire.SEQ:
            assert outcome(E.read_seq, data, at) == outcome(wire.read_seq, data, at)


def test_the_reasons_a_user_sees_in_the_dropped_metric() -> None:
    good = wire.encode_header(7, 9) + wire.frame(wire.MSG, b"x")
    assert E.decode_header(good) == (2, 0, 7, 9)
    assert E.frame_spans(good) == [(wire.MSG, 0, 20, 21)]
    cases = {
        b"IN": "truncated",
        b"XX" + good[2:]: "foreign",
        good[:2] + b"\x03" + good[3:]: "bad_version",
    }
    for data, reason in cases.items():
        with pytest.raises(wire.WireError) as exc:
            E.decode_header(data)
        assert exc.value.reason == reason
    spoilt = {good[:16]: "empty", good[:-1]: "truncated", good + b"\0": "truncated"}
    for data, reason in spoilt.items():
        with pytest.raises(wire.WireError) as exc:
            E.frame_spans(data)
        assert exc.value.reason == reason
    with pytest.raises(ValueError):
        E.read_seq(good, -1)
    assert E.frame_spans(bytearray(good)) == E.frame_spans(memoryview(good))
