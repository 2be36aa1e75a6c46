"""The reliable streams of one session, toward and from each peer (sans-IO bookkeeping).

For every peer a session sends reliable traffic to, it keeps a :class:`SendStream` per stream
kind (ordered, or reliable alone); for every peer it receives reliable traffic from, a
:class:`ReceiveStream` per kind.  This module turns their work into frames addressed to peer
ids (SEQ, ACK, NACK, TAIL, GAP: see docs/wire-format.md) and counts it in the metrics; the
session moves the frames and datagrams, and knows the peers' addresses.

Every stream frame carries its stream's epoch. A receive stream belongs to one epoch: a SEQ or
TAIL of another epoch from the same sender starts a new incarnation (the sender lost the old
one's state), after the old one is settled (what it held is handed over, its gaps reported);
frames of an incarnation that ended are dropped (``stale_stream``), so two incarnations are
never mixed. ACK, NACK and GAP frames apply only to the incarnation they name.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Protocol

from insane.ops.metrics import STORE
from insane.protocol import wire
from insane.protocol.reliability import ORDERED, UNORDERED, Gap, ReceiveStream, SendStream


class StreamSettings(Protocol):
    """What the streams need of the configuration (``reliability:`` in the YAML)."""

    @property
    def retransmit_bytes(self) -> int: ...
    @property
    def retransmit_age(self) -> float: ...
    @property
    def nack_delay(self) -> float: ...
    @property
    def nack_interval(self) -> float: ...

#: A receiver acknowledges on its own (without a TAIL asking) after this many datagrams.
_ACK_EVERY = 64
#: Epochs of ended incarnations remembered per (sender, kind), to drop their late frames.
_RETIRED = 8

Frame = tuple[int, int, bytes]  # (peer id, frame type, body)


#: A stream kind on the wire is ORDERED or UNORDERED plus the lane of the transport its
#: datagrams travel by, so that each stream stays on one transport (see docs/wire-format.md).
LANES = {"udp": 0, "xdp": 4, "dpdk": 8, "rdma": 12}
STREAM_KINDS = frozenset(base | lane for base in (UNORDERED, ORDERED) for lane in LANES.values())


def lane_kind(kind: int, transport: str) -> int:
    """The stream kind of ``kind`` (ORDERED or UNORDERED) on ``transport``'s lane."""
    return kind | LANES[transport]


def lane_transport(kind: int) -> str:
    """The transport whose lane a stream kind is on."""
    lane = kind & ~3
    return next((t for t, v in LANES.items() if v == lane), "udp")


def is_ordered(kind: int) -> bool:
    return kind & 3 == ORDERED


def _check_kind(kind: int) -> None:
    if kind not in STREAM_KINDS:
        raise wire.WireError("malformed", f"stream kind {kind}")


@dataclass(frozen=True, slots=True)
class LostData:
    """Datagrams of a peer's stream that will never arrive (reported to ``error_cb``)."""

    peer_id: int
    kind: int
    gap: Gap
    #: The incarnation of the stream they belonged to.
    epoch: int = 0


class StaleStream(wire.WireError):
    """A frame of a stream incarnation that has ended (counted as ``stale_stream``)."""

    def __init__(self) -> None:
        super().__init__("stale_stream")


class ReliableLinks:
    #: The stream classes (an engine puts its own behind the same interface).
    send_stream_class: type[SendStream] = SendStream
    receive_stream_class: type[ReceiveStream] = ReceiveStream

    def __init__(self, config: StreamSettings, transport: str = "udp") -> None:
        self.config = config
        self.tx: dict[tuple[int, int], SendStream] = {}
        self.rx: dict[tuple[int, int], ReceiveStream] = {}
        #: The epoch of each receive stream, and those of its ended incarnations.
        self._rx_epoch: dict[tuple[int, int], int] = {}
        self._retired: dict[tuple[int, int], collections.deque[int]] = {}
        self._acked: dict[tuple[int, int], int] = {}  # what we last acknowledged per rx stream
        self._ack_due: set[tuple[int, int]] = set()
        #: Set when a receive stream has a gap (cleared by the session when it arms its timer).
        self.gap_open = False
        self._retransmits = STORE.cell("insane_retransmissions", transport)
        self._nacks_sent = STORE.cell("insane_nacks", transport, "sent")
        self._nacks_received = STORE.cell("insane_nacks", transport, "received")
        self._duplicates = STORE.cell("insane_duplicates", transport)
        self._recovered = STORE.cell("insane_gaps", transport, "recovered")
        self._lost = STORE.cell("insane_gaps", transport, "unrecoverable")

    # ------------------------------------------------------------------ sending side

    def send_stream(self, peer_id: int, kind: int) -> SendStream:
        key = (peer_id, kind)
        s = self.tx.get(key)
        if s is None:
            c = self.config
            s = self.tx[key] = self.send_stream_class(
                c.retransmit_bytes, c.retransmit_age, count_messages=wire.count_messages
            )
        return s

    def on_ack(self, sender: int, body: memoryview) -> bool:
        """Apply an ACK; True when it made room in a full stream."""
        kind, epoch, next_expected = wire.decode_stream_number(body)
        s = self.tx.get((sender, kind))
        return s is not None and s.epoch == epoch and s.on_ack(next_expected)

    def on_nack(self, sender: int, body: memoryview, now: float) -> tuple[list[bytes], list[Frame]]:
        """Datagrams to send ``sender`` again, and GAP frames for what is gone."""
        kind, epoch, ranges = wire.decode_nack(body)
        self._nacks_received.value += 1
        s = self.tx.get((sender, kind))
        if s is None or s.epoch != epoch:
            # An incarnation we no longer have (we lost its state), or never had.
            return [], [
                (sender, wire.GAP, wire.gap_body(kind, epoch, a, b, None)) for a, b in ranges
            ]
        again, gaps = s.on_nack(ranges, now)
        self._retransmits.value += len(again)
        return again, [
            (sender, wire.GAP, wire.gap_body(kind, epoch, g.start, g.end, g.messages))
            for g in gaps
        ]

    def take_discarded(self) -> dict[int, int]:
        """Per peer, the messages discarded undelivered (evicted before being acknowledged,
        announced by a GAP) since the last call: the publisher reports them."""
        out: dict[int, int] = {}
        for (peer_id, _kind), s in self.tx.items():
            n = s.take_discarded()
            if n:
                out[peer_id] = out.get(peer_id, 0) + n
        return out

    # ------------------------------------------------------------------ receiving side

    def _receive_stream(
        self, sender: int, kind: int, epoch: int, now: float
    ) -> tuple[ReceiveStream, list[bytes], list[LostData]]:
        """The receive stream of ``(sender, kind)`` in ``epoch``: the current one, or a new
        incarnation, the old one settled first (its held datagrams and its gaps are returned,
        to process and report before anything of the new one). Raises `StaleStream` for an
        incarnation that has ended."""
        key = (sender, kind)
        r = self.rx.get(key)
        if r is not None and self._rx_epoch[key] == epoch:
            return r, [], []
        retired = self._retired.setdefault(key, collections.deque(maxlen=_RETIRED))
        if epoch in retired:
            raise StaleStream()
        held: list[bytes] = []
        lost: list[LostData] = []
        if r is not None:
            out, gaps = r.abandon(now)
            held, lost = out, self._lost_data(sender, kind, gaps, self._rx_epoch[key])
            retired.append(self._rx_epoch[key])
        c = self.config
        make = self.receive_stream_class
        r = self.rx[key] = make(is_ordered(kind), c.nack_delay, c.nack_interval)
        self._rx_epoch[key] = epoch
        self._acked.pop(key, None)
        return r, held, lost

    def on_seq(
        self, sender: int, kind: int, epoch: int, seq: int, datagram: bytes, now: float
    ) -> tuple[list[bytes], list[LostData]]:
        """A numbered datagram arrived: the datagrams to process now, in order, and what is
        lost for good (a previous incarnation of the stream that ended with gaps)."""
        _check_kind(kind)
        r, ready, lost = self._receive_stream(sender, kind, epoch, now)
        key = (sender, kind)
        stats = r.stats
        before = stats.duplicates, stats.recovered
        ready += r.on_data(seq, datagram, now)
        if stats.duplicates != before[0] or stats.recovered != before[1]:
            self._duplicates.value += stats.duplicates - before[0]
            self._recovered.value += stats.recovered - before[1]
        if r.next_expected - self._acked.get(key, 1) >= _ACK_EVERY:
            self._ack_due.add(key)
        if r.next_expected <= r.highest:
            self.gap_open = True  # (the session arms its timer for the NACK)
        return ready, lost

    def on_tail(
        self, sender: int, body: memoryview, now: float
    ) -> tuple[list[Frame], list[bytes], list[LostData]]:
        """The sender's last number: answer with where we are (and what we miss). A TAIL of
        a new incarnation settles the old one, like its first datagram would."""
        kind, epoch, last = wire.decode_stream_number(body)
        _check_kind(kind)
        r, held, lost = self._receive_stream(sender, kind, epoch, now)
        r.on_tail(last, now)
        return [self._ack(sender, kind, r)], held, lost

    def on_gap(
        self, sender: int, body: memoryview, now: float
    ) -> tuple[list[bytes], list[LostData]]:
        kind, epoch, start, end, messages = wire.decode_gap(body)
        key = (sender, kind)
        r = self.rx.get(key)
        if r is None or self._rx_epoch.get(key) != epoch:
            return [], []
        out, gaps = r.on_gap(start, end, now, messages)
        return out, self._lost_data(sender, kind, gaps, epoch)

    def _lost_data(self, sender: int, kind: int, gaps: list[Gap], epoch: int) -> list[LostData]:
        self._lost.value += sum(g.count for g in gaps)
        return [LostData(sender, kind, g, epoch) for g in gaps]

    def _ack(self, peer_id: int, kind: int, r: ReceiveStream) -> Frame:
        key = (peer_id, kind)
        self._acked[key] = r.next_expected
        body = wire.stream_number_body(kind, self._rx_epoch[key], r.next_expected)
        return (peer_id, wire.ACK, body)

    def ack_all(self) -> list[Frame]:
        """An ACK for every receive stream (a session that closes acknowledges what it got)."""
        self._ack_due.clear()
        return [self._ack(peer_id, kind, r) for (peer_id, kind), r in self.rx.items()]

    def acks_due(self) -> list[Frame]:
        """ACKs for streams that advanced far enough since the last one."""
        if not self._ack_due:
            return []
        out = []
        for key in self._ack_due:
            r = self.rx.get(key)
            if r is not None:
                out.append(self._ack(key[0], key[1], r))
        self._ack_due.clear()
        return out

    # ------------------------------------------------------------------ time and peers

    def due(self, now: float) -> list[Frame]:
        """TAILs of quiet streams with unacknowledged data, NACKs of gaps that are due."""
        out: list[Frame] = []
        for (peer_id, kind), s in self.tx.items():
            if s.tail_due(now):
                body = wire.stream_number_body(kind, s.epoch, s.tail(now))
                out.append((peer_id, wire.TAIL, body))
        for key, r in self.rx.items():
            ranges = r.nack_due(now)
            if ranges:
                self._nacks_sent.value += 1
                body = wire.nack_body(key[1], self._rx_epoch[key], ranges)
                out.append((key[0], wire.NACK, body))
        return out

    def next_timer(self, now: float) -> float | None:
        times = [t for s in self.tx.values() if (t := s.next_timer(now)) is not None]
        times += [t for r in self.rx.values() if (t := r.next_timer(now)) is not None]
        return min(times) if times else None

    def unacked_peers(self) -> set[int]:
        """The peers that have not acknowledged everything our streams sent them."""
        return {peer_id for (peer_id, _kind), s in self.tx.items() if s.unacked}

    def abandon_sent(self) -> dict[int, int]:
        """Closing: per peer, the messages sent and never acknowledged (nor reported
        before), which it may never get; the streams are dropped."""
        out: dict[int, int] = {}
        for (peer_id, _kind), s in self.tx.items():
            n = s.take_discarded() + s.abandon()
            if n:
                out[peer_id] = out.get(peer_id, 0) + n
        self.tx.clear()
        return out

    def peer_gone(
        self, peer_id: int, now: float
    ) -> tuple[list[bytes], list[LostData], int]:
        """Forget a peer: what it still owes us is lost; what we held back is handed over;
        and the messages we sent it that it never acknowledged (and were not reported yet)
        will never be delivered."""
        out: list[bytes] = []
        lost: list[LostData] = []
        discarded = 0
        for kind in STREAM_KINDS:
            key = (peer_id, kind)
            s = self.tx.pop(key, None)
            if s is not None:
                discarded += s.take_discarded() + s.abandon()
            self._acked.pop(key, None)
            self._ack_due.discard(key)
            self._retired.pop(key, None)
            r = self.rx.pop(key, None)
            epoch = self._rx_epoch.pop(key, 0)
            if r is not None:
                held, gaps = r.abandon(now)
                out += held
                lost += self._lost_data(peer_id, kind, gaps, epoch)
        return out, lost, discarded
