"""The node's receiving side: a batch of datagrams in, deliveries, acknowledgements and
control frames out.

A batch is read in two passes. First the POSITION frames of flow control (the whole batch is
out of the socket buffer now, so senders may go on while it is processed). Then each
datagram: its header (another domain, our own, a stranger: counted and dropped, or handed to
the control plane's handshake), its SEQ frame if it belongs to a reliable stream (which says
what to process now, in order), and its frames, walked through one table from frame type to
handler. Runs of plain messages to subjects seen before are taken out in one native step
(`scan_plain`) and handed to their subscriptions' runners.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from insane import errors
from insane.ops.metrics import STORE
from insane.protocol import wire
from insane.protocol.flow import ACK_NOW, FlowIn
from insane.protocol.node_base import Datagrams, FastReceive, NodeBase
from insane.protocol.reliable_links import STREAM_KINDS, lane_transport
from insane.protocol.router import LocalSub
from insane.protocol.speedups import scan_plain
from insane.subjects import reply_family
from insane.transports.base import Address

#: Acknowledge received data at the latest this long after it came (seconds).
ACK_DELAY = 0.005
#: The reliability timer never fires sooner than this after being armed (seconds).
_MIN_TIMER = 0.001
_CACHE_LIMIT = 8192

#: A frame handler: (data, body start, body end, sender, sender's address, now) -> whether
#: it was a control frame (the control plane then has news).
Handler = Callable[[bytes, int, int, int, Address, float], bool]


def frames_start(data: bytes) -> int:
    """Where the frames of a (well-formed) datagram start, after POSITION and SEQ."""
    pos = wire.HEADER_SIZE
    if data[pos] == wire.POSITION:
        pos += wire.POSITION_FRAME_SIZE
    if pos < len(data) and data[pos] == wire.SEQ:
        pos += wire.SEQ_FRAME_SIZE
    return pos


class Inbound(NodeBase):
    """The receive path (mixed into PeerNode)."""

    _handlers: dict[int, Handler]

    def _frame_table(self) -> dict[int, Handler]:
        """Frame type -> handler. A type not in it is the control plane's."""

        def position_or_seq(_d: bytes, _s: int, _e: int, _f: int, _a: Address, _n: float) -> bool:
            return False  # only meaningful first in a datagram

        return {
            wire.MSG: self._msg_frame,
            wire.FRAG: self._frag_frame,
            wire.WINDOW: self._window_frame,
            wire.ACK: self._stream_frame,
            wire.NACK: self._stream_frame,
            wire.TAIL: self._stream_frame,
            wire.GAP: self._stream_frame,
            wire.POSITION: position_or_seq,
            wire.SEQ: position_or_seq,
            wire.RDMA_SETUP: self._rdma_frame,
        }

    # ------------------------------------------------------------------ the batch

    def receive_datagrams(self, batch: Datagrams, via: str, now: float) -> None:
        """A batch a transport read (``via``): open, process, and flush what it caused (the
        answers of control frames and the replies of inline callbacks leave in this turn)."""
        other = via != "udp"  # (what is counted and dropped is counted under its name)
        if other:
            self._rx_via = via
        self.flush_due = True
        try:
            if self._opener is not None:
                batch = self._open(batch)
            self._receive(batch, now)
        finally:
            self.flush_due = False
            if other:
                self._rx_via = "udp"
        self._flush()

    def _open(self, batch: Datagrams) -> Datagrams:
        """Check and open sealed datagrams; what fails is counted by reason and dropped."""
        opener = self._opener
        assert opener is not None
        now = self._wall_clock()
        domain = self.domain
        out = []
        for data, addr in batch:
            try:
                if len(data) >= wire.HEADER_SIZE and wire.decode_header(data).domain != domain:
                    raise wire.WireError("foreign_domain")
                opened = opener.open(data, now)
            except wire.WireError as exc:
                self._drop(exc.reason)
                continue
            ids = self._identities
            if ids is not None:
                who = ids.by_key.get(opener.last_kid)
                if who is not None:
                    sender = int.from_bytes(opened[8:16], "big")
                    self._sender_perms[sender] = ids.permissions[who]
            out.append((opened, addr))
        return out

    def _receive(self, batch: Datagrams, now: float) -> None:
        if self._rx_via == "udp":
            self._dgram_rx.value += len(batch)
            self._batch_rx.value += 1
        else:
            STORE.cell("insane_datagrams_received", self._rx_via).value += len(batch)
            STORE.cell("insane_batches_received", self._rx_via).value += 1
        domain = self.domain
        me = self.peer_id
        control_plane = self.control
        peers = control_plane.peers
        control = False
        # Flow control first: the whole batch is out of the socket buffer now, so the senders
        # may go on while we process it (acknowledging after processing would make them wait
        # for it, and sender and receiver would take turns instead of working side by side).
        for data, addr in batch:
            if len(data) > wire.HEADER_SIZE and data[wire.HEADER_SIZE] == wire.POSITION:
                self._on_position_frame(data, addr, now)
        if self._acks_now:
            self._send_acks()
            self._flush()
        reliable = False
        for data, addr in batch:
            try:
                _version, _flags, dgram_domain, sender = wire.decode_header(data)
            except wire.WireError as exc:
                self._drop(exc.reason)
                continue
            if dgram_domain != domain:
                self._drop("foreign_domain")
                continue
            if sender == me:
                continue
            end = len(data)
            pos = wire.HEADER_SIZE
            if pos == end:
                self._drop("empty")
                continue
            peer = peers.get(sender)
            if peer is None:
                control |= self._from_stranger(data, pos, sender, addr, now)
                continue
            if peer.last_seen != now or peer.suspect:
                control_plane.heard(peer, now)
                if self._stalled:
                    self._stalled.discard(addr)
            if data[pos] == wire.POSITION:
                pos += wire.POSITION_FRAME_SIZE  # handled above
                if pos > end:
                    self._drop("truncated")
                    continue
            if pos < end and data[pos] == wire.SEQ:
                # A datagram of a reliable stream: the stream says what to process now.
                reliable = True
                try:
                    kind, epoch, seq = wire.read_seq(data, pos)
                    ready, lost = self.links.on_seq(sender, kind, epoch, seq, data, now)
                except wire.WireError as exc:
                    self._drop(exc.reason)
                    continue
                for d in ready:
                    control |= self._process_frames(d, frames_start(d), sender, addr, now)
                if lost:
                    self._report_lost(lost)
                continue
            control |= self._process_frames(data, pos, sender, addr, now)
        if reliable:
            links = self.links
            self._send_to_peers(links.acks_due(), None)
            if links.gap_open:
                links.gap_open = False
                self._arm_reliability()
        if (control or control_plane.has_news) and self.on_control_news is not None:
            self.on_control_news()

    def _from_stranger(
        self, data: bytes, pos: int, sender: int, addr: Address, now: float
    ) -> bool:
        """A datagram from a sender that is not a peer: only its ANNOUNCE frames count (the
        handshake of the control plane); anything else is dropped, once per datagram, and
        never answered, so a stranger makes us hold nothing. True if an ANNOUNCE was
        handled."""
        end = len(data)
        frame_head = wire.FRAME_HEADER.unpack_from
        handled = False
        while end - pos >= wire.FRAME_HEADER_SIZE:
            ftype, _fflags, length = frame_head(data, pos)
            start = pos + wire.FRAME_HEADER_SIZE
            pos = start + length
            if pos > end or ftype != wire.ANNOUNCE:
                break
            try:
                self.control.on_frame(sender, ftype, memoryview(data)[start:pos], addr, now)
            except wire.WireError as exc:
                self._drop(exc.reason)
                return handled
            handled = True
            if sender in self.control.peers:  # admitted: the rest is a peer's
                return self._process_frames(data, pos, sender, addr, now) or handled
        if not handled:
            self._drop("unknown_peer")
        return handled

    def _process_frames(
        self, data: bytes, pos: int, sender: int, addr: Address, now: float
    ) -> bool:
        """Handle the frames of one datagram from ``pos``; True if control frames came."""
        end = len(data)
        rx_fast = self._rx_fast
        handlers = self._handlers
        frame_head = wire.FRAME_HEADER.unpack_from
        control = False
        while pos < end:
            # The run of plain messages to subjects seen before, in one native step.
            items, pos = scan_plain(data, pos, rx_fast)
            if items:
                perms = self._sender_perms.get(sender) if self._sender_perms else None
                for fast, payloads in items:
                    ch = fast.ch
                    n = len(payloads)
                    if perms is not None and not perms.may_publish(fast.subject):
                        self._drop("permission", n)  # its sender may not publish there
                        continue
                    c = ch.counters(self._rx_via)
                    c.received.value += n
                    c.bytes_received.value += sum(map(len, payloads))
                    for run in fast.runners:
                        run(fast.subject, payloads)
                    ch.delivered.value += n * len(fast.runners)
                if pos >= end:
                    break
            # Any other frame, through the table.
            if end - pos < wire.FRAME_HEADER_SIZE:
                self._drop("truncated")
                break
            ftype, _fflags, length = frame_head(data, pos)
            start = pos + wire.FRAME_HEADER_SIZE
            pos = start + length
            if pos > end:
                self._drop("truncated")
                break
            try:
                handler = handlers.get(ftype)
                if handler is None:
                    control = True
                    self.control.on_frame(sender, ftype, memoryview(data)[start:pos], addr, now)
                else:
                    control |= handler(data, start, pos, sender, addr, now)
            except wire.WireError as exc:
                self._drop(exc.reason)
        return control

    # ------------------------------------------------------------------ frame handlers

    def _frag_frame(
        self, data: bytes, start: int, end: int, sender: int, addr: Address, now: float
    ) -> bool:
        self._on_frag(sender, memoryview(data)[start:end], addr, now)
        return True  # a reassembled frame may be a control frame

    def _window_frame(
        self, data: bytes, start: int, end: int, _sender: int, addr: Address, _now: float
    ) -> bool:
        self._on_window(addr, memoryview(data)[start:end])
        return False

    def _stream_frame(
        self, data: bytes, start: int, end: int, sender: int, addr: Address, now: float
    ) -> bool:
        ftype = data[start - wire.FRAME_HEADER_SIZE]
        self._on_stream_frame(ftype, sender, addr, memoryview(data)[start:end], now)
        return False

    def _rdma_frame(
        self, data: bytes, start: int, end: int, sender: int, addr: Address, now: float
    ) -> bool:
        if self.on_rdma_setup is not None:
            self.on_rdma_setup(sender, addr, memoryview(data)[start:end], now)
        return True

    # ------------------------------------------------------------------ messages

    def _on_frag(self, sender: int, body: memoryview, addr: Address, now: float) -> None:
        msg_id, total, offset, inner, chunk = wire.decode_frag(body)
        done = self._reassembler.feed(sender, msg_id, total, offset, inner, chunk, now)
        self._count_reassembly_drops()
        if done is None:
            return
        if done.inner_type == wire.MSG:
            self._msg_frame(done.body, 0, len(done.body), sender, addr, now)
        elif done.inner_type == wire.FRAG:
            raise wire.WireError("malformed", "nested fragment")
        elif wire.ACK <= done.inner_type <= wire.GAP:
            self._on_stream_frame(done.inner_type, sender, addr, memoryview(done.body), now)
        else:
            self.control.on_frame(sender, done.inner_type, done.body, addr, now)

    def _msg_frame(
        self, buf: bytes | memoryview, start: int, end: int, sender: int, _a: Address, _n: float
    ) -> bool:
        """A MSG frame (the frame table's entry): to the local subscriptions it reaches."""
        subject, reply, headers, queues, payload = wire.decode_msg(buf, start, end)
        if self._sender_perms:
            perms = self._sender_perms.get(sender)
            if perms is not None and not perms.may_publish(subject) and not reply_family(subject):
                raise wire.WireError("permission", subject[:64])  # counted, dropped
        ch = self.channels.cached(subject)
        if ch is None:
            try:
                ch = self.channels.get(subject)
            except errors.BadSubjectError:
                raise wire.WireError("bad_subject", subject[:64]) from None
        c = ch.counters(self._rx_via)
        c.received.value += 1
        c.bytes_received.value += len(payload)
        targets = self.router.local_targets(subject, queues)
        plain = not (reply or headers or queues)
        if plain and ch.subject_bytes and len(self._rx_fast) < _CACHE_LIMIT:
            runners = tuple(self._plain_runner(t) for t in targets)
            self._rx_fast[subject.encode()] = FastReceive(subject, ch, runners)
        for sub in targets:
            sub.deliver(subject, payload, reply, headers, sub.sid)
        ch.delivered.value += len(targets)
        return False

    def _plain_runner(self, target: LocalSub) -> Callable[[str, list[bytes]], None]:
        if target.deliver_plain is not None:
            return target.deliver_plain
        deliver, sid = target.deliver, target.sid

        def run(subject: str, payloads: list[bytes]) -> None:
            for p in payloads:
                deliver(subject, p, "", None, sid)

        return run

    # ------------------------------------------------------------------ flow control

    def _window_body(self, fin: FlowIn) -> bytes:
        return wire.window_body(fin.take_ack(), self._window)

    def _on_position_frame(self, data: bytes, addr: Address, now: float) -> None:
        """The POSITION pre-pass of a batch: what fails here is counted by the main pass."""
        try:
            _version, _flags, domain, sender = wire.decode_header(data)
            pflags, position = wire.read_position(data, wire.HEADER_SIZE)
        except wire.WireError:
            return
        if domain == self.domain and sender != self.peer_id:
            self._on_position(sender, addr, pflags, position, now)

    def _on_position(
        self, sender: int, addr: Address, flags: int, position: int, now: float
    ) -> None:
        fin = self._flow_in.get(addr)
        if fin is None or fin.source != sender:
            if sender not in self.control.peers:
                return  # not a peer (yet): nothing to acknowledge to
            fin = self._flow_in[addr] = FlowIn(sender)
        fin.on_position(position)
        if flags & ACK_NOW or fin.unacked >= self._window // 4:
            self._acks_now.add(addr)
        elif self._ack_at is None:
            self._ack_at = now + ACK_DELAY
            if self.on_timer_changed is not None:
                self.on_timer_changed()

    def _send_acks(self) -> None:
        """Acknowledge now where a probe asked or a quarter of the window is unacknowledged."""
        for addr in self._acks_now:
            fin = self._flow_in.get(addr)
            if fin is not None:
                self._send_frame(addr, wire.WINDOW, self._window_body(fin))
        self._acks_now.clear()

    def _ack_all(self) -> None:
        """The delayed acknowledgement: whatever is unacknowledged, acknowledge it now."""
        for addr, fin in self._flow_in.items():
            if fin.unacked:
                self._send_frame(addr, wire.WINDOW, self._window_body(fin))
        self._flush()

    def _on_window(self, addr: Address, body: memoryview) -> None:
        acked, window = wire.decode_window(body)
        f = self._flows.get(addr)
        if f is not None and f.on_window(acked, window):
            self._room()

    # ------------------------------------------------------------------ reliable streams

    def _on_stream_frame(
        self, ftype: int, sender: int, addr: Address, body: memoryview, now: float
    ) -> None:
        links = self.links
        if ftype == wire.ACK:
            if links.on_ack(sender, body):
                self._room()
        elif ftype == wire.NACK:
            again, gap_frames = links.on_nack(sender, body, now)
            if again:  # resent on the lane's transport
                via = lane_transport(wire.decode_nack(body)[0])
                via = via if via in self._running else "udp"
                self._send_datagrams([(d, addr) for d in again], via)
            self._send_to_peers(gap_frames, addr)
            if gap_frames:
                self._report_gaps_sent()
        elif ftype == wire.TAIL:
            frames, ready, lost = links.on_tail(sender, body, now)
            for d in ready:
                self._process_frames(d, frames_start(d), sender, addr, now)
            self._report_lost(lost)
            self._send_to_peers(frames, addr)
            self._arm_reliability()
        else:  # GAP
            ready, lost = links.on_gap(sender, body, now)
            for d in ready:
                self._process_frames(d, frames_start(d), sender, addr, now)
            self._report_lost(lost)

    def _arm_reliability(self) -> None:
        """Make sure the reliability deadline is when the next TAIL or NACK is due."""
        now = self._clock()
        at = self.links.next_timer(now)
        if at is None:
            return
        at = max(at, now + _MIN_TIMER)
        if self._rel_at is not None and self._rel_at <= at:
            return
        self._rel_at = at
        if self.on_timer_changed is not None:
            self.on_timer_changed()

    def _reliability_tick(self, now: float) -> None:
        self._send_to_peers(self.links.due(now), None)
        self._flush()
        self._report_gaps_sent()
        self._arm_reliability()

    # ------------------------------------------------------------------ drops

    def _drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` dropped under ``reason``, on the transport of the batch at hand."""
        key = (self._rx_via, reason)
        c = self._dropped.get(key)
        if c is None:
            c = self._dropped[key] = STORE.cell("insane_dropped", *key)
        c.value += n

    def _count_reassembly_drops(self) -> None:
        for reason in self._reassembler.take_drops():
            self._drop(reason)

    # ------------------------------------------------------------------ peers that leave

    def forget_flow(self, peer: Any) -> None:
        """A gone peer neither blocks publishers nor keeps flow or stream state; what it still
        owed us on reliable streams is reported lost, what we held back is handed over."""
        now = self._clock()
        ready, lost, discarded = self.links.peer_gone(peer.peer_id, now)
        for d in ready:
            self._process_frames(d, frames_start(d), peer.peer_id, peer.addr, now)
        self._report_lost(lost)
        self._report_discarded(
            peer.peer_id, discarded, "the subscriber went away before acknowledging them"
        )
        for kind in STREAM_KINDS:
            self._out.pop((peer.peer_id, kind), None)
        for name in self._running:
            self._out.pop((name, peer.addr), None)
        if not any(p.addr == peer.addr for p in self.control.peers.values()):
            q = self._out.get(peer.addr)
            if q is not None and q.empty:
                del self._out[peer.addr]
            self._flows.pop(peer.addr, None)
            self._room()
        fin = self._flow_in.get(peer.addr)
        if fin is not None and fin.source == peer.peer_id:
            del self._flow_in[peer.addr]
        self._sender_perms.pop(peer.peer_id, None)
