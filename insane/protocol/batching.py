"""Frames for one destination, packed into datagrams as they are queued.

Each :class:`OutQueue` builds its current datagram in a ``bytearray`` that starts with the
datagram header and a POSITION frame (flow control, see ``protocol.flow``); a frame that would
not fit seals it (its position is filled in and it moves to ``ready``) and starts the next.
The session appends small message frames straight into ``buf`` on its fast path (after
:meth:`room` made sure they fit), and hands whole encoded frames to :meth:`add`.
"""

from __future__ import annotations

from insane.protocol import wire
from insane.protocol.flow import ACK_NOW, FlowOut


class OutQueue:
    __slots__ = ("_prefix", "buf", "flow", "limit", "ready")

    def __init__(self, header: bytes, limit: int, flow: FlowOut | None = None) -> None:
        self.flow = flow or FlowOut()
        self._prefix = header + wire.position_frame(0)
        self.limit = limit
        self.buf = bytearray(self._prefix)
        self.ready: list[bytes] = []

    def room(self, n: int) -> bytearray:
        """The datagram buffer, sealed first if ``n`` more bytes would not fit in it."""
        if len(self.buf) + n > self.limit and len(self.buf) > len(self._prefix):
            self.seal()
        return self.buf

    def add(self, frame: bytes) -> None:
        self.room(len(frame)).extend(frame)

    def seal(self) -> None:
        buf = self.buf
        if len(buf) > len(self._prefix):
            wire.write_position(buf, wire.HEADER_SIZE, self.flow.advance(len(buf)))
            self.ready.append(bytes(buf))
            self.buf = bytearray(self._prefix)

    def take(self) -> list[bytes]:
        """Every datagram queued so far (the current one sealed); the queue is then empty."""
        self.seal()
        out, self.ready = self.ready, []
        return out

    def probe(self) -> bytes:
        """A datagram that asks the receiver for a WINDOW frame at once."""
        return self._prefix[: wire.HEADER_SIZE] + wire.position_frame(self.flow.sent, ACK_NOW)

    @property
    def empty(self) -> bool:
        return not self.ready and len(self.buf) == len(self._prefix)
