"""Frames for one destination, packed into datagrams as they are queued.

Each :class:`OutQueue` builds its current datagram in a ``bytearray`` that starts with the
datagram header, and a POSITION frame when flow control wants one (see ``protocol.flow``); a
frame that would not fit seals it (its position is counted, and filled in if it has the frame)
and starts the next.
The session appends small message frames straight into ``buf`` on its fast path (after
:meth:`room` made sure they fit), and hands whole encoded frames to :meth:`add`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from insane.protocol import wire
from insane.protocol.flow import ACK_NOW, FlowOut
from insane.protocol.reliability import SendStream


class OutQueue:
    """Datagrams being built for one destination address.

    ``flow`` is the destination's flow-control state (shared by every queue to that address).
    With a ``stream`` (a reliable stream of ``kind``), every datagram also carries a SEQ
    frame, and is handed to the stream, stamped with ``clock()``, to be kept for
    retransmission.
    """

    __slots__ = (
        "_base",
        "_clock",
        "_header",
        "_positioned",
        "addr",
        "buf",
        "flow",
        "kind",
        "limit",
        "ready",
        "stream",
        "transport",
    )

    def __init__(
        self,
        header: bytes,
        limit: int,
        flow: FlowOut | None = None,
        *,
        addr: tuple[str, int] = ("", 0),
        stream: SendStream | None = None,
        kind: int = 0,
        clock: Callable[[], float] = time.monotonic,
        transport: str = "udp",
    ) -> None:
        self.flow = flow or FlowOut()
        #: The transport its datagrams leave by (the session's choice; not used here).
        self.transport = transport
        self.addr = addr
        self.stream = stream
        self.kind = kind
        self._clock = clock
        if stream is not None:
            header = header + wire.seq_frame(kind, stream.epoch, 0)
        self._header = header
        self._positioned = header[: wire.HEADER_SIZE] + wire.position_frame(0)
        self._positioned += header[wire.HEADER_SIZE :]
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
            positioned = self._base > len(self._header)
            if positioned:
                wire.write_position(buf, wire.HEADER_SIZE, position)
            stream = self.stream
            if stream is None:
                self.ready.append(bytes(buf))
            else:
                seq = stream.number()
                at = wire.HEADER_SIZE + (wire.POSITION_FRAME_SIZE if positioned else 0)
                wire.write_seq(buf, at, self.kind, stream.epoch, seq)
                datagram = bytes(buf)
                stream.sent(seq, datagram, self._clock())
                self.ready.append(datagram)
            self.buf = self._fresh()

    def take(self) -> list[bytes]:
        """Every datagram queued so far (the current one sealed); the queue is then empty."""
        self.seal()
        out, self.ready = self.ready, []
        return out

    def probe(self) -> bytes:
        """A datagram that asks the receiver for a WINDOW frame at once."""
        return self._header[: wire.HEADER_SIZE] + wire.position_frame(self.flow.sent, ACK_NOW)

    @property
    def empty(self) -> bool:
        return not self.ready and len(self.buf) == self._base
