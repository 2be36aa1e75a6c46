"""Receive credits: flow control for a connection whose receiver can take a message only into
a buffer it posted beforehand (RDMA SEND/RECV on a reliable connection). Sans-IO accounting.

Each side posts receive buffers for the other and says how many (the set-up exchange gives
the first count). A SEND consumes one of the peer's buffers, so a sender may send only while
it holds a credit. The receiver hands a buffer back (posts it again) once it has read it, and
returns the credit in the 2-byte field every message carries (``returned``), so a busy
two-way connection needs no extra messages.

One credit is held in reserve for a message that carries returned credits and nothing else
(an update); without it, two sides that have used every credit would each wait for the
other's return for ever. An update is due once ``batch`` credits are waiting to go back.
Updates use credits too, and the buffers they fill are returned like any other, but each
returns at least ``batch`` (two or more) and costs one, so updates never beget updates
without end.

Why nothing waits for ever, given that the receiver posts a buffer again as soon as it has
read it: a sender stuck at its reserve has had ``depth - 1`` buffers filled that are now
waiting to go back, at least ``batch`` (``batch <= depth - 1``), so the receiver sends an
update, provided it holds a credit. Both sides at zero credits with nothing on the way cannot
happen: the last message sent used its sender's last credit, so it was an update, and that
gave the other side credits.

Invariants (tests/test_credits.py checks them over random interleavings): a side never sends
more messages than the peer posted buffers for, and whatever is queued is eventually sent.
"""

from __future__ import annotations

#: Credits kept back for an update (a message with returned credits and no data).
RESERVE = 1
#: Largest number of credits one message can return (the field is 16 bits).
MAX_RETURNED = 0xFFFF
#: The fewest receive buffers a side may post (room for the reserve and a batch of two).
MIN_DEPTH = 3


def default_batch(posted: int) -> int:
    """A quarter of the buffers posted, within 2 .. posted - 1."""
    return min(max(2, posted // 4), posted - RESERVE)


class Credits:
    """Both directions of one connection: what we may send, and what we owe the peer."""

    __slots__ = ("available", "batch", "sent_updates", "unannounced")

    def __init__(self, peer_posted: int, posted: int, batch: int | None = None) -> None:
        if peer_posted < MIN_DEPTH or posted < MIN_DEPTH:
            raise ValueError(f"each side must post at least {MIN_DEPTH} receive buffers")
        #: Messages we may still send: buffers the peer posted for us that we have not used.
        self.available = peer_posted
        #: Buffers we posted again since we last told the peer.
        self.unannounced = 0
        #: Return credits on their own once this many are waiting: 2 .. posted - 1.
        self.batch = default_batch(posted) if batch is None else batch
        if not 2 <= self.batch <= posted - RESERVE:
            raise ValueError(f"batch must be 2..{posted - RESERVE}, got {self.batch}")
        self.sent_updates = 0

    # ------------------------------------------------------------------ sending

    @property
    def can_send(self) -> bool:
        """A message with data may go now (the reserve stays for an update)."""
        return self.available > RESERVE

    def take(self) -> int:
        """Use a credit for a data message; returns the credits it carries back."""
        if self.available <= RESERVE:
            raise RuntimeError("no credit for data: check can_send first")
        self.available -= 1
        return self._hand_back()

    @property
    def update_due(self) -> bool:
        """A message with returned credits only should go now."""
        return self.unannounced >= self.batch and self.available >= 1

    def take_update(self) -> int:
        """Use a credit (the reserve if need be) for an update; returns the credits it carries."""
        if not self.update_due:
            raise RuntimeError("no update is possible now: check update_due first")
        self.available -= 1
        self.sent_updates += 1
        return self._hand_back()

    def _hand_back(self) -> int:
        n = min(self.unannounced, MAX_RETURNED)
        self.unannounced -= n
        return n

    # ------------------------------------------------------------------ receiving

    def on_receive(self, returned: int) -> None:
        """A message from the peer arrived in one of our buffers, returning ``returned``."""
        self.available += returned

    def on_reposted(self, n: int = 1) -> None:
        """We posted ``n`` buffers again, after reading what they held."""
        self.unannounced += n
