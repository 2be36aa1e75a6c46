"""Checking any frame's body on its own: `decode_body` decodes it with the codec of its type
and throws the result away, raising `WireError` when it is malformed (for validation and the
fuzzers). One table from frame type to decoder."""

from __future__ import annotations

from collections.abc import Callable

from insane.protocol import rdma_frames, wire


def _msg(data: bytes, start: int, end: int) -> None:
    wire.decode_msg(data, start, end)


def _position(data: bytes, start: int, _end: int) -> None:
    wire.read_position(data, start - wire.FRAME_HEADER_SIZE)


def _body(decode: Callable[[memoryview], object]) -> Callable[[bytes, int, int], None]:
    def check(data: bytes, start: int, end: int) -> None:
        decode(memoryview(data)[start:end])

    return check


#: Frame type -> the check of its body at ``data[start:end]``.
DECODERS: dict[int, Callable[[bytes, int, int], None]] = {
    wire.MSG: _msg,
    wire.FRAG: _body(wire.decode_frag),
    wire.HEARTBEAT: _body(wire.decode_heartbeat),
    wire.ANNOUNCE: _body(wire.decode_announce),
    wire.INTEREST: _body(wire.decode_interest),
    wire.INTEREST_ACK: _body(wire.decode_u32),
    wire.WINDOW: _body(wire.decode_window),
    wire.ACK: _body(wire.decode_stream_number),
    wire.TAIL: _body(wire.decode_stream_number),
    wire.NACK: _body(wire.decode_nack),
    wire.GAP: _body(wire.decode_gap),
    wire.POSITION: _position,
    wire.SEQ: _body(wire.check_seq_body),
    wire.RDMA_SETUP: _body(rdma_frames.decode),
}


def decode_body(ftype: int, data: bytes, start: int, end: int) -> None:
    """Decode the body ``data[start:end]`` of a frame of type ``ftype`` (BYE and
    INTEREST_REQ are empty; unknown types are left alone, as the receiver skips them)."""
    check = DECODERS.get(ftype)
    if check is not None:
        check(data, start, end)
