"""Reliable streams over datagrams (sans-IO: datagrams, sequence numbers and a clock in;
datagrams to process, NACKs, retransmissions and gap events out).

The unit of reliability is the *datagram*.  A sender keeps one stream per receiving peer and
stream kind (``reliable`` in publisher order, or ``reliable`` alone); every datagram of a
stream opens with a SEQ frame numbering it 1, 2, 3...  Messages travel inside these
datagrams exactly as on best-effort paths, so numbering costs nothing per message, and a large
message's fragments, each in its own datagram, are recovered one by one.

* :class:`SendStream` numbers datagrams and keeps them, within a byte and an age budget, for
  retransmission.  A NACK names missing ranges: what is still kept is sent again, what was
  evicted is announced as a gap (GAP frame) so the receiver stops waiting.  Acknowledgements
  (the receiver's next expected number) release what it no longer needs.  After sending, a
  stream that goes quiet with data unacknowledged sends a TAIL (its last number), so loss of
  the last datagrams is noticed too.
* :class:`ReceiveStream` drops duplicates; in an ``ordered`` stream it holds datagrams that
  come early until the gap before them is filled, and otherwise hands them over at once.  It
  NACKs gaps after a short delay (reordering is not loss) and again at intervals, and turns a
  gap into a :class:`Gap` event when the sender says it is gone, or when the session gives up
  on the sender (it went away).

The first datagram a receiver sees of a stream need not be number 1 (it may have been lost);
a stream starts when the sender first sends to that receiver, so the receiver asks for
everything from 1.  Each stream has an *epoch*, a random number it carries in every frame of
its own: a sender that lost a stream's state (it forgot the peer) starts another with another
epoch, and a receiver never mixes the two (``reliable_links`` decides which incarnation a
frame belongs to).

What cannot be repaired is counted in messages as well as datagrams: the sender counts the
messages of each datagram it evicts unacknowledged (``count_messages``), tells the receiver
how many a GAP covers, and says itself how many it discarded undelivered.
"""

from __future__ import annotations

import collections
import random
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass

#: A gap that lasts is asked for again at most this rarely (seconds).
_MAX_BACKOFF = 0.2

#: Stream kinds (the SEQ frame says which): reliable only, or reliable and ordered.
UNORDERED = 1
ORDERED = 2


#: Evicted datagrams whose message counts are kept one by one (beyond, only their total).
_DISCARD_DETAIL = 1 << 20


def new_epoch() -> int:
    """A stream's epoch: random, never 0."""
    return random.getrandbits(32) or 1


@dataclass(frozen=True, slots=True)
class Gap:
    """Datagrams ``start`` to ``end`` (exclusive) of a stream will never arrive; they held
    ``messages`` messages (None: nobody can say: the sender is gone or forgot the stream)."""

    start: int
    end: int
    messages: int | None = None

    @property
    def count(self) -> int:
        return self.end - self.start


class _Discarded:
    """Datagrams ``start`` to ``end`` (exclusive) were evicted before being acknowledged: the
    message count of each (the first ``_DISCARD_DETAIL`` one by one, the rest as a total), so
    a GAP for any range that starts in the detailed part is exact."""

    __slots__ = ("counts", "end", "rest", "start")

    def __init__(self) -> None:
        self.start = self.end = 0
        self.counts = array("I")
        self.rest = 0  # messages of the datagrams past the detailed ones

    def add(self, seq: int, messages: int) -> None:
        if not self.counts and not self.rest:
            self.start = self.end = seq
        if seq != self.end:  # not contiguous (cannot happen: eviction is oldest first)
            self.rest += messages
        elif len(self.counts) < _DISCARD_DETAIL:
            self.counts.append(messages)
        else:
            self.rest += messages
        self.end = seq + 1

    def release(self, below: int) -> None:
        """The receiver has everything below ``below`` (acknowledged, or settled by a GAP)."""
        if below <= self.start:
            return
        if below >= self.end:
            self.__init__()  # type: ignore[misc]
            return
        drop = below - self.start
        del self.counts[:drop]
        self.start = below

    def messages(self, start: int, end: int) -> int | None:
        """Messages of the discarded datagrams ``start..end-1`` (None if not discarded here,
        or past the detailed part and not up to the end)."""
        start, end = max(start, self.start), min(end, self.end)
        if start >= end:
            return 0
        detailed_end = self.start + len(self.counts)
        if start >= detailed_end:
            return self.rest if end == self.end and start == detailed_end else None
        n = sum(self.counts[start - self.start : min(end, detailed_end) - self.start])
        if end > detailed_end:
            if end != self.end:
                return None
            n += self.rest
        return n

    def total(self) -> int:
        return sum(self.counts) + self.rest


@dataclass(slots=True)
class SendStats:
    sent: int = 0
    retransmitted: int = 0
    nacks: int = 0
    gaps: int = 0  # datagrams announced as lost for good (evicted; counted per announcement)
    evicted_full: int = 0  # unacknowledged datagrams dropped for the byte budget
    evicted_old: int = 0  # ... for the age limit
    discarded_messages: int = 0  # messages in datagrams evicted before being acknowledged


class SendStream:
    """The sending side of one stream.

    ``count_messages(datagram)`` says how many messages a datagram holds; it is asked only for
    datagrams evicted before being acknowledged (the default counts one per datagram)."""

    def __init__(
        self,
        max_bytes: int = 64 * 1024 * 1024,
        max_age: float = 10.0,
        tail_delay: float = 0.01,
        tail_interval: float = 0.05,
        window: int = 4 * 1024 * 1024,
        *,
        epoch: int | None = None,
        count_messages: Callable[[bytes], int] | None = None,
    ) -> None:
        self.epoch = epoch or new_epoch()
        self._count_messages = count_messages or (lambda _d: 1)
        self._discarded = _Discarded()
        #: Discarded messages not yet reported to the application (``take_discarded``).
        self._unreported = 0
        #: GAPs are announced below this number already (a repeated NACK resends the GAP,
        #: but the discarded messages are reported once).
        self._gap_reported = 1
        self.max_bytes = max_bytes
        self.window = window
        self.max_age = max_age
        self.tail_delay = tail_delay
        self.tail_interval = tail_interval
        self.next_seq = 1
        self.acked = 1  # every number below this has been received
        self._kept: collections.deque[tuple[int, bytes, float]] = collections.deque()
        self._kept_bytes = 0
        self._last_send = 0.0
        self._last_tail = -1e9
        #: A datagram is not sent again sooner than this after its last retransmission (a
        #: NACK repeated while the first retransmission is still on its way).
        self.resend_guard = 0.01
        self._resent: dict[int, float] = {}
        self.stats = SendStats()

    def number(self) -> int:
        """The number of the next datagram (call :meth:`sent` with it once it is built)."""
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def sent(self, seq: int, datagram: bytes, now: float) -> None:
        """Keep a numbered datagram for retransmission."""
        self._kept.append((seq, datagram, now))
        self._kept_bytes += len(datagram)
        self._last_send = now
        self.stats.sent += 1
        self._evict(now)

    def _evict(self, now: float) -> None:
        kept = self._kept
        while kept and (self._kept_bytes > self.max_bytes or now - kept[0][2] > self.max_age):
            if self._kept_bytes > self.max_bytes:
                self.stats.evicted_full += 1
            else:
                self.stats.evicted_old += 1
            seq, datagram, _t = kept.popleft()
            self._kept_bytes -= len(datagram)
            if seq >= self.acked:  # not acknowledged: its messages may never be delivered
                messages = self._count_messages(datagram)
                self._discarded.add(seq, messages)
                self.stats.discarded_messages += messages

    def evict_expired(self, now: float) -> None:
        """Evict what is older than ``max_age`` (a stream that sends nothing new evicts only
        when asked: the session does on its timer)."""
        self._evict(now)

    def take_discarded(self) -> int:
        """Messages discarded undelivered since the last call, to report (each is counted
        once: when the receiver learns of it through a GAP, or when the stream is dropped)."""
        n, self._unreported = self._unreported, 0
        return n

    def abandon(self) -> int:
        """The receiver is gone for good: the messages of everything not acknowledged (kept or
        already evicted) will never be delivered; their count, not yet reported before."""
        self._evict(float("inf"))  # every kept datagram is now discarded
        return self._discarded.messages(self._gap_reported, self.next_seq) or 0

    @property
    def kept(self) -> int:
        """Datagrams kept for retransmission."""
        return len(self._kept)

    @property
    def unacked(self) -> bool:
        return self.acked < self.next_seq

    @property
    def full(self) -> bool:
        """A window's worth (or three quarters of the byte budget) is sent and not yet
        acknowledged: a publisher should wait for acknowledgements (``block``).  This is the
        stream's own window, on what the receiver has in order: a receiver holding early
        datagrams behind a gap does not open it, so a gap never lets the sender run ahead
        until data must be evicted before it could be resent."""
        kept = self._kept_bytes
        return self.max_bytes > 0 and (kept >= self.window or kept * 4 >= self.max_bytes * 3)

    def on_ack(self, next_expected: int) -> bool:
        """The receiver has every datagram below ``next_expected``.  True when that took the
        stream out of :attr:`full`."""
        next_expected = min(next_expected, self.next_seq)
        if next_expected <= self.acked:
            return False
        was_full = self.full
        self.acked = next_expected
        self._discarded.release(next_expected)
        self._gap_reported = max(self._gap_reported, next_expected)
        kept = self._kept
        while kept and kept[0][0] < next_expected:
            self._kept_bytes -= len(kept.popleft()[1])
        if self._resent:
            self._resent = {k: t for k, t in self._resent.items() if k >= next_expected}
        return was_full and not self.full

    def on_nack(
        self, ranges: Iterable[tuple[int, int]], now: float
    ) -> tuple[list[bytes], list[Gap]]:
        """Datagrams to send again, and ranges that are gone for good, for missing ``ranges``
        (``(start, end)``, end exclusive)."""
        self._evict(now)
        self.stats.nacks += 1
        again: list[bytes] = []
        gaps: list[Gap] = []
        kept = self._kept
        first = kept[0][0] if kept else self.next_seq
        for start, end in ranges:
            start = max(start, self.acked, 1)
            end = min(end, self.next_seq)
            if start >= end:
                continue
            if start < first:
                lost_end = min(end, first)
                messages = self._discarded.messages(start, lost_end)
                gaps.append(Gap(start, lost_end, messages))
                self.stats.gaps += lost_end - start
                if lost_end > self._gap_reported:  # reported once, however often asked
                    fresh = self._discarded.messages(max(start, self._gap_reported), lost_end)
                    self._unreported += fresh or 0
                    self._gap_reported = lost_end
                start = lost_end
            resent = self._resent
            guard = self.resend_guard
            for seq in range(start, end):
                if now - resent.get(seq, -1e9) < guard:
                    continue
                resent[seq] = now
                again.append(kept[seq - first][1])
        self.stats.retransmitted += len(again)
        return again, gaps

    def tail_due(self, now: float) -> bool:
        """Whether to send a TAIL (our last number) now: data unacknowledged, and quiet."""
        if not self.unacked or now - self._last_send < self.tail_delay:
            return False
        return now - self._last_tail >= self.tail_interval

    def tail(self, now: float) -> int:
        self._last_tail = now
        return self.next_seq - 1

    def next_timer(self, now: float) -> float | None:
        """When :meth:`tail_due` may next become true (None: nothing to wait for)."""
        if not self.unacked:
            return None
        return max(self._last_send + self.tail_delay, self._last_tail + self.tail_interval)


@dataclass(slots=True)
class ReceiveStats:
    received: int = 0
    duplicates: int = 0
    nacks: int = 0
    recovered: int = 0  # datagrams that filled a gap
    lost: int = 0  # datagrams given up on (gap events)


class ReceiveStream:
    """The receiving side of one stream.

    ``on_data`` returns the datagrams to process now, in the order to process them.  In an
    ordered stream that is publisher order; otherwise, arrival order without duplicates.
    """

    def __init__(
        self,
        ordered: bool,
        nack_delay: float = 0.002,
        nack_interval: float = 0.02,
        max_held_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self.ordered = ordered
        self.nack_delay = nack_delay
        self.nack_interval = nack_interval
        self.max_held_bytes = max_held_bytes
        self.next_expected = 1  # every number below this has been handed over (or given up)
        self.highest = 0  # the highest number known to exist (seen, or announced by a TAIL)
        self._held: dict[int, bytes] = {}  # ordered: early datagrams; unordered: b"" markers
        self._held_bytes = 0
        self._gap_since: float | None = None
        self._last_nack = -1e9
        self._backoff = nack_interval  # doubles while a gap lasts without progress
        self.stats = ReceiveStats()

    # ------------------------------------------------------------------ input

    def on_data(self, seq: int, datagram: bytes, now: float) -> list[bytes]:
        stats = self.stats
        stats.received += 1
        if seq < self.next_expected or seq in self._held:
            stats.duplicates += 1
            return []
        filling = seq <= self.highest  # it was missing: a retransmission or a late arrival
        if seq > self.highest:
            self.highest = seq
        if seq == self.next_expected:
            out = [datagram]
            self.next_expected = seq + 1
            self._backoff = self.nack_interval  # progress: ask promptly again
            if filling:
                stats.recovered += 1
            self._drain(out)
            self._update_gap(now)
            return out
        # Early: a gap lies before it.
        if filling:
            stats.recovered += 1
        if self.ordered:
            if self._held_bytes + len(datagram) > self.max_held_bytes:
                # Too much held back: forget this one (it will be asked for again).
                stats.received -= 1
                return []
            self._held[seq] = datagram
            self._held_bytes += len(datagram)
            self._update_gap(now)
            return []
        self._held[seq] = b""
        self._update_gap(now)
        return [datagram]

    def _drain(self, out: list[bytes]) -> None:
        """Move ``next_expected`` past what is held, handing over held datagrams in order."""
        held = self._held
        while self.next_expected in held:
            d = held.pop(self.next_expected)
            if self.ordered:
                self._held_bytes -= len(d)
                out.append(d)
            self.next_expected += 1

    def on_tail(self, last: int, now: float) -> None:
        """The sender's last number: anything up to it not seen yet is missing."""
        if last > self.highest:
            self.highest = last
            self._update_gap(now)

    def on_gap(
        self, start: int, end: int, now: float, messages: int | None = None
    ) -> tuple[list[bytes], list[Gap]]:
        """The sender says ``start..end-1`` are gone (holding ``messages`` messages): stop
        waiting for them.  Returns the held datagrams that can now be handed over, and the
        gaps given up on (with the message count where it is the whole announced range)."""
        gaps = []
        missing = [r for r in self.missing() if r[1] > start and r[0] < end]
        for a, b in missing:
            a, b = max(a, start), min(b, end)
            gaps.append(Gap(a, b, messages if (a, b) == (start, end) else None))
            self.stats.lost += b - a
            if a == self.next_expected:
                self.next_expected = b
            else:
                for seq in range(a, b):  # mark them as settled, to be skipped
                    self._held.setdefault(seq, b"")
        out: list[bytes] = []
        if gaps:
            self._drain_settled(out)
            self._update_gap(now)
        return out, gaps

    def abandon(self, now: float) -> tuple[list[bytes], list[Gap]]:
        """The sender is gone: give up every gap, hand over whatever is held."""
        return self.on_gap(self.next_expected, self.highest + 1, now)

    def _drain_settled(self, out: list[bytes]) -> None:
        held = self._held
        while self.next_expected in held:
            d = held.pop(self.next_expected)
            if self.ordered and d:
                self._held_bytes -= len(d)
                out.append(d)
            self.next_expected += 1

    # ------------------------------------------------------------------ gaps and NACKs

    def missing(self) -> list[tuple[int, int]]:
        """The ranges ``(start, end)`` between what was handed over and the highest number
        known, that have not arrived."""
        out: list[tuple[int, int]] = []
        seq = self.next_expected
        top = self.highest + 1
        if seq >= top:
            return out
        for held in sorted(k for k in self._held if k >= seq):
            if held > seq:
                out.append((seq, held))
            seq = held + 1
        if seq < top:
            out.append((seq, top))
        return out

    def _update_gap(self, now: float) -> None:
        if self.next_expected > self.highest:
            self._gap_since = None
        elif self._gap_since is None:
            self._gap_since = now

    def nack_due(self, now: float) -> list[tuple[int, int]]:
        """Missing ranges to ask for now (empty when nothing is due): after ``nack_delay``
        of a gap, then every ``nack_interval`` while it lasts."""
        since = self._gap_since
        if since is None or now - since < self.nack_delay:
            return []
        if now - self._last_nack < self._backoff:
            return []
        if self._last_nack > since:  # asked already in this gap: back off
            self._backoff = min(self._backoff * 2, _MAX_BACKOFF)
        self._last_nack = now
        self.stats.nacks += 1
        return self.missing()

    def next_timer(self, now: float) -> float | None:
        """When :meth:`nack_due` may next have something (None: no gap)."""
        if self._gap_since is None:
            return None
        return max(self._gap_since + self.nack_delay, self._last_nack + self._backoff)

    @property
    def held(self) -> int:
        return sum(1 for d in self._held.values() if d)
