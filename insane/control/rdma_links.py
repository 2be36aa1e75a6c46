"""The RDMA connections of one session: with whom to set one up, the exchange over the control
plane, and what a failure means.

Glue between the set-up exchange (control/rdma_setup.py: sans-IO), the transport's queue
pairs (transports/rdma/transport.py) and the session, which moves the frames and owns the routes:

- a peer that advertises ``rdma`` when we have it too gets a queue pair and an OFFER when it
  comes up (`peer_up`); an OFFER from a peer we know gets a queue pair and an ANSWER;
- `on_frame` and `tick` drive the exchange; `take_outgoing` gives the frames to send;
- a connection that cannot be made, or breaks, is a `LinkFailed` for the session (``on_failure``,
  at once), which moves
  that peer's channels to the next transport the policy allows); the peer is told, and the
  reason is kept (`unusable`), so the policy and `insane qos explain` can say why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from insane.control import rdma_setup
from insane.control.discovery import Peer
from insane.control.rdma_setup import Connect, EndpointWanted, Failed, PeerReady, RdmaSetup
from insane.transports.base import Address
from insane.transports.rdma.transport import RdmaTransport

log = logging.getLogger("insane.rdma")


@dataclass(frozen=True, slots=True)
class LinkFailed:
    """RDMA to ``peer_id`` is over: ``unsent`` datagrams were never handed to the adapter
    (send them another way); ``lost`` were handed over and not confirmed."""

    peer_id: int
    addr: Address
    reason: str
    unsent: list[bytes]
    lost: int


class RdmaLinks:
    def __init__(self, transport: RdmaTransport, peer_id: int) -> None:
        self.transport = transport
        self.setup = RdmaSetup(peer_id)
        #: peer id -> why RDMA to it is not possible (kept while the peer lives)
        self.failed: dict[int, str] = {}
        self._peers: dict[int, Address] = {}  # peer id -> its address, while we have a link
        #: Set by the session: called at once when a link fails.
        self.on_failure: Callable[[LinkFailed], None] | None = None
        transport.on_failure = self._transport_failed

    # ------------------------------------------------------------------ peers

    def peer_up(self, peer: Peer, now: float) -> None:
        """A peer came: offer it a connection if it has RDMA too."""
        if "rdma" not in peer.transports or peer.peer_id in self.failed:
            return
        if self.setup.knows(peer.peer_id):
            return
        try:
            local = self.transport.prepare(peer.addr)
        except OSError as exc:
            self._give_up(peer.peer_id, peer.addr, str(exc))
            return
        self._peers[peer.peer_id] = peer.addr
        self.setup.offer(peer.peer_id, peer.addr, local, now)

    def peer_down(self, peer: Peer) -> None:
        addr = self._peers.pop(peer.peer_id, None)
        if addr is not None:
            self.transport.drop(addr)
        self.setup.forget(peer.peer_id)
        self.failed.pop(peer.peer_id, None)

    def unusable(self, peer: Peer) -> str | None:
        """Why RDMA cannot carry traffic to ``peer`` (None: it can, or will once set up)."""
        if peer.peer_id in self.failed:
            return f"the RDMA connection to the peer failed: {self.failed[peer.peer_id]}"
        return None

    def connected(self, peer_id: int) -> bool:
        addr = self._peers.get(peer_id)
        return addr is not None and self.transport.connected(addr)

    # ------------------------------------------------------------------ the exchange

    def on_frame(self, peer: Peer, body: memoryview | bytes, now: float) -> None:
        """An RDMA_SETUP frame from a known peer. Raises ``wire.WireError`` when malformed."""
        self.setup.on_frame(peer.peer_id, peer.addr, body, now)
        self._apply()

    def tick(self, now: float) -> None:
        self.setup.tick(now)
        self._apply()

    def take_outgoing(self) -> list[rdma_setup.Outgoing]:
        return self.setup.take_outgoing()

    def _apply(self) -> None:
        while events := self.setup.take_events():  # (handling one may raise another)
            for ev in events:
                self._handle(ev)

    def _handle(self, ev: rdma_setup.Event) -> None:
        t = self.transport
        if isinstance(ev, EndpointWanted):
            if ev.peer_id in self.failed:
                self.setup.refuse(ev.peer_id, ev.addr, self.failed[ev.peer_id])
                return
            try:
                local = t.prepare(ev.addr)
                self._peers[ev.peer_id] = ev.addr
                t.connect(ev.addr, ev.remote)
            except (OSError, ValueError) as exc:
                t.drop(ev.addr)
                self._peers.pop(ev.peer_id, None)
                self.setup.refuse(ev.peer_id, ev.addr, str(exc))
                self._record(ev.peer_id, ev.addr, str(exc), [], 0)
                return
            self.setup.accept(ev.peer_id, local)
            log.info("rdma: connected to peer %016x (its offer)", ev.peer_id)
        elif isinstance(ev, Connect):
            addr = self._peers.get(ev.peer_id)
            if addr is None:
                return
            try:
                t.connect(addr, ev.remote)
            except (OSError, ValueError) as exc:
                self.setup.fail(ev.peer_id, str(exc))
                return
            log.info("rdma: connected to peer %016x", ev.peer_id)
        elif isinstance(ev, PeerReady):
            addr = self._peers.get(ev.peer_id)
            if addr is not None:
                t.peer_ready(addr)
        elif isinstance(ev, Failed):
            addr = self._peers.pop(ev.peer_id, None)
            unsent, lost = t.drop(addr) if addr is not None else ([], 0)
            self._record(ev.peer_id, addr, ev.reason, unsent, lost)

    def _give_up(self, peer_id: int, addr: Address, reason: str) -> None:
        """We cannot even start: tell the peer (it may have offered meanwhile)."""
        self.setup.refuse(peer_id, addr, reason)
        self._record(peer_id, addr, reason, [], 0)

    def _record(
        self, peer_id: int, addr: Address | None, reason: str, unsent: list[bytes], lost: int
    ) -> None:
        if peer_id in self.failed:
            return
        self.failed[peer_id] = reason
        log.warning("rdma: no RDMA to peer %016x: %s", peer_id, reason)
        if self.on_failure is not None:
            self.on_failure(LinkFailed(peer_id, addr or ("", 0), reason, unsent, lost))

    def _transport_failed(self, addr: Address, reason: str) -> None:
        """A completion failed on the connection to ``addr``: the link is over."""
        for peer_id, a in list(self._peers.items()):
            if a == addr:
                self.setup.fail(peer_id, reason)  # (tells the peer, and gives a Failed event)
        self._apply()
