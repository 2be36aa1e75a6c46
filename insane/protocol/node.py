"""One peer's data plane, sans-IO: `PeerNode`.

The contract (docs and DESIGN: "The data plane"), as aioquic's connection is one:

- ``publish(subject, payload, reply, headers)`` (and ``publish_fast`` for plain messages)
  queues a message for the peers whose interest matches, and delivers it to local
  subscriptions;
- ``receive_datagrams(batch, via, now)`` takes what a transport read;
- ``datagrams_to_send()`` gives the datagrams to send, per transport and destination (or,
  with the ``on_output`` hook set, each batch goes to it as it is made);
- ``get_timer()`` / ``handle_timer(now)``: one deadline for the data plane's timers
  (reliability: TAILs and NACKs; delayed acknowledgements); ``expire(now)`` and
  ``update_stalled(now)``, the slow chores (reassembly expiry, silent destinations), on the
  control plane's tick;
- ``next_event()``: errors to report (losses, slow consumers), room in a window.

It never touches a socket, a thread or an event loop: bytes and a clock go in, bytes and
events come out, so two nodes wired in memory run every scenario deterministically. The
driver (insane/driver.py) moves the bytes and keeps the one timer; it also sets the hooks
(``on_output`` and the others in node_base.py) through which the node hands out datagrams and
says that something waits. The control plane beside the node (discovery, RDMA set-up) is
reached through the `Control` protocol; channels through `Channels`; nothing of QoS or
control is imported.

The work is split: `Outbound` (outbound.py) publishes, queues and flushes; `Inbound`
(inbound.py) receives and dispatches; this module holds the state, the peers' changes, the
timers and the events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from insane import errors
from insane.ops.metrics import STORE
from insane.protocol import security, wire
from insane.protocol.flow import DEFAULT_WINDOW
from insane.protocol.fragments import Fragmenter, Reassembler
from insane.protocol.inbound import Inbound
from insane.protocol.node_base import Channels, Control, Event, Report, Room
from insane.protocol.outbound import Outbound
from insane.protocol.permissions import Permissions
from insane.protocol.reliable_links import LostData, ReliableLinks, StreamSettings, is_ordered
from insane.protocol.router import LocalSub, Router
from insane.subjects import validate_subject
from insane.transports.base import Address

#: Large enough for a whole message of max_payload and its headers.
_REASSEMBLY_HEADROOM = 65536


class PeerNode(Inbound, Outbound):
    """The data plane of one session (see the module docstring)."""

    #: The parts an engine may replace with its own of the same interface (insane/engine).
    sealer_class: type[security.Sealer] = security.Sealer
    opener_class: type[security.Opener] = security.Opener
    links_class: type[ReliableLinks] = ReliableLinks
    #: Poll mode's spin on the kernel UDP socket in native code, for the driver to hand the
    #: transport (UdpTransport.native_spin); None: the transport's own Python loop.
    udp_spin: Callable[..., bool] | None = None

    def __init__(
        self,
        peer_id: int,
        domain: int,
        *,
        control: Control,
        channels: Channels,
        streams: StreamSettings,
        stall_timeout: float,
        clock: Callable[[], float],
        max_payload: int,
        wall_clock: Callable[[], float] = time.time,
        keyring: security.Keyring | None = None,
        encrypt: bool = False,
        identities: Any = None,
        router: Router | None = None,
    ) -> None:
        self.peer_id = peer_id
        self.domain = domain
        self.max_payload = max_payload
        self.control = control
        self.channels = channels
        self.stall_timeout = stall_timeout
        self._clock = clock
        self._wall_clock = wall_clock  # (a previous key's acceptance ends at a wall time)
        self.router = router or Router()
        self.router.on_change = self.routes_changed
        self.links = self.links_class(streams)
        self._header = wire.encode_header(domain, peer_id)
        self._dgram_limit = self._max_body = self._chunk = 0
        self._fragmenter = Fragmenter()
        self._reassembler = Reassembler(max_message=max_payload + _REASSEMBLY_HEADROOM)
        # Datagrams being built: per address (best effort and control), and per (peer id,
        # stream kind) for reliable streams; flow control is per address.
        self._out = {}
        self._flows = {}
        self._flow_in = {}
        self._acks_now = set()
        self._ack_at = None
        self._rel_at = None
        self._window = DEFAULT_WINDOW
        self._stalled = set()
        self._blocked_since = {}
        self._sealer = self.sealer_class(keyring, encrypt) if keyring else None
        self._opener = self.opener_class(keyring, encrypt) if keyring else None
        self._identities = identities
        # With identities: what each sender (peer id) may publish, learnt from its key.
        self._sender_perms: dict[int, Permissions] = {}
        self._out_bytes = 0  # queued since the last flush
        # Fast paths for plain messages (no reply, headers or queue groups), rebuilt whenever
        # interest changes: per subject, where a publish goes / what a receipt reaches.
        self._tx_fast = {}
        self._tx_reply = {}
        self._rx_fast = {}
        self.backpressure = False
        self._flush_asked = False
        self._uncounted = []
        self._skip_full = False  # overflow: drop, while publishing under pressure
        self._dropped = {}
        self._rx_via = "udp"
        self._outgoing = {}
        self._events: list[Event] = []
        self._running = {"udp"}
        self._dgram_tx = STORE.cell("insane_datagrams_sent", "udp")
        self._dgram_rx = STORE.cell("insane_datagrams_received", "udp")
        self._batch_tx = STORE.cell("insane_batches_sent", "udp")
        self._batch_rx = STORE.cell("insane_batches_received", "udp")
        self.flush_due = False
        self.backlog_bytes = lambda: 0
        self.backlog_limit = 8 * 1024 * 1024
        self.on_output = None
        self.on_flush_wanted = None
        self.on_event = None
        self.on_control_news = None
        self.on_timer_changed = None
        self.on_rdma_setup = None
        self._handlers = self._frame_table()

    # ------------------------------------------------------------------ set-up

    def set_datagram_limit(self, largest: int) -> None:
        """The largest datagram every transport carries: a datagram must never exceed the
        path's MTU, or the kernel splits it into IP fragments (and with loss on the path,
        incomplete fragment chains fill the receiver's reassembly memory until every
        fragmented datagram is dropped). Frames get what is left after every prefix a
        datagram may carry (header, POSITION, SEQ; the seal's prefix and tag)."""
        prefix = wire.HEADER_SIZE + wire.POSITION_FRAME_SIZE + wire.SEQ_FRAME_SIZE
        self._dgram_limit = largest - (security.OVERHEAD if self._sealer is not None else 0)
        self._max_body = self._dgram_limit - prefix - wire.FRAME_HEADER_SIZE
        self._chunk = self._max_body - wire.FRAG_HEAD_SIZE

    def set_running(self, transports: set[str]) -> None:
        self._running = set(transports)

    # ------------------------------------------------------------------ local interest

    def add_local(self, sub: LocalSub) -> None:
        self.router.add_local(sub)

    def remove_local(self, sid: int) -> None:
        self.router.remove_local(sid)

    def has_subscribers(self, subject: str) -> bool:
        """Whether a subscription known here (local, or a peer's interest) matches."""
        validate_subject(subject)
        return not self.router.plan(subject).empty

    def has_responders(self, subject: str) -> bool:
        """Whether a request to ``subject`` would reach anyone (no suspect peer counts)."""
        return not self.router.request_plan(subject).empty

    # ------------------------------------------------------------------ peers' changes

    def set_remote(self, peer_id: int, interest: list[wire.InterestEntry]) -> None:
        self.router.set_remote(peer_id, interest)

    def set_suspect(self, peer_id: int, suspect: bool) -> None:
        self.router.set_suspect(peer_id, suspect)

    def peer_down(self, peer: Any) -> None:
        """A peer left: its interest, fragments, streams and flow state go; what it owed is
        reported lost, what we sent it unacknowledged reported discarded."""
        self.router.drop_remote(peer.peer_id)
        self._reassembler.forget_sender(peer.peer_id)
        self.forget_flow(peer)

    def transport_failed(self, addr: Address, transport: str, unsent: list[bytes]) -> None:
        """A transport toward ``addr`` failed (RDMA): what it had not sent (already sealed)
        and what was queued for it go by kernel UDP; routes are learnt again."""
        self.routes_changed()
        if unsent:
            self._send_datagrams([(d, addr) for d in unsent], sealed=True)
        q = self._out.pop((transport, addr), None)
        if q is not None and not q.empty:
            self._send_datagrams([(d, addr) for d in q.take()])

    def unacknowledged(self) -> bool:
        """Whether a peer that is not suspect still owes us an acknowledgement of what our
        reliable streams sent it (the driver's close waits for it, for a while)."""
        return any(not self.router.is_suspect(p) for p in self.links.unacked_peers())

    def close(self) -> None:
        """Acknowledge everything received (so publishers do not count what we got as
        discarded undelivered) before the control plane says goodbye; and report what our
        reliable streams sent that was never acknowledged: it may never arrive."""
        self._send_to_peers(self.links.ack_all(), None)
        for peer_id, n in self.links.abandon_sent().items():
            self._report_discarded(
                peer_id, n, "the session closed before the subscriber acknowledged them "
                "(reliability.close_linger)"
            )

    # ------------------------------------------------------------------ timers

    def get_timer(self) -> float | None:
        """When `handle_timer` has work: the next TAIL or NACK, or a delayed
        acknowledgement (None: nothing to wait for)."""
        at = self._ack_at
        rel = self._rel_at
        if rel is not None and (at is None or rel < at):
            return rel
        return at

    def handle_timer(self, now: float) -> None:
        if self._ack_at is not None and self._ack_at <= now:
            self._ack_at = None
            self._ack_all()
        if self._rel_at is not None and self._rel_at <= now:
            self._rel_at = None
            self._reliability_tick(now)

    def expire(self, now: float) -> None:
        """Reassembly expiry (messages whose fragments stopped coming)."""
        self._reassembler.expire(now)
        self._count_reassembly_drops()

    # ------------------------------------------------------------------ events

    def next_event(self) -> Event | None:
        return self._events.pop(0) if self._events else None

    def _event(self, ev: Event) -> None:
        self._events.append(ev)
        if self.on_event is not None:
            self.on_event()

    def _report(self, exc: Exception) -> None:
        self._event(Report(exc))

    def _room(self) -> None:
        self._event(Room())

    def report(self, exc: Exception) -> None:
        """An error of the layers above, for the same error_cb (a slow consumer...)."""
        self._report(exc)

    def drop(self, reason: str, n: int = 1) -> None:
        """Count a drop the layers above decided (a slow consumer)."""
        self._drop(reason, n)

    def peer_name(self, peer_id: int) -> str:
        peer = self.control.peers.get(peer_id)
        return peer.name if peer is not None and peer.name else f"{peer_id:016x}"

    def _report_lost(self, lost: list[LostData]) -> None:
        """Tell the application what a publisher's streams will never deliver: one error per
        gap, with its message count where the publisher could give it."""
        for item in lost:
            name = self.peer_name(item.peer_id)
            kind = "ordered" if is_ordered(item.kind) else "unordered"
            detail = f"{kind} stream, datagrams {item.gap.start}..{item.gap.end - 1}"
            if item.gap.messages is None:
                detail += ": the publisher can no longer say how many messages they held"
            self._report(
                errors.MessagesLostError(
                    name, item.gap.messages, detail, datagrams=item.gap.count
                )
            )

    def _report_discarded(self, peer_id: int, messages: int, why: str) -> None:
        """Tell the application (a publisher) how many messages to ``peer_id`` it discarded
        before they were acknowledged."""
        if messages:
            name = self.peer_name(peer_id)
            self._report(errors.MessagesLostError(name, messages, why, sent=True))

    def _report_gaps_sent(self) -> None:
        for peer_id, n in self.links.take_discarded().items():
            self._report_discarded(
                peer_id, n, "evicted from the retransmit buffer (reliability.retransmit_bytes, "
                "retransmit_age) before the subscriber acknowledged them"
            )
