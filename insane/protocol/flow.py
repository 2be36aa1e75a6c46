"""Receiver-driven flow control between two peers (sans-IO: numbers in, numbers out).

A fast publisher must not overrun a subscriber's socket buffer: datagrams dropped there are
lost without a trace.  So each sender numbers what it sends to a destination as a byte
position (a datagram counts its length plus :data:`DATAGRAM_OVERHEAD`, about what the kernel
charges for it), and writes the position reached at the head of every datagram (a POSITION
frame).  The receiver answers with WINDOW frames: the highest position it has read out of its
socket, and how much more it accepts.  The sender stops (``blocked``) when what it sent beyond
the last acknowledged position fills the window, and a blocked publisher waits.  Datagrams
carry the POSITION frame only while at least an eighth of the window is unacknowledged, so
light traffic pays nothing for flow control.

Positions are acknowledged as "highest seen", not "all received", so a lost datagram never
stalls the window; recovering lost data is the reliability layer's job, not this one's.  A
lost WINDOW frame is covered by the sender's probe (a POSITION frame flagged ``ACK_NOW``) when
it stays blocked.  Acknowledgements ride on datagrams going back anyway when there are some,
and otherwise leave on their own once a quarter of the window is unacknowledged, or after a
short delay (see the session).
"""

from __future__ import annotations

#: Bytes counted per datagram on top of its length (the kernel's per-packet accounting).
DATAGRAM_OVERHEAD = 512
#: The window a receiver grants, and a sender assumes until it hears otherwise.
DEFAULT_WINDOW = 4 * 1024 * 1024
#: A window is never taken as smaller than this (a hostile or broken peer cannot stop us).
MIN_WINDOW = 64 * 1024
#: POSITION frame flag: answer with a WINDOW frame at once (a blocked sender's probe).
ACK_NOW = 0x01


class FlowOut:
    """The sending side toward one destination."""

    __slots__ = ("acked", "sent", "window")

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        self.sent = 0
        self.acked = 0
        self.window = window

    def advance(self, datagram_len: int) -> int:
        """Count one datagram; returns the position to write in its POSITION frame."""
        self.sent += datagram_len + DATAGRAM_OVERHEAD
        return self.sent

    def on_window(self, acked: int, window: int) -> bool:
        """Apply a WINDOW frame; True when it opened room."""
        before = self.blocked
        if acked > self.acked:
            self.acked = min(acked, self.sent)
        self.window = max(window, MIN_WINDOW)
        return before and not self.blocked

    @property
    def in_flight(self) -> int:
        return self.sent - self.acked

    @property
    def wants_position(self) -> bool:
        """Whether the next datagram should carry a POSITION frame: only once an eighth of the
        window is unacknowledged.  Light traffic (request/reply, a message now and then)
        carries none and costs the receiver nothing; a stream that could come near the
        window carries them until the receiver's acknowledgements catch up."""
        return self.sent - self.acked >= self.window >> 3

    @property
    def blocked(self) -> bool:
        return self.sent - self.acked >= self.window


class FlowIn:
    """The receiving side from one sender (``source``: its peer id)."""

    __slots__ = ("acked", "high", "source")

    def __init__(self, source: int) -> None:
        self.source = source
        self.high = 0
        self.acked = 0

    def on_position(self, position: int) -> None:
        if position > self.high:
            self.high = position

    @property
    def unacked(self) -> int:
        return self.high - self.acked

    def take_ack(self) -> int:
        """The position to acknowledge now (and remember it as acknowledged)."""
        self.acked = self.high
        return self.high
