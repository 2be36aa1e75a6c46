"""Frames for one destination, packed into datagrams as they are queued.

Each :class:`OutQueue` builds its current datagram in a ``bytearray`` that starts with the
datagram header; a frame that would not fit seals it (the datagram moves to ``ready``) and
starts the next.  The session appends small message frames straight into ``buf`` on its fast
path (:meth:`room` tells whether they fit), and hands whole encoded frames to :meth:`add`.
"""

from __future__ import annotations


class OutQueue:
    __slots__ = ("_header", "buf", "limit", "ready")

    def __init__(self, header: bytes, limit: int) -> None:
        self._header = header
        self.limit = limit
        self.buf = bytearray(header)
        self.ready: list[bytes] = []

    def room(self, n: int) -> bytearray:
        """The datagram buffer, sealed first if ``n`` more bytes would not fit in it."""
        if len(self.buf) + n > self.limit and len(self.buf) > len(self._header):
            self.seal()
        return self.buf

    def add(self, frame: bytes) -> None:
        self.room(len(frame)).extend(frame)

    def seal(self) -> None:
        if len(self.buf) > len(self._header):
            self.ready.append(bytes(self.buf))
            self.buf = bytearray(self._header)

    def take(self) -> list[bytes]:
        """Every datagram queued so far (the current one sealed); the queue is then empty."""
        self.seal()
        out, self.ready = self.ready, []
        return out

    @property
    def empty(self) -> bool:
        return not self.ready and len(self.buf) == len(self._header)
