"""The node's sending side: where a message goes, the datagrams it is written into, and when
they leave.

Messages are written straight into per-destination datagrams (`OutQueue`: best effort and
control per address, a reliable stream per peer and stream kind and lane); a datagram is
sealed when the next frame would not fit, and every queue is emptied by `_flush`, which the
driver runs once per event-loop turn (or at once when a publisher queued a lot). Plain
messages to subjects seen before take a fast path (`FastSend`) that appends to each
destination's datagram in one native step. Flow control decides when publishers must wait:
a full window, a full stream, or the kernel pushing back, except toward destinations that
have been stalled (silent while blocking) for ``stall_timeout``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from insane import errors
from insane.ops.metrics import STORE
from insane.protocol import wire
from insane.protocol.batching import OutQueue
from insane.protocol.flow import FlowOut
from insane.protocol.node_base import Datagrams, FastSend, NodeBase, fast_send_counts
from insane.protocol.reliable_links import lane_kind
from insane.protocol.router import LocalSub
from insane.protocol.speedups import append_plain
from insane.subjects import reply_family
from insane.transports.base import Address

#: Flush queued frames synchronously once this many bytes wait (a publisher that never yields).
FLUSH_BYTES = 256 * 1024
#: Room kept in a fast-path frame for a reply subject (``_INBOX.<16 hex>.<token>``).
_REPLY_ROOM = 64
_CACHE_LIMIT = 8192


class Outbound(NodeBase):
    """Publishing, the out-queues and flow control's sending side (mixed into PeerNode)."""

    #: The FastSend class (the native node has its own, `_engine.FastSend`).
    fast_send_class: Any = FastSend

    stall_timeout: float

    # ------------------------------------------------------------------ publishing

    def publish_fast(self, subject: str, payload: bytes) -> bool:
        """The common case, kept short: a plain message (no reply, headers or groups) to a
        subject whose destinations are known, appended to each peer's datagram. False when
        it does not apply (the caller takes `publish`)."""
        fast = self._tx_fast.get(subject)
        if fast is None and subject.startswith("_INBOX."):
            fast = self._tx_reply.get(reply_family(subject) or "")
        if fast is None or type(payload) is not bytes:
            return False
        size = len(payload)
        if size > fast.max_inline:
            return False
        self._out_bytes += append_plain(
            fast.queues, fast.subject_bytes or subject.encode(), b"", payload
        )
        if not fast.msgs:
            self._uncounted.append(fast)
        fast.msgs += 1
        fast.nbytes += size
        if not (self._flush_asked or self.flush_due):
            self._want_flush()
        if self._out_bytes >= FLUSH_BYTES:
            self._flush()
        return True

    def publisher(self, reference: Callable[..., Awaitable[None]]) -> Any:
        """A callable that publishes as ``reference`` (the session's ``publish`` coroutine
        function) does, faster, or None (the Python node has none: the reference is used).
        The native node's does the common case without a Python frame."""
        return None

    def publish_request_fast(self, subject: str, reply: bytes, data: bytes) -> bool:
        """A request's plain message on the fast path (False when it does not apply)."""
        fast = self._tx_fast.get(subject)
        if fast is None or type(data) is not bytes or len(data) > fast.max_inline:
            return False
        self._send_plain(fast, fast.subject_bytes, reply, data)
        return True

    def fast_channel(self, subject: str) -> Any:
        """The channel of a subject with a fast path for requests, else None (none while a
        peer is suspect: a request goes to no suspect peer)."""
        if self.router.has_suspects:
            return None
        fast = self._tx_fast.get(subject)
        return fast.ch if fast is not None else None

    def publish(
        self, subject: str, data: bytes, reply: str, headers: dict[str, str] | None
    ) -> None:
        """Send a message to every subscriber of ``subject``: local ones at once, each peer's
        copy into its datagram (a request, ``reply`` set, goes to no suspect peer)."""
        if len(data) > self.max_payload:
            raise errors.MaxPayloadError(
                f"payload of {len(data)} bytes exceeds max_payload {self.max_payload}"
            )
        ch = self.channels.cached(subject) or self.channels.get(subject)
        if not ch.may_publish:
            raise errors.PermissionDeniedError(
                f"identity {self._identities.own if self._identities else ''!r} may not publish "
                f"to {subject!r}"
            )
        payload = data if type(data) is bytes else bytes(data)
        plan = self.router.request_plan(subject) if reply else self.router.plan(subject)
        if plan.empty:
            return
        if not plan.local and not plan.groups:
            self._learn_fast_send(subject, ch, plan.peers)
        for sub in plan.local:
            sub.deliver(subject, payload, reply, headers, sub.sid)
        peers = plan.peers
        if not peers and not plan.groups:
            return
        sb = ch.subject_bytes or subject.encode()
        rb = reply.encode() if reply else b""
        hdr = wire.encode_headers(headers) if headers else b""
        if plan.groups:
            chosen: dict[int, list[bytes]] = {}
            for group, members in plan.groups.items():
                m = self.router.pick(members)
                if isinstance(m, LocalSub):
                    m.deliver(subject, payload, reply, headers, m.sid)
                else:
                    chosen.setdefault(m, []).append(group.encode())
            if chosen:
                for peer_id, groups in chosen.items():
                    body = wire.encode_msg_body(sb, rb, hdr, tuple(groups), payload)
                    self._send_msg(peer_id, ch, body, len(payload))
                peers = [p for p in peers if p not in chosen]
        if peers:
            body = wire.encode_msg_body(sb, rb, hdr, (), payload)
            for peer_id in peers:
                self._send_msg(peer_id, ch, body, len(payload))
        if self._out_bytes >= FLUSH_BYTES:
            self._flush()

    def _send_plain(self, fast: FastSend, sb: bytes, rb: bytes, data: bytes) -> None:
        """Append a MSG frame with no headers or queue groups to each destination's datagram
        (the caller checked that it fits one frame)."""
        self._out_bytes += append_plain(fast.queues, sb, rb, data)
        for c, n in fast.counts:
            c.sent.value += n
            c.bytes_sent.value += len(data) * n
        if not (self._flush_asked or self.flush_due):
            self._want_flush()
        if self._out_bytes >= FLUSH_BYTES:
            self._flush()

    def _learn_fast_send(self, subject: str, ch: Any, peer_ids: list[int]) -> None:
        family = not ch.subject_bytes  # request replies: one route per requester
        if len(self._tx_reply if family else self._tx_fast) >= _CACHE_LIMIT:
            return
        queues = []
        peers = self.control.peers
        for peer_id in peer_ids:
            peer = peers.get(peer_id)
            if peer is None:
                return
            if peer_id not in ch.routed:
                self.channels.route(ch, peer)
            queues.append(self._dest_queue(peer, ch))
        # Room left for the payload in one frame, with the longest reply subject we send.
        room = self._max_body - wire.MSG_HEAD_SIZE - len(subject.encode()) - _REPLY_ROOM
        max_inline = min(self.max_payload, room)
        sends = tuple(queues)
        sb = b"" if family else ch.subject_bytes
        fast = self.fast_send_class(ch, sends, sb, max_inline, fast_send_counts(ch, sends))
        if family:
            self._tx_reply[reply_family(subject) or subject] = fast
        else:
            self._tx_fast[subject] = fast

    def routes_changed(self) -> None:
        """Interest or routes changed: the fast paths are learnt again."""
        self._tx_fast.clear()
        self._tx_reply.clear()
        self._rx_fast.clear()

    def _send_msg(self, peer_id: int, ch: Any, body: bytes, size: int) -> None:
        peer = self.control.peers.get(peer_id)
        if peer is None:
            return
        if peer_id not in ch.routed:
            self.channels.route(ch, peer)
        if self._skip_full:
            flow = self._flows.get(peer.addr)
            if flow is not None and flow.blocked:
                self._drop("window_full")
                return
        q = self._dest_queue(peer, ch)
        self._send_frame_to(q, wire.MSG, body)
        c = ch.counters(q.transport)
        c.sent.value += 1
        c.bytes_sent.value += size

    # ------------------------------------------------------------------ out-queues

    def _flow(self, addr: Address) -> FlowOut:
        f = self._flows.get(addr)
        if f is None:
            f = self._flows[addr] = FlowOut()
        return f

    def _queue(self, addr: Address) -> OutQueue:
        """The best-effort datagrams to ``addr`` (control frames go there too)."""
        q = self._out.get(addr)
        if q is None:
            q = self._out[addr] = OutQueue(
                self._header, self._dgram_limit, self._flow(addr), addr=addr
            )
        return q

    def _dest_queue(self, peer: Any, ch: Any) -> OutQueue:
        """Where a channel's messages to ``peer`` go: its reliable stream, or best effort, on
        the transport of the channel's route to that peer. A kernel-bypass route has streams
        of its own (a lane: ``reliable_links.lane_kind``), so each stream's datagrams leave by
        one transport; control frames always go by kernel UDP."""
        transport = ch.routed.get(peer.peer_id, "udp")
        kind = ch.stream_kind
        if transport == "rdma":
            kind = 0  # the adapter retransmits and orders (RC): no sequence numbers of ours
        if not kind:
            if transport == "udp":
                return self._queue(peer.addr)
            key: Any = (transport, peer.addr)
            q = self._out.get(key)
            if q is None:
                q = self._out[key] = OutQueue(
                    self._header,
                    self._dgram_limit,
                    self._flow(peer.addr),
                    addr=peer.addr,
                    transport=transport,
                )
            return q
        kind = lane_kind(kind, transport)
        key = (peer.peer_id, kind)
        q = self._out.get(key)
        if q is None or q.addr != peer.addr:
            q = self._out[key] = OutQueue(
                self._header,
                self._dgram_limit,
                self._flow(peer.addr),
                addr=peer.addr,
                stream=self.links.send_stream(peer.peer_id, kind),
                kind=kind,
                clock=self._clock,
                transport=transport,
            )
            self._arm_reliability()
        return q

    def send_frame(self, addr: Address, ftype: int, body: bytes) -> None:
        """Queue a control frame for ``addr`` (the control plane's frames come this way)."""
        self._send_frame(addr, ftype, body)

    def _send_frame(self, addr: Address, ftype: int, body: bytes) -> None:
        self._send_frame_to(self._queue(addr), ftype, body)

    def _send_frame_to(self, q: OutQueue, ftype: int, body: bytes) -> None:
        if len(body) <= self._max_body:
            buf = q.room(wire.FRAME_HEADER_SIZE + len(body))
            buf += wire.FRAME_HEADER.pack(ftype, 0, len(body))
            buf += body
        else:
            for f in self._fragmenter.split(ftype, body, self._chunk):
                q.add(f)
        self._out_bytes += wire.FRAME_HEADER_SIZE + len(body)
        self._want_flush()

    def _want_flush(self) -> None:
        """Queued frames wait for the end of this event-loop turn (inside the receive path,
        or a request, the caller flushes when done). Asked once until the next flush."""
        if not (self._flush_asked or self.flush_due):
            self._flush_asked = True
            if self.on_flush_wanted is not None:
                self.on_flush_wanted()

    def _send_to_peers(self, frames: list[tuple[int, int, bytes]], addr: Address | None) -> None:
        """Queue control frames addressed to peer ids (``addr``: where the unknown ones go)."""
        peers = self.control.peers
        for peer_id, ftype, body in frames:
            peer = peers.get(peer_id)
            to = peer.addr if peer is not None else addr
            if to is not None:
                self._send_frame(to, ftype, body)

    def _flush(self) -> None:
        """Seal every datagram being built and hand them out (``on_output``)."""
        self._flush_asked = False
        if not self._out_bytes:
            return
        uncounted = self._uncounted
        if uncounted:
            for fast in uncounted:
                n, size = fast.msgs, fast.nbytes
                for c, k in fast.counts:
                    c.sent.value += n * k
                    c.bytes_sent.value += size * k
                fast.msgs = fast.nbytes = 0
            uncounted.clear()
        self._out_bytes = 0
        datagrams: Datagrams = []
        bypass: dict[str, Datagrams] = {}
        blocked = False
        reliable = False
        flow_in = self._flow_in
        stalled = self._stalled
        for q in self._out.values():
            if not q.empty:
                addr = q.addr
                fin = flow_in.get(addr)
                if fin is not None and fin.unacked:  # acknowledgements ride along
                    q.add(wire.frame(wire.WINDOW, self._window_body(fin)))
                out = datagrams if q.transport == "udp" else bypass.setdefault(q.transport, [])
                for d in q.take():
                    out.append((d, addr))
                if q.flow.blocked and addr not in stalled:
                    blocked = True
                if q.stream is not None:
                    reliable = True
                    if q.stream.full and addr not in stalled:
                        blocked = True
        if datagrams:
            self._send_datagrams(datagrams)
        for transport, dgs in bypass.items():
            self._send_datagrams(dgs, transport)
        self.backpressure = blocked or self.backlog_bytes() > self.backlog_limit
        if reliable and self._rel_at is None:
            self._arm_reliability()  # a TAIL follows if the stream goes quiet unacknowledged

    #: The contract's name (the same function: the driver calls it on every request).
    flush = _flush

    # ------------------------------------------------------------------ flow control

    def set_backpressure(self, on: bool) -> None:
        """(``backpressure``, see node_base.py: an attribute, read on every publish.)"""
        self.backpressure = on

    def skip_full(self, on: bool) -> None:
        """``overflow: drop`` under pressure: leave messages out for full destinations."""
        self._skip_full = on

    def update_stalled(self, now: float) -> None:
        """The destinations that have blocked publishers (a full window or a full stream) for
        ``stall_timeout`` while silent for as long (a frozen or killed process, a partition;
        a live one, however slow, acknowledges or at least sends heartbeats): they stop
        blocking publishers until they are heard again."""
        stall = self.stall_timeout
        peers = self.control.peers
        heard: dict[Address, float] = {}
        for p in peers.values():
            heard[p.addr] = max(heard.get(p.addr, 0.0), p.last_seen)
        blocked = {a for a, f in self._flows.items() if f.blocked}
        blocked.update(
            dest.addr
            for (peer_id, _kind), s in self.links.tx.items()
            if s.full and (dest := peers.get(peer_id)) is not None
        )
        since = self._blocked_since
        for addr in [a for a in since if a not in blocked]:
            del since[addr]
        for addr in blocked:
            since.setdefault(addr, now)
        self._stalled = {
            a for a, t in since.items() if now - t >= stall and now - heard.get(a, 0.0) >= stall
        }

    def blocked(self) -> tuple[list[Address], bool]:
        """The destinations whose full window blocks publishers (stalled ones aside), and
        whether a reliable stream toward a live destination is full."""
        stalled = self._stalled
        blocked = [a for a, f in self._flows.items() if f.blocked and a not in stalled]
        peers = self.control.peers
        streams_full = any(
            s.full and (p := peers.get(peer_id)) is not None and p.addr not in stalled
            for (peer_id, _kind), s in self.links.tx.items()
        )
        return blocked, streams_full

    def probes(self, addrs: list[Address]) -> None:
        """Datagrams asking blocked destinations for a WINDOW frame at once."""
        self._send_datagrams([(self._queue(a).probe(), a) for a in addrs])

    # ------------------------------------------------------------------ handing out

    def _send_datagrams(
        self, datagrams: Datagrams, via: str = "udp", *, sealed: bool = False
    ) -> None:
        """Hand datagrams out for a transport (kernel UDP unless ``via`` names another),
        sealed first when ``security.mode`` says so (and they are not ``sealed`` already)."""
        sealer = self._sealer
        if sealer is not None and not sealed:
            datagrams = [(sealer.seal(d), a) for d, a in datagrams]
        if via == "udp":
            self._dgram_tx.value += len(datagrams)
            self._batch_tx.value += 1
        else:
            STORE.cell("insane_datagrams_sent", via).value += len(datagrams)
            STORE.cell("insane_batches_sent", via).value += 1
        out = self.on_output
        if out is not None:
            out(via, datagrams)
        else:
            self._outgoing.setdefault(via, []).extend(datagrams)

    def datagrams_to_send(self) -> dict[str, Datagrams]:
        """What waits to be sent, per transport: ``(datagram, destination)`` pairs (without an
        ``on_output`` hook; with one, each batch goes to it as it is made)."""
        out, self._outgoing = self._outgoing, {}
        return out
