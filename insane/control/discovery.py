"""Peers: announcements, liveness, heartbeat RTT and the exchange of subscription interest.

Sans-IO: frames and a clock go in; ``take_outgoing()`` gives ``(address, frame type, body)``
to send and ``take_events()`` gives peer changes for the session to act on. It never touches
a socket, so loss and timeouts are tested by feeding it frames and times.

Admission. A peer is admitted only through a handshake from its own address, so that a
stranger, or anyone forging source addresses, makes us hold nothing: an ANNOUNCE from an
unknown sender is answered with a *cookie* (a keyed hash of its id, address and the time,
which we do not store), and the sender is admitted when an ANNOUNCE of its own echoes that
cookie back; its answer carries its cookie for us, which we echo in turn. Admissions are
limited per source IP address. Any other frame from an unknown sender is dropped
(``unknown_peer``) and not answered.

Interest is a versioned snapshot of a peer's subscriptions. A snapshot is re-sent every
``retransmit`` seconds until the peer acknowledges that version; heartbeats carry the current
version, so a peer holding a stale snapshot asks for the new one.

Liveness. A peer silent for ``peer_timeout`` seconds becomes *suspect* (`PeerSuspect`): the
session gives it no new queue-group work or requests, but keeps its streams and its interest,
and keeps sending to it. Heard again, it is back (`PeerBack`). Silent for ``suspect_hold``
seconds more (the reliability layer's ``retransmit_age``: past it, nothing could be repaired
anyway), it is down (`PeerDown`). A BYE, a process known to be gone (`remove`) or another peer
taking its address drops it at once.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from insane.protocol import wire
from insane.protocol.wire import InterestEntry
from insane.transports.base import Address

Outgoing = tuple[Address, int, bytes]

#: Cookies change every this many seconds (the current and the previous one are accepted).
_COOKIE_PERIOD = 30.0
#: Admissions per source IP address: a bucket of this many, refilled at this rate per second.
ADMIT_BURST = 64
ADMIT_RATE = 16.0


@dataclass
class Peer:
    peer_id: int
    addr: Address
    name: str = ""
    transports: tuple[str, ...] = ("udp",)
    last_seen: float = 0.0
    #: Their interest snapshot and its version as we hold it; the newest version they advertised.
    interest: list[InterestEntry] = field(default_factory=list)
    interest_version: int = -1
    advertised_version: int = 0
    #: The highest version of *our* interest they acknowledged, and when we last sent it.
    acked_version: int = -1
    interest_sent_at: float = -1e9
    #: Heartbeat echo state (their clock) and the measured round-trip time in seconds.
    echo_ns: int = 0
    echo_received_at: float = 0.0
    rtt: float | None = None
    #: Silent past the timeout (or unreachable): no new work, its state kept (`PeerSuspect`).
    suspect: bool = False


@dataclass(frozen=True)
class PeerUp:
    peer: Peer


@dataclass(frozen=True)
class PeerDown:
    peer: Peer
    reason: str


@dataclass(frozen=True)
class PeerSuspect:
    """Silent for ``peer_timeout`` (or its address unreachable): kept, but given no new work."""

    peer: Peer
    reason: str


@dataclass(frozen=True)
class PeerBack:
    """A suspect peer was heard again."""

    peer: Peer


@dataclass(frozen=True)
class InterestChanged:
    peer: Peer


@dataclass(frozen=True)
class RttMeasured:
    """A heartbeat echo came back: one round-trip time sample, in seconds."""

    peer: Peer
    rtt: float


Event = PeerUp | PeerDown | PeerSuspect | PeerBack | InterestChanged | RttMeasured


class Discovery:
    def __init__(
        self,
        peer_id: int,
        *,
        name: str = "",
        transports: tuple[str, ...] = ("udp",),
        heartbeat_interval: float = 0.5,
        peer_timeout: float = 2.5,
        suspect_hold: float = 10.0,
        retransmit: float = 0.1,
        max_peers: int = 1024,
    ) -> None:
        self.peer_id = peer_id
        self.max_peers = max_peers
        self.suspect_hold = suspect_hold
        self._secret = os.urandom(32)
        #: Admission tokens per source IP: (tokens, when last refilled).
        self._admissions: dict[str, tuple[float, float]] = {}
        self.name = name
        self.transports = transports
        self.heartbeat_interval = heartbeat_interval
        self.peer_timeout = peer_timeout
        self.retransmit = retransmit
        self.peers: dict[int, Peer] = {}
        self.interest_version = 0
        self._interest_body = wire.encode_interest_body(0, [])
        self._out: list[Outgoing] = []
        self._events: list[Event] = []
        self._last_heartbeat = -1e9

    # ------------------------------------------------------------------ outputs

    @property
    def has_news(self) -> bool:
        """Frames to send or events to report are waiting."""
        return bool(self._out or self._events)

    def take_outgoing(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[Event]:
        ev, self._events = self._events, []
        return ev

    def announce_body(
        self, *, reply: bool, cookie: str | None = None, echo: str | None = None
    ) -> bytes:
        """Our ANNOUNCE; ``cookie``: the one we ask an unknown peer to echo; ``echo``: the one
        it gave us."""
        info: dict[str, Any] = {
            "v": wire.VERSION,
            "name": self.name,
            "transports": list(self.transports),
            "reply": reply,
            "iv": self.interest_version,
            "host": socket.gethostname(),
        }
        if cookie is not None:
            info["cookie"] = cookie
        if echo is not None:
            info["echo"] = echo
        return wire.announce_body(info)

    def announce_to(self, addr: Address) -> None:
        """Introduce ourselves to an address (static peer, registry entry); it answers in kind."""
        self._out.append((addr, wire.ANNOUNCE, self.announce_body(reply=True)))

    def bye_frames(self) -> list[Outgoing]:
        return [(p.addr, wire.BYE, b"") for p in self.peers.values()]

    # ------------------------------------------------------------------ our interest

    def set_interest(self, entries: list[InterestEntry], now: float) -> int:
        self.interest_version += 1
        self._interest_body = wire.encode_interest_body(self.interest_version, entries)
        for peer in self.peers.values():
            self._send_interest(peer, now)
        return self.interest_version

    def _send_interest(self, peer: Peer, now: float) -> None:
        peer.interest_sent_at = now
        self._out.append((peer.addr, wire.INTEREST, self._interest_body))

    def unacked_peers(self, version: int | None = None) -> list[Peer]:
        v = self.interest_version if version is None else version
        return [p for p in self.peers.values() if p.acked_version < v]

    # ------------------------------------------------------------------ input

    def on_frame(
        self, sender: int, ftype: int, body: memoryview | bytes, addr: Address, now: float
    ) -> None:
        """Handle one control frame. Raises ``wire.WireError`` for a malformed body."""
        view = memoryview(body)
        if ftype == wire.ANNOUNCE:
            self._on_announce(sender, wire.decode_announce(view), addr, now)
            return
        peer = self.peers.get(sender)
        if peer is None:
            # A stranger, or a peer we dropped: it is not answered; it must announce itself.
            raise wire.WireError("unknown_peer", f"{wire.FRAME_NAMES.get(ftype, ftype)} frame")
        self.heard(peer, now)
        peer.addr = addr
        if ftype == wire.HEARTBEAT:
            iv, sent_ns, echo_ns, hold_ns = wire.decode_heartbeat(view)
            peer.advertised_version = max(peer.advertised_version, iv)
            peer.echo_ns = sent_ns
            peer.echo_received_at = now
            if echo_ns:
                rtt = (int(now * 1e9) - echo_ns - hold_ns) / 1e9
                if 0 <= rtt < 60:
                    peer.rtt = rtt
                    self._events.append(RttMeasured(peer, rtt))
            if peer.interest_version < peer.advertised_version:
                self._out.append((addr, wire.INTEREST_REQ, b""))
        elif ftype == wire.INTEREST:
            version, entries = wire.decode_interest(view)
            self._out.append((addr, wire.INTEREST_ACK, wire.u32_body(version)))
            if version > peer.interest_version:
                peer.interest_version = version
                peer.advertised_version = max(peer.advertised_version, version)
                peer.interest = entries
                self._events.append(InterestChanged(peer))
        elif ftype == wire.INTEREST_ACK:
            peer.acked_version = max(peer.acked_version, wire.decode_u32(view))
        elif ftype == wire.INTEREST_REQ:
            self._send_interest(peer, now)
        elif ftype == wire.BYE:
            self._remove(sender, "bye")
        else:
            raise wire.WireError("unknown_frame", f"type {ftype}")

    def heard(self, peer: Peer, now: float) -> None:
        """Anything came from ``peer`` (the session calls it for every datagram)."""
        peer.last_seen = now
        if peer.suspect:
            peer.suspect = False
            self._events.append(PeerBack(peer))

    # ------------------------------------------------------------------ admission

    def _cookie(self, sender: int, addr: Address, period: int) -> str:
        msg = f"{sender:x}|{addr[0]}|{addr[1]}|{period}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()[:16]

    def _cookie_ok(self, echo: object, sender: int, addr: Address, now: float) -> bool:
        if not isinstance(echo, str):
            return False
        period = int(now // _COOKIE_PERIOD)
        return any(
            hmac.compare_digest(echo, self._cookie(sender, addr, p)) for p in (period, period - 1)
        )

    def _rate_ok(self, ip: str, now: float) -> bool:
        """One admission step for ``ip`` (a token bucket): False when over the limit."""
        tokens, at = self._admissions.get(ip, (float(ADMIT_BURST), now))
        tokens = min(float(ADMIT_BURST), tokens + (now - at) * ADMIT_RATE)
        if tokens < 1.0:
            return False
        if len(self._admissions) >= 4096 and ip not in self._admissions:
            self._admissions.clear()
        self._admissions[ip] = (tokens - 1.0, now)
        return True

    def _on_announce(self, sender: int, info: dict[str, Any], addr: Address, now: float) -> None:
        reply = info.get("reply") is True
        theirs = info.get("cookie")
        theirs = theirs if isinstance(theirs, str) and len(theirs) <= 64 else None
        peer = self.peers.get(sender)
        if peer is None:
            if not self._rate_ok(addr[0], now):
                raise wire.WireError("too_many_peers", f"admissions from {addr[0]}")
            if not self._cookie_ok(info.get("echo"), sender, addr, now):
                # Not admitted yet: our cookie, for it to echo (we keep nothing meanwhile).
                cookie = self._cookie(sender, addr, int(now // _COOKIE_PERIOD))
                body = self.announce_body(reply=False, cookie=cookie, echo=theirs)
                self._out.append((addr, wire.ANNOUNCE, body))
                return
            self._admit()
            # It echoed our cookie: it announced from this address. Answer first (echoing its
            # cookie, so that it admits us too), so our announcement precedes our interest.
            if reply or theirs is not None:
                body = self.announce_body(reply=False, echo=theirs)
                self._out.append((addr, wire.ANNOUNCE, body))
            self._add_peer(sender, addr, now, info)
            return
        self.heard(peer, now)
        peer.addr = addr
        self._describe(peer, info)
        if reply or theirs is not None:
            # It asks for an answer, or does not know us (it dropped us): echo its cookie.
            self._out.append((addr, wire.ANNOUNCE, self.announce_body(reply=False, echo=theirs)))
            self._send_interest(peer, now)
        iv = info.get("iv")
        if isinstance(iv, int) and iv > peer.interest_version:
            peer.advertised_version = max(peer.advertised_version, iv)

    @staticmethod
    def _describe(peer: Peer, info: dict[str, Any]) -> None:
        """Take the name and transports from an announcement, ignoring ill-typed fields."""
        name = info.get("name")
        if isinstance(name, str):
            peer.name = name[:256]
        transports = info.get("transports")
        if isinstance(transports, list):
            peer.transports = tuple(t for t in transports if isinstance(t, str))[:8]

    def _admit(self) -> None:
        """Refuse a new peer beyond ``max_peers`` (a WireError: counted and dropped)."""
        if len(self.peers) >= self.max_peers:
            raise wire.WireError("too_many_peers", f"already {len(self.peers)} peers")

    def _add_peer(self, sender: int, addr: Address, now: float, info: dict[str, Any]) -> Peer:
        """A new peer: record it and tell it what we subscribe to. A peer that held its
        address before is gone (a process restarted on the same port)."""
        for old in [p for p in self.peers.values() if p.addr == addr]:
            self._remove(old.peer_id, "replaced")
        peer = Peer(peer_id=sender, addr=addr, last_seen=now)
        iv = info.get("iv")
        if isinstance(iv, int) and iv > 0:
            peer.advertised_version = iv
        self._describe(peer, info)
        self.peers[sender] = peer
        self._events.append(PeerUp(peer))
        self._send_interest(peer, now)
        # Ask for its interest too: after we dropped a live peer, it believes we hold it.
        self._out.append((addr, wire.INTEREST_REQ, b""))
        return peer

    def _remove(self, peer_id: int, reason: str) -> None:
        peer = self.peers.pop(peer_id, None)
        if peer is not None:
            self._events.append(PeerDown(peer, reason))

    def remove(self, peer_id: int, reason: str) -> None:
        """Drop a peer at once (its process is known to be gone)."""
        self._remove(peer_id, reason)

    def suspect(self, peer_id: int, reason: str) -> None:
        """Make a peer suspect at once (its address answered ICMP port unreachable)."""
        peer = self.peers.get(peer_id)
        if peer is not None and not peer.suspect:
            peer.suspect = True
            self._events.append(PeerSuspect(peer, reason))

    @property
    def alive(self) -> list[Peer]:
        """The peers that are not suspect."""
        return [p for p in self.peers.values() if not p.suspect]

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> None:
        for peer in list(self.peers.values()):
            silent = now - peer.last_seen
            if silent > self.peer_timeout + self.suspect_hold:
                self._remove(peer.peer_id, "timeout")
            elif silent > self.peer_timeout and not peer.suspect:
                peer.suspect = True
                self._events.append(PeerSuspect(peer, f"silent for {silent:.1f} s"))
        for peer in self.peers.values():
            if (
                peer.acked_version < self.interest_version
                and now - peer.interest_sent_at >= self.retransmit
            ):
                self._send_interest(peer, now)
        if now - self._last_heartbeat >= self.heartbeat_interval:
            self._last_heartbeat = now
            now_ns = int(now * 1e9)
            for peer in self.peers.values():
                hold = int((now - peer.echo_received_at) * 1e9) if peer.echo_ns else 0
                body = wire.heartbeat_body(self.interest_version, now_ns, peer.echo_ns, hold)
                self._out.append((peer.addr, wire.HEARTBEAT, body))

