"""Subjects as the data plane sees them: the configured channel each belongs to, its QoS in
the terms the node needs, its counters, and the route its messages take to each peer.

`ChannelTable` is what the node (protocol/node.py) asks through its `Channels` protocol: the
node never sees the YAML models or the policy. A route is chosen by the policy the first time
a channel's message goes to a peer, noted in ``insane_route_info``, and a fallback is logged
and counted once per channel pattern and peer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from insane import errors
from insane.ops import metrics
from insane.ops.metrics import STORE, Cell
from insane.protocol.permissions import Permissions
from insane.protocol.reliability import ORDERED, UNORDERED
from insane.qos.model import ChannelQoS, Config
from insane.qos.policy import choose_route
from insane.subjects import SubjectError, reply_family, validate_subject
from insane.transports.base import TransportCapability

log = logging.getLogger("insane")

#: Subjects remembered before the table starts afresh (subjects can be unbounded).
_CACHE_LIMIT = 8192


def stream_kind(qos: ChannelQoS) -> int:
    """The stream a channel's messages travel on: 0 (none: best effort), or a reliable kind."""
    if qos.reliability != "reliable":
        return 0
    return ORDERED if qos.ordering == "ordered" else UNORDERED


class Counters:
    """A channel's message and byte counters on one transport."""

    __slots__ = ("bytes_received", "bytes_sent", "received", "sent")

    def __init__(self, transport: str, pattern: str) -> None:
        self.sent = STORE.cell("insane_messages_sent", transport, pattern)
        self.bytes_sent = STORE.cell("insane_bytes_sent", transport, pattern)
        self.received = STORE.cell("insane_messages_received", transport, pattern)
        self.bytes_received = STORE.cell("insane_bytes_received", transport, pattern)


@dataclass
class Channel:
    """What the node knows about one subject: its configured pattern, QoS and counters."""

    pattern: str
    qos: ChannelQoS
    subject_bytes: bytes
    delivered: Cell
    #: Counters per transport (``counters``).
    via: dict[str, Counters] = field(default_factory=dict)
    #: The transport chosen for each peer (`ChannelTable.route`).
    routed: dict[int, str] = field(default_factory=dict)
    #: The reliable stream its messages travel on (0: best effort).
    stream_kind: int = 0
    #: This session's identity may publish here (security.identities).
    may_publish: bool = True

    def __post_init__(self) -> None:
        self.stream_kind = stream_kind(self.qos)

    @property
    def overflow(self) -> str:
        return self.qos.overflow

    @property
    def poll(self) -> bool:
        return self.qos.consumption == "poll"

    def counters(self, transport: str) -> Counters:
        c = self.via.get(transport)
        if c is None:
            c = self.via[transport] = Counters(transport, self.pattern)
        return c


class ChannelTable:
    """Subject -> `Channel`, and the routes of channels to peers."""

    def __init__(
        self,
        config: Config,
        capabilities: Mapping[str, TransportCapability],
        own_perms: Permissions | None,
    ) -> None:
        self.config = config
        self.capabilities = capabilities
        self._own_perms = own_perms
        self._channels: dict[str, Channel] = {}
        #: The channel of a subject seen before, else None (the dict's own get: the receive
        #: path asks it for every message).
        self.cached: Callable[[str], Channel | None] = self._channels.get
        #: (channel pattern, peer id) -> its insane_route_info labels, held while in use.
        self._routes: dict[tuple[str, int], tuple[str, str, str]] = {}
        #: The transports this session runs (a route to another falls back to kernel UDP).
        self.running: Collection[str] = ("udp",)
        #: Per peer, the transports that cannot reach it for a reason of their own (RDMA).
        self.unusable: Callable[[Any], dict[str, str]] = lambda _peer: {}

    def get(self, subject: str) -> Channel:
        """The channel of ``subject`` (``BadSubjectError`` for an invalid one); request
        replies share one channel per inbox family."""
        ch = self._channels.get(subject)
        if ch is None:
            family = reply_family(subject)
            if family is not None:
                # Request replies share one channel (their subject is encoded per message).
                ch = self._channels.get(family)
                if ch is not None:
                    return ch
            try:
                validate_subject(subject)
            except SubjectError as exc:
                raise errors.BadSubjectError(str(exc)) from None
            key = family or subject
            pattern, qos = self.config.qos_for(key)
            if len(self._channels) >= _CACHE_LIMIT:
                self._channels.clear()
            ch = self._channels[key] = Channel(
                pattern,
                qos,
                b"" if family else subject.encode(),
                STORE.cell("insane_messages_delivered", pattern),
            )
            if self._own_perms is not None and not family:
                ch.may_publish = self._own_perms.may_publish(subject)
        return ch

    def values(self) -> list[Channel]:
        return list(self._channels.values())

    def route(self, ch: Channel, peer: Any) -> str:
        """The first message of a channel to a peer: ask the policy which transport it uses
        (kept in ``ch.routed``); log and count a fallback once per (channel pattern, peer)."""
        route = choose_route(ch.qos, self.capabilities, peer.transports, self.unusable(peer))
        ch.routed[peer.peer_id] = route.transport if route.transport in self.running else "udp"
        if (ch.pattern, peer.peer_id) in self._routes:
            return ch.routed[peer.peer_id]
        labels = (ch.pattern, metrics.peer_label(peer.name, peer.peer_id), route.transport)
        self._routes[(ch.pattern, peer.peer_id)] = labels
        STORE.hold("insane_route_info", labels)
        if route.fallback:
            reason = route.reasons[0] if route.reasons else "unavailable"
            log.info(
                "channel %s to peer %s: wanted %s, using %s (%s)",
                ch.pattern,
                peer.name or f"{peer.peer_id:016x}",
                route.wanted,
                route.transport,
                reason,
            )
            # this host lacks (or cannot use) what the QoS ranks first, or the peer's side does
            wanted = self.capabilities.get(route.wanted)
            local_ok = wanted is not None and wanted.available and wanted.healthy
            short = "peer" if local_ok else "unavailable"
            STORE.cell(
                "insane_policy_fallbacks", ch.pattern, route.wanted, route.transport, short
            ).value += 1
        return ch.routed[peer.peer_id]

    def route_for(self, subject: str, peer: Any | None = None) -> Any:
        """The policy's route for ``subject`` toward ``peer`` (or a peer like us)."""
        ch = self.get(subject)
        if peer is None:
            transports = tuple(n for n, c in self.capabilities.items() if c.available)
            return choose_route(ch.qos, self.capabilities, transports)
        return choose_route(ch.qos, self.capabilities, peer.transports, self.unusable(peer))

    def forget_peer(self, peer_id: int) -> None:
        """A peer is gone: its routes with it."""
        for key in [k for k in self._routes if k[1] == peer_id]:
            self._forget(key)
        for ch in self._channels.values():
            ch.routed.pop(peer_id, None)

    def forget_transport(self, peer_id: int, transport: str) -> None:
        """Routes of a peer over ``transport`` are chosen again (its connection failed)."""
        for ch in self._channels.values():
            if ch.routed.get(peer_id) == transport:
                del ch.routed[peer_id]
        for key in [k for k in self._routes if k[1] == peer_id]:
            self._forget(key)

    def forget_all(self) -> None:
        for key in list(self._routes):
            self._forget(key)

    def _forget(self, key: tuple[str, int]) -> None:
        labels = self._routes.pop(key, None)
        if labels is not None:
            STORE.release("insane_route_info", labels)
