"""What the parts of the node share: the protocols it asks of the layers around it, its
events, and the state its sending side (`Outbound`) and receiving side (`Inbound`) both
touch. The node itself is `insane.protocol.node.PeerNode`.

The node never imports the QoS models, the control plane or a transport: it learns channels
through `Channels`, peers through `Control` (the control plane's peer table and its frames),
and hands datagrams out through ``on_output`` (the driver's) or `datagrams_to_send`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from insane.ops.metrics import Cell
from insane.transports.base import Address

if TYPE_CHECKING:
    from insane.protocol.batching import OutQueue
    from insane.protocol.flow import FlowIn, FlowOut
    from insane.protocol.fragments import Fragmenter, Reassembler
    from insane.protocol.permissions import Permissions
    from insane.protocol.reliable_links import ReliableLinks
    from insane.protocol.router import Router
    from insane.protocol.security import Opener, Sealer

Datagrams = list[tuple[bytes, Address]]


class PeerView(Protocol):
    """A peer as the control plane knows it."""

    @property
    def peer_id(self) -> int: ...
    @property
    def addr(self) -> Address: ...
    @property
    def name(self) -> str: ...
    @property
    def transports(self) -> tuple[str, ...]: ...
    @property
    def last_seen(self) -> float: ...
    @property
    def suspect(self) -> bool: ...


class Control(Protocol):
    """The control plane beside the node (control/discovery.py): its peer table, told of
    every datagram a peer sends, and handed the control frames."""

    @property
    def peers(self) -> Mapping[int, Any]: ...
    @property
    def has_news(self) -> bool: ...
    def heard(self, peer: Any, now: float) -> None: ...
    def on_frame(
        self, sender: int, ftype: int, body: memoryview | bytes, addr: Address, now: float
    ) -> None: ...


class CountersView(Protocol):
    sent: Cell
    bytes_sent: Cell
    received: Cell
    bytes_received: Cell


class ChannelView(Protocol):
    """A channel as the node uses it (qos/channels.py: `Channel`)."""

    pattern: str
    subject_bytes: bytes
    delivered: Cell
    routed: dict[int, str]
    stream_kind: int
    may_publish: bool

    @property
    def overflow(self) -> str: ...
    @property
    def poll(self) -> bool: ...
    def counters(self, transport: str) -> Any: ...


class Channels(Protocol):
    """Subject -> channel, and the route of a channel to a peer (qos/channels.py)."""

    def get(self, subject: str) -> Any: ...
    def cached(self, subject: str) -> Any: ...
    def route(self, ch: Any, peer: Any) -> str: ...
    def values(self) -> list[Any]: ...


# --------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Report:
    """An error for the application's error_cb (loss, a slow consumer...)."""

    error: Exception


@dataclass(frozen=True, slots=True)
class Room:
    """A destination's window or stream opened: blocked publishers may go on."""


Event = Report | Room


@dataclass
class FastSend:
    """A subject whose messages go to remote peers only, with no reply, headers or groups.
    (The native engine has its own, `_engine.FastSend`, with the same fields.)"""

    ch: Any
    queues: tuple[OutQueue, ...]
    subject_bytes: bytes
    max_inline: int  # largest payload that fits in one frame
    #: (counters, how many of the queues use their transport): `fast_send_counts`
    counts: tuple[tuple[Any, int], ...] = ()
    #: Messages and payload bytes published since the counters were last brought up to date
    #: (at the next flush: the throughput path adds two integers, not 2n counters).
    msgs: int = 0
    nbytes: int = 0


def fast_send_counts(ch: Any, queues: tuple[OutQueue, ...]) -> tuple[tuple[Any, int], ...]:
    """A FastSend's ``counts``: each transport's counters of ``ch``, and how many of the
    queues leave by it."""
    per: dict[str, int] = {}
    for q in queues:
        per[q.transport] = per.get(q.transport, 0) + 1
    return tuple((ch.counters(t), n) for t, n in per.items())


@dataclass
class FastReceive:
    subject: str
    ch: Any
    #: One per target subscription: takes the subject and a run of payloads.
    runners: tuple[Callable[[str, list[bytes]], None], ...]


class NodeBase:
    """The state the sending and receiving sides share, and what each asks of the other."""

    peer_id: int
    domain: int
    max_payload: int
    control: Control
    channels: Channels
    router: Router
    links: ReliableLinks
    _clock: Callable[[], float]
    _wall_clock: Callable[[], float]
    _header: bytes
    _dgram_limit: int
    _max_body: int
    _chunk: int
    _fragmenter: Fragmenter
    _reassembler: Reassembler
    _out: dict[Any, OutQueue]
    _flows: dict[Address, FlowOut]
    _flow_in: dict[Address, FlowIn]
    _acks_now: set[Address]
    _ack_at: float | None
    _rel_at: float | None
    _window: int
    _stalled: set[Address]
    _blocked_since: dict[Address, float]
    _sealer: Sealer | None
    _opener: Opener | None
    _identities: Any
    _sender_perms: dict[int, Permissions]
    _out_bytes: int
    _tx_fast: dict[str, FastSend]
    _tx_reply: dict[str, FastSend]
    _rx_fast: dict[bytes, FastReceive]
    #: A destination's window or stream is full, or the kernel pushed back: publishers wait
    #: (``overflow: block``), drop or fail. Set by every flush.
    backpressure: bool
    _flush_asked: bool  # on_flush_wanted called since the last flush
    _uncounted: list[FastSend]  # fast paths with messages not yet in the counters
    _skip_full: bool
    _dropped: dict[tuple[str, str], Cell]
    _rx_via: str
    _outgoing: dict[str, Datagrams]
    _events: list[Event]
    #: The transports the driver runs (udp, and the kernel-bypass ones that started).
    _running: set[str]
    _dgram_tx: Cell
    _batch_tx: Cell
    _dgram_rx: Cell
    _batch_rx: Cell
    #: Set while the caller flushes when done (the receive path, a request).
    flush_due: bool
    #: What the driver provides: the bytes its transports hold because the kernel pushed
    #: back, and how much of it makes publishers wait.
    backlog_bytes: Callable[[], int]
    backlog_limit: int
    #: Hooks the driver sets: a batch of datagrams to send, for a transport (without it they
    #: wait for `datagrams_to_send`); frames were queued and want a flush at the end of this
    #: turn; an event waits (`next_event`); the control plane has news (frames came for it);
    #: an RDMA_SETUP frame came.
    on_output: Callable[[str, Datagrams], None] | None
    on_flush_wanted: Callable[[], None] | None
    on_event: Callable[[], None] | None
    on_control_news: Callable[[], None] | None
    #: `get_timer` moved earlier (the driver re-arms its one timer).
    on_timer_changed: Callable[[], None] | None
    on_rdma_setup: Callable[[int, Address, memoryview, float], None] | None

    # What each side asks of the other (defined in outbound.py and inbound.py).
    def _flush(self) -> None: ...
    def _send_frame(self, addr: Address, ftype: int, body: bytes) -> None: ...
    def _send_to_peers(
        self, frames: list[tuple[int, int, bytes]], addr: Address | None
    ) -> None: ...
    def _send_datagrams(
        self, datagrams: Datagrams, via: str = "udp", *, sealed: bool = False
    ) -> None: ...
    def _window_body(self, fin: FlowIn) -> bytes:
        raise NotImplementedError
    def _arm_reliability(self) -> None: ...
    def _drop(self, reason: str, n: int = 1) -> None: ...
    def _process_frames(
        self, data: bytes, pos: int, sender: int, addr: Address, now: float
    ) -> bool:
        raise NotImplementedError
    def _report(self, exc: Exception) -> None: ...
    def _report_lost(self, lost: list[Any]) -> None: ...
    def _report_discarded(self, peer_id: int, messages: int, why: str) -> None: ...
    def _report_gaps_sent(self) -> None: ...
    def _room(self) -> None: ...
