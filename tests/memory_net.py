"""Sans-IO nodes wired in memory: a fake clock, a network of queues, no socket, no event loop.

Each `MemoryPeer` is what a session builds (a `Discovery`, a `ChannelTable` and a
`PeerNode`), driven the way the driver drives it: datagrams in through
``receive_datagrams``, out through ``datagrams_to_send``, the node's timer through
``get_timer``/``handle_timer``, the control plane every tick. `MemoryNet.run_until` moves the
clock from one deadline to the next, so a scenario of minutes runs in milliseconds, and the same
seed gives the same datagrams in the same order.

The network: every datagram arrives ``delay`` after it is sent (plus a seeded draw of up to
``jitter``, which reorders), unless it is lost (a seeded draw against ``loss``) or a link is cut
(`cut`); a cut link drops both ways, like a partition. A datagram may also arrive twice
(``duplicate``). The nodes are of the engine ``engine`` names (default: the one
``INSANE_ENGINE`` chooses), sealed with ``keyring`` where one is given.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from insane import errors, load_config
from insane.control.discovery import (
    InterestChanged,
    PeerBack,
    PeerDown,
    PeerSuspect,
    PeerUp,
)
from insane.protocol import security
from insane.protocol.node import PeerNode
from insane.protocol.node_base import Report, Room
from insane.protocol.router import LocalSub, Router
from insane.qos.channels import ChannelTable
from insane.qos.engine import node_class
from insane.transports.base import Address, TransportCapability

TICK = 0.05  # the driver's control-plane tick
MTU = 1472


@dataclass
class Delivery:
    at: float
    subject: str
    data: bytes
    reply: str
    headers: dict[str, str] | None


@dataclass
class MemoryPeer:
    """One session's sans-IO parts, as the driver holds them."""

    net: MemoryNet
    name: str
    addr: Address
    discovery: Any
    channels: ChannelTable
    node: PeerNode
    got: list[Delivery] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)
    rooms: int = 0
    peer_events: list[tuple[str, str]] = field(default_factory=list)
    down: bool = False  # stopped (SIGSTOP): nothing in, nothing out, no timers
    _next_tick: float = 0.0
    _sids: Any = field(default_factory=lambda: itertools.count(1))

    @property
    def peer_id(self) -> int:
        return self.node.peer_id

    def subscribe(self, pattern: str, queue: str = "") -> int:
        sid = next(self._sids)

        def deliver(subject: str, data: bytes, reply: str, headers: Any, _sid: int) -> None:
            self.got.append(Delivery(self.net.now, subject, bytes(data), reply, headers))

        self.node.add_local(LocalSub(sid, pattern, queue, deliver))
        self.discovery.set_interest(self.node.router.local_interest(), self.net.now)
        self.pump()
        return sid

    def publish(
        self, subject: str, data: bytes, reply: str = "", headers: dict[str, str] | None = None
    ) -> None:
        self.node.publish(subject, data, reply, headers)
        self.net.after_step()

    def payloads(self, subject: str | None = None) -> list[bytes]:
        return [d.data for d in self.got if subject is None or d.subject == subject]

    # ----------------------------------------------------------------- the driver's part

    def pump(self) -> None:
        """The driver's pump: discovery's frames out, its events applied to the node."""
        disc, node = self.discovery, self.node
        for addr, ftype, body in disc.take_outgoing():
            node.send_frame(addr, ftype, body)
        for ev in disc.take_events():
            if isinstance(ev, InterestChanged):
                node.set_remote(ev.peer.peer_id, ev.peer.interest)
            elif isinstance(ev, PeerUp):
                self.peer_events.append(("up", ev.peer.name))
            elif isinstance(ev, PeerSuspect):
                self.peer_events.append(("suspect", ev.peer.name))
                node.set_suspect(ev.peer.peer_id, True)
            elif isinstance(ev, PeerBack):
                self.peer_events.append(("back", ev.peer.name))
                node.set_suspect(ev.peer.peer_id, False)
            elif isinstance(ev, PeerDown):
                self.peer_events.append(("down", ev.peer.name))
                self.channels.forget_peer(ev.peer.peer_id)
                node.peer_down(ev.peer)

    def events(self) -> None:
        while (ev := self.node.next_event()) is not None:
            if isinstance(ev, Room):
                self.rooms += 1
            elif isinstance(ev, Report):
                self.errors.append(ev.error)

    def tick(self, now: float) -> None:
        self._next_tick = now + TICK
        self.discovery.tick(now)
        self.node.update_stalled(now)
        self.node.expire(now)
        self.pump()

    def deadline(self) -> float:
        at = self.node.get_timer()
        return self._next_tick if at is None else min(at, self._next_tick)

    def losses(self) -> int:
        return sum(e.count for e in self.errors if isinstance(e, errors.MessagesLostError))


class MemoryNet:
    """The peers, the clock and the datagrams in flight (see the module docstring)."""

    def __init__(
        self,
        seed: int = 1,
        *,
        delay: float = 0.0001,
        loss: float = 0.0,
        config: Any = None,
        jitter: float = 0.0,
        duplicate: float = 0.0,
        engine: str | None = None,
        keyring: security.Keyring | None = None,
        encrypt: bool = False,
    ) -> None:
        self.now = 0.0
        self.delay = delay
        self.loss = loss
        self.jitter = jitter
        self.duplicate = duplicate
        self.node_class = node_class(engine)
        self.keyring = keyring
        self.encrypt = encrypt
        self.rng = random.Random(seed)
        random.seed(seed)  # (stream epochs come from the random module)
        self._seed = seed
        self.config = config or load_config({})
        self.peers: dict[Address, MemoryPeer] = {}
        self._flight: list[tuple[float, int, bytes, Address, Address]] = []
        self._order = itertools.count()
        self.cuts: set[frozenset[Address]] = set()
        #: What went on the wire: (time, src, dst, datagram) — the run's fingerprint.
        self.log = hashlib.sha256()
        self.sent = 0
        self.dropped = 0
        self.drop_if: Callable[[bytes, Address, Address], bool] | None = None

    def add(self, name: str) -> MemoryPeer:
        from insane.control.discovery import Discovery

        n = len(self.peers) + 1
        rng = random.Random(self._seed * 1000 + n)
        addr = (f"10.0.0.{n}", 7000)
        peer_id = rng.getrandbits(64) or 1
        cfg = self.config
        disc = Discovery(
            peer_id,
            name=name,
            heartbeat_interval=cfg.discovery.heartbeat_interval,
            peer_timeout=cfg.discovery.peer_timeout,
            suspect_hold=cfg.reliability.retransmit_age,
            max_peers=cfg.limits.max_peers,
        )
        disc._secret = rng.randbytes(32)  # (cookies the same on every run)
        channels = ChannelTable(cfg, {"udp": TransportCapability("udp", True)}, None)
        keyring = None
        if self.keyring is not None:  # (each node its own, as each process has)
            keyring = security.Keyring(self.keyring.current, list(self.keyring.previous))
        node = self.node_class(
            peer_id,
            cfg.domain,
            control=disc,
            channels=channels,
            streams=cfg.reliability,
            stall_timeout=cfg.reliability.stall_timeout,
            clock=lambda: self.now,
            wall_clock=lambda: self.now,
            max_payload=1 << 24,
            router=Router(random.Random(rng.getrandbits(32))),
            keyring=keyring,
            encrypt=self.encrypt,
        )
        node.set_datagram_limit(MTU)
        peer = MemoryPeer(self, name, addr, disc, channels, node, _next_tick=self.now)
        self.peers[addr] = peer
        return peer

    # ----------------------------------------------------------------- the network

    def introduce(self, a: MemoryPeer, b: MemoryPeer) -> None:
        """``a`` knows ``b``'s address (a static peer): it announces; they handshake."""
        a.discovery.announce_to(b.addr)
        a.pump()
        self.after_step()

    def cut(self, a: MemoryPeer, b: MemoryPeer) -> None:
        self.cuts.add(frozenset((a.addr, b.addr)))

    def heal(self, a: MemoryPeer, b: MemoryPeer) -> None:
        self.cuts.discard(frozenset((a.addr, b.addr)))

    def _send(self, src: MemoryPeer) -> None:
        for via, datagrams in src.node.datagrams_to_send().items():
            assert via == "udp", via
            for data, dst in datagrams:
                data = bytes(data)
                self.sent += 1
                self.log.update(f"{self.now:.6f} {src.addr} {dst} ".encode() + data)
                if (
                    frozenset((src.addr, dst)) in self.cuts
                    or (self.loss and self.rng.random() < self.loss)
                    or (self.drop_if is not None and self.drop_if(data, src.addr, dst))
                ):
                    self.dropped += 1
                    continue
                copies = 2 if self.duplicate and self.rng.random() < self.duplicate else 1
                for _ in range(copies):
                    at = self.now + self.delay
                    if self.jitter:
                        at += self.rng.random() * self.jitter
                    heapq.heappush(self._flight, (at, next(self._order), data, src.addr, dst))

    def after_step(self) -> None:
        """What the end of an event-loop turn does: flush every node, put it on the wire."""
        for p in self.peers.values():
            if not p.down:
                p.node.flush()
                self._send(p)
                p.events()

    # ----------------------------------------------------------------- the clock

    def run_until(self, until: float) -> None:
        """Move the clock to ``until``, handling every arrival and deadline on the way."""
        while True:
            live = [p for p in self.peers.values() if not p.down]
            at = min((p.deadline() for p in live), default=until)
            if self._flight and self._flight[0][0] < at:
                at = self._flight[0][0]
            if at > until:
                self.now = until
                return
            self.now = max(self.now, at)
            self._step(live)

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def settle(self, limit: float = 5.0, check: Callable[[], bool] | None = None) -> None:
        """Run until ``check()`` holds (or nothing is in flight), within ``limit`` seconds."""
        end = self.now + limit
        while self.now < end:
            if check() if check is not None else not self._flight:
                return
            self.run_for(TICK)
        raise AssertionError(f"not settled after {limit} s (at t={self.now:.3f})")

    def _step(self, live: list[MemoryPeer]) -> None:
        now = self.now
        batches: dict[Address, list[tuple[bytes, Address]]] = {}
        while self._flight and self._flight[0][0] <= now:
            _at, _n, data, src, dst = heapq.heappop(self._flight)
            batches.setdefault(dst, []).append((data, src))
        for dst, batch in batches.items():
            peer = self.peers.get(dst)
            if peer is not None and not peer.down:
                peer.node.receive_datagrams(batch, "udp", now)
                peer.pump()
        for p in live:
            at = p.node.get_timer()
            if at is not None and at <= now:
                p.node.handle_timer(now)
            if p._next_tick <= now:
                p.tick(now)
        self.after_step()

    def fingerprint(self) -> str:
        return self.log.hexdigest()
