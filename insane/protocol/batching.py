"""Frames for one destination, packed into datagrams as they are queued.

Each :class:`OutQueue` builds its current datagram in a ``bytearray`` that starts with the
datagram header, and a POSITION frame when flow control wants one (see ``protocol.flow``); a
frame that would not fit seals it (its position is counted, and filled in if it has the frame)
and starts the next.
The session appends small message frames straight into ``buf`` on its fast path (after
:meth:`room` made sure they fit), and hands whole encoded frames to :meth:`add`.
"""

from __future__ import annotations

from insane.protocol import wire
from insane.protocol.flow import ACK_NOW, FlowOut


class OutQueue:
    __slots__ = ("_base", "_header", "_positioned", "buf", "flow", "limit", "ready")

    def __init__(self, header: bytes, limit: int, flow: FlowOut | None = None) -> None:
        self.flow = flow or FlowOut()
        self._header = header
        self._positioned = header + wire.position_frame(0)
        self.limit = limit
        self.ready: list[bytes] = []
        self._base = 0
        self.buf = self._fresh()

    def _fresh(self) -> bytearray:
        """A new datagram: with a POSITION frame if flow control wants one now."""
        prefix = self._positioned if self.flow.wants_position else self._header
        self._base = len(prefix)
        return bytearray(prefix)

    def room(self, n: int) -> bytearray:
        """The datagram buffer, sealed first if ``n`` more bytes would not fit in it."""
        if len(self.buf) + n > self.limit and len(self.buf) > self._base:
            self.seal()
        return self.buf

    def add(self, frame: bytes) -> None:
        self.room(len(frame)).extend(frame)

    def seal(self) -> None:
        buf = self.buf
        if len(buf) > self._base:
            position = self.flow.advance(len(buf))
            if self._base > len(self._header):
                wire.write_position(buf, wire.HEADER_SIZE, position)
            self.ready.append(bytes(buf))
            self.buf = self._fresh()

    def take(self) -> list[bytes]:
        """Every datagram queued so far (the current one sealed); the queue is then empty."""
        self.seal()
        out, self.ready = self.ready, []
        return out

    def probe(self) -> bytes:
        """A datagram that asks the receiver for a WINDOW frame at once."""
        return self._header + wire.position_frame(self.flow.sent, ACK_NOW)

    @property
    def empty(self) -> bool:
        return not self.ready and len(self.buf) == self._base
