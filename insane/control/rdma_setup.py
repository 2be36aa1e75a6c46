"""Setting up an RDMA reliable connection with a peer over the control plane (sans-IO).

Two peers that both advertise ``rdma`` exchange RDMA_SETUP frames on kernel UDP, each carrying
one side's queue pair: its number (QPN), first packet sequence number (PSN), LID, GID, path MTU,
and the receive buffers it posted (the first credits, see ``protocol.credits``) and their
size. Each side then moves its queue pair to ready-to-send toward the other's.

The exchange is symmetric, so both sides may start it at once (as both do when they meet):

- An OFFER carries our side and is sent again every ``retry`` seconds until an ANSWER comes,
  for at most ``timeout`` seconds; then the set-up has failed.
- An OFFER received is always answered with an ANSWER carrying our side, again for a repeated
  offer (the first answer may have been lost). When we have no queue pair for that peer yet,
  the caller makes one (event `EndpointWanted`) and calls `accept`, or `refuse` with why.
- Whatever comes first from the peer, OFFER or ANSWER, gives its side: event `Connect`, once.
- An ANSWER also says that the peer's queue pair is ready to receive (it connects before it
  answers): event `PeerReady`, once. Until then nothing may be sent on the connection, since
  a message reaching a queue pair that is not ready is dropped and only resent by the adapter
  after its ACK timeout (tens of milliseconds). A side that connected on an OFFER learns the
  same from the first message that comes over the connection (transports/rdma/transport.py).
- A REFUSE says why the peer cannot (no device, out of resources...), or why it gave up (no
  answer in time, its queue pair broke): event `Failed`. A failed link stays failed.

Frames are addressed to a peer id, so a frame meant for an earlier session at the same address
is ignored. The body (docs/wire-format.md):

``flags:u8 to:u64 qpn:u32 psn:u32 lid:u16 mtu:u16 gid:16 credits:u16 buffer:u32 [reason]``
"""

from __future__ import annotations

from dataclasses import dataclass

from insane.protocol import wire
from insane.protocol.rdma_frames import ANSWER, BODY_SIZE, MAX_REASON, REFUSE, decode, encode
from insane.transports.base import Address
from insane.transports.rdma.endpoint import MAX_BUFFER, MIN_BUFFER, MTUS, Endpoint

__all__ = [
    "ANSWER", "BODY_SIZE", "MAX_BUFFER", "MAX_REASON", "MIN_BUFFER", "MTUS", "REFUSE",
    "Connect", "Endpoint", "EndpointWanted", "Failed", "PeerReady", "RdmaSetup", "decode",
    "encode",
]  # fmt: skip

# ---------------------------------------------------------------------------------------------
# Events for the caller


@dataclass(frozen=True, slots=True)
class EndpointWanted:
    """The peer offered and we have no queue pair for it: make one, connect it to ``remote``,
    then call `RdmaSetup.accept` (or `RdmaSetup.refuse`)."""

    peer_id: int
    addr: Address
    remote: Endpoint


@dataclass(frozen=True, slots=True)
class Connect:
    """The peer's side is known: move our queue pair for it to ready-to-send."""

    peer_id: int
    remote: Endpoint


@dataclass(frozen=True, slots=True)
class PeerReady:
    """The peer's queue pair is ready to receive: we may send (after `Connect`)."""

    peer_id: int


@dataclass(frozen=True, slots=True)
class Failed:
    peer_id: int
    reason: str


Event = EndpointWanted | Connect | PeerReady | Failed
Outgoing = tuple[Address, int, bytes]


@dataclass(slots=True)
class _Link:
    addr: Address
    local: Endpoint | None = None
    remote: Endpoint | None = None
    answered: bool = False  # an ANSWER (or the equivalent) came: stop offering
    peer_ready: bool = False  # an ANSWER came: the peer's queue pair is connected
    started: float = 0.0
    offered: float = -1e9
    failed: bool = False


class RdmaSetup:
    """Set-up of the reliable connections of one session (``peer_id``), one per peer."""

    def __init__(self, peer_id: int, *, retry: float = 0.1, timeout: float = 3.0) -> None:
        self.peer_id = peer_id
        self.retry = retry
        self.timeout = timeout
        self._links: dict[int, _Link] = {}
        self._out: list[Outgoing] = []
        self._events: list[Event] = []

    # ------------------------------------------------------------------ outputs

    def take_outgoing(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[Event]:
        ev, self._events = self._events, []
        return ev

    # ------------------------------------------------------------------ state

    def connected(self, peer_id: int) -> bool:
        link = self._links.get(peer_id)
        return link is not None and link.remote is not None and not link.failed

    def knows(self, peer_id: int) -> bool:
        return peer_id in self._links

    # ------------------------------------------------------------------ inputs

    def offer(self, peer_id: int, addr: Address, local: Endpoint, now: float) -> None:
        """Start: our queue pair for ``peer_id`` is ``local``; offer it until answered."""
        if peer_id in self._links:
            return
        link = self._links[peer_id] = _Link(addr, local, started=now)
        self._send_offer(peer_id, link, now)

    def accept(self, peer_id: int, local: Endpoint) -> None:
        """Answer an offer (after `EndpointWanted`): our queue pair, connected to theirs."""
        link = self._links.get(peer_id)
        if link is None or link.failed or link.local is not None:
            return
        link.local = local
        link.answered = True  # their offer had their side; ours goes in the answer
        self._out.append((link.addr, wire.RDMA_SETUP, encode(ANSWER, peer_id, local)))

    def refuse(self, peer_id: int, addr: Address, reason: str) -> None:
        """We cannot connect to ``peer_id``: tell it why, and stop."""
        link = self._links.setdefault(peer_id, _Link(addr))
        link.failed = True
        self._out.append((addr, wire.RDMA_SETUP, encode(REFUSE, peer_id, None, reason)))

    def fail(self, peer_id: int, reason: str) -> None:
        """The connection broke (or could not be made) on our side: no more set-up for it,
        and the peer is told (a REFUSE), so it stops using its side at once."""
        link = self._links.get(peer_id)
        if link is not None and not link.failed:
            self._give_up(peer_id, link, reason)

    def _give_up(self, peer_id: int, link: _Link, reason: str) -> None:
        link.failed = True
        self._events.append(Failed(peer_id, reason))
        self._out.append((link.addr, wire.RDMA_SETUP, encode(REFUSE, peer_id, None, reason)))

    def forget(self, peer_id: int) -> None:
        """The peer is gone."""
        self._links.pop(peer_id, None)

    def on_frame(self, sender: int, addr: Address, body: memoryview | bytes, now: float) -> None:
        """An RDMA_SETUP frame from ``sender``. Raises ``wire.WireError`` when malformed."""
        flags, to, remote, reason = decode(body)
        if to != self.peer_id:
            raise wire.WireError("misaddressed", "rdma setup for another session")
        link = self._links.get(sender)
        if remote is None:  # REFUSE
            if link is None:
                link = self._links[sender] = _Link(addr)
            if not link.failed:
                link.failed = True
                self._events.append(Failed(sender, f"the peer refused: {reason or 'no reason'}"))
            return
        if link is None:
            link = self._links[sender] = _Link(addr, started=now)
        if link.failed:
            return
        link.addr = addr
        if link.remote is None:
            link.remote = remote
            if link.local is None:
                self._events.append(EndpointWanted(sender, addr, remote))
            else:
                self._events.append(Connect(sender, remote))
        elif link.remote != remote:
            raise wire.WireError("rdma_setup_conflict", "a second queue pair for one peer")
        if flags & ANSWER:
            link.answered = True
            if not link.peer_ready and link.local is not None:
                link.peer_ready = True
                self._events.append(PeerReady(sender))
        elif link.local is not None:
            # An offer (maybe repeated): answer it, every time.
            link.answered = True  # their offer carries their side: ours need not be offered
            self._out.append((addr, wire.RDMA_SETUP, encode(ANSWER, sender, link.local)))

    def tick(self, now: float) -> None:
        """Offer again where no answer came; give up after ``timeout``."""
        for peer_id, link in self._links.items():
            if link.failed or link.answered or link.local is None:
                continue
            if now - link.started >= self.timeout:
                why = f"no answer to the RDMA set-up within {self.timeout:g} s"
                self._give_up(peer_id, link, why)
            elif now - link.offered >= self.retry:
                self._send_offer(peer_id, link, now)

    def _send_offer(self, peer_id: int, link: _Link, now: float) -> None:
        assert link.local is not None
        link.offered = now
        self._out.append((link.addr, wire.RDMA_SETUP, encode(0, peer_id, link.local)))

    def next_deadline(self) -> float | None:
        """When `tick` next has work (None: nothing is being set up)."""
        times = [
            min(link.offered + self.retry, link.started + self.timeout)
            for link in self._links.values()
            if not (link.failed or link.answered or link.local is None)
        ]
        return min(times) if times else None
