"""One peer: the switchboard that wires router, discovery, transports and metrics together.

It holds no protocol or policy logic of its own: frames are encoded and decoded by
``protocol.wire``, peers and interest are tracked by ``discovery``, recipients chosen by
``router``, transports picked by ``qos.policy``. The session moves bytes between them on the
event loop: received datagrams in, frames out, coalesced into datagrams once per loop turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gc
import itertools
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from insane import errors
from insane.api.deadlines import Deadlines
from insane.api.message import Msg, clean_headers
from insane.api.subscription import Callback, Subscription
from insane.control.discovery import (
    Discovery,
    InterestChanged,
    Peer,
    PeerBack,
    PeerDown,
    PeerSuspect,
    PeerUp,
    RttMeasured,
)
from insane.control.host_registry import HostRegistry
from insane.control.rdma_links import LinkFailed, RdmaLinks
from insane.ops import metrics, metrics_http
from insane.ops.metrics import STORE, Cell
from insane.ops.process import process_alive
from insane.protocol import rdma_frames, security, speedups, wire
from insane.protocol.batching import OutQueue
from insane.protocol.flow import ACK_NOW, DEFAULT_WINDOW, FlowIn, FlowOut
from insane.protocol.fragments import Fragmenter, Reassembler
from insane.protocol.permissions import Permissions
from insane.protocol.reliable_links import (
    STREAM_KINDS,
    LostData,
    ReliableLinks,
    is_ordered,
    lane_kind,
    lane_transport,
)
from insane.protocol.router import LocalSub, Router
from insane.protocol.speedups import append_plain, scan_plain
from insane.qos import Config, load_config
from insane.qos.channels import stream_kind
from insane.qos.keys import load_identities, load_keyring
from insane.qos.model import ChannelQoS
from insane.qos.policy import choose_route
from insane.subjects import (
    REPLY_PREFIX,
    SubjectError,
    reply_family,
    validate_pattern,
    validate_subject,
)
from insane.transports import multicast
from insane.transports.base import Address, TransportCapability
from insane.transports.dpdk import DpdkTransport
from insane.transports.netif import multicast_interfaces
from insane.transports.rdma.transport import RdmaTransport
from insane.transports.registry import probe_all
from insane.transports.udp import UdpTransport
from insane.transports.xdp import XdpTransport

log = logging.getLogger("insane")

#: Flush queued frames synchronously once this many bytes wait (a publisher that never yields).
_FLUSH_BYTES = 256 * 1024
#: Make publishers wait while this much is queued in user space because the kernel pushed back.
_BACKLOG_LIMIT = 8 * 1024 * 1024
_CACHE_LIMIT = 8192
RTT = "insane_peer_rtt_seconds"
#: consumption: poll: keep reading the socket this long after the last datagram (seconds),
#: and wait for a request's reply this long before falling back to the event loop.
_POLL_IDLE = 1e-3
_REQUEST_SPIN = 2e-3
#: Polls in a row that find nothing before polling pauses for a second.
_POLL_MISSES = 8
#: The reliability timer never fires sooner than this after being armed (seconds).
_MIN_TIMER = 0.001
#: Acknowledge received data at the latest this long after it came (seconds).
_ACK_DELAY = 0.005
#: A publisher blocked this long without news probes the receiver (seconds).
_PROBE_INTERVAL = 0.05
DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024
INBOX_PREFIX = "_INBOX"
#: Room kept in a fast-path frame for a reply subject (``_INBOX.<16 hex>.<token>``).
_REPLY_ROOM = 64


class _Counters:
    """A channel's message and byte counters on one transport."""

    __slots__ = ("bytes_received", "bytes_sent", "received", "sent")

    def __init__(self, transport: str, pattern: str) -> None:
        self.sent = STORE.cell("insane_messages_sent", transport, pattern)
        self.bytes_sent = STORE.cell("insane_bytes_sent", transport, pattern)
        self.received = STORE.cell("insane_messages_received", transport, pattern)
        self.bytes_received = STORE.cell("insane_bytes_received", transport, pattern)


@dataclass
class _Channel:
    """What the session knows about one subject: its configured pattern, QoS and counters."""

    pattern: str
    qos: ChannelQoS
    subject_bytes: bytes
    delivered: Cell
    #: Counters per transport (``counters``).
    via: dict[str, _Counters] = field(default_factory=dict)
    #: The transport chosen for each peer (see ``Session._note_route``).
    routed: dict[int, str] = field(default_factory=dict)
    #: The reliable stream its messages travel on (0: best effort; reliable_links).
    stream_kind: int = 0
    #: This session's identity may publish here (security.identities).
    may_publish: bool = True

    def __post_init__(self) -> None:
        self.stream_kind = stream_kind(self.qos)

    def counters(self, transport: str) -> _Counters:
        c = self.via.get(transport)
        if c is None:
            c = self.via[transport] = _Counters(transport, self.pattern)
        return c


@dataclass
class _FastSend:
    """A subject whose messages go to remote peers only, with no reply, headers or groups."""

    ch: _Channel
    queues: tuple[OutQueue, ...]
    subject_bytes: bytes
    max_inline: int  # largest payload that fits in one frame
    #: (counters, how many of the queues use their transport)
    counts: tuple[tuple[_Counters, int], ...] = ()

    def __post_init__(self) -> None:
        per: dict[str, int] = {}
        for q in self.queues:
            per[q.transport] = per.get(q.transport, 0) + 1
        self.counts = tuple((self.ch.counters(t), n) for t, n in per.items())


@dataclass
class _FastReceive:
    subject: str
    ch: _Channel
    #: One per target subscription: takes the subject and a run of payloads.
    runners: tuple[Callable[[str, list[bytes]], None], ...]


class Session:
    """A peer on the bus. Create with :func:`insane.connect`."""

    def __init__(self, config: Config, name: str | None = None) -> None:
        self.config = config
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.peer_id = random.getrandbits(64) or 1
        self._info_labels = (self.name, f"{self.peer_id:016x}")
        self.domain = config.domain
        self.max_payload = DEFAULT_MAX_PAYLOAD
        disc = config.discovery
        self._loop = asyncio.get_running_loop()
        self._router = Router()
        self._router.on_change = self._routes_changed
        self._discovery = Discovery(
            self.peer_id,
            name=self.name,
            transports=("udp",),
            heartbeat_interval=disc.heartbeat_interval,
            peer_timeout=disc.peer_timeout,
            suspect_hold=config.reliability.retransmit_age,
            max_peers=config.limits.max_peers,
        )
        self._fragmenter = Fragmenter()
        self._reassembler = Reassembler(max_message=self.max_payload + 65536)
        udp = config.transports.udp
        self._udp = UdpTransport(
            udp.bind,
            udp.port,
            max_datagram=udp.max_datagram,
            rcvbuf=udp.rcvbuf or 0,
            sndbuf=udp.sndbuf or 0,
        )
        self._header = wire.encode_header(self.domain, self.peer_id)
        self._max_body = 0
        self._chunk = 0
        # Datagrams being built: per address (best effort and control), and per (peer id,
        # stream kind) for reliable streams; flow control is per address.
        self._out: dict[Any, OutQueue] = {}
        self._flows: dict[Address, FlowOut] = {}
        #: Destinations silent for reliability.stall_timeout: their full windows and streams
        #: block no publisher (their streams keep buffering for them) until they are heard.
        self._stalled: set[Address] = set()
        self._blocked_since: dict[Address, float] = {}
        #: Addresses that answered ICMP port unreachable: when, and the peer made suspect.
        self._unreachable: dict[Address, float] = {}
        #: Peers on this host, from the host registry: their process ids (a gone process is
        #: dropped at once).
        self._local_pids: dict[int, int] = {}
        self._links = ReliableLinks(config.reliability)
        with_identities = load_identities(config)  # (a ConfigError names the file and key)
        keyring = with_identities[0] if with_identities else load_keyring(config)
        self._identities = with_identities[1] if with_identities else None
        self._own_perms: Permissions | None = (
            self._identities.permissions[self._identities.own] if self._identities else None
        )
        # With identities: what each sender (peer id) may publish, learnt from its key.
        self._sender_perms: dict[int, Permissions] = {}
        encrypt = config.security.mode == "encrypt"
        self._sealer = security.Sealer(keyring, encrypt) if keyring else None
        self._opener = security.Opener(keyring, encrypt) if keyring else None
        self._rel_timer: asyncio.TimerHandle | None = None
        self._out_bytes = 0  # queued since the last flush
        # Fast paths for plain messages (no reply, headers or queue groups), rebuilt whenever
        # interest changes: per subject, where a publish goes / what a receipt reaches.
        self._tx_fast: dict[str, _FastSend] = {}
        self._tx_reply: dict[str, _FastSend] = {}  # by reply family (subjects.reply_family)
        # Flow control (protocol/flow.py): what we grant senders, what senders sent us.
        self._window = DEFAULT_WINDOW
        self._flow_in: dict[Address, FlowIn] = {}
        self._acks_now: set[Address] = set()
        self._ack_timer: asyncio.TimerHandle | None = None
        self._backpressure = False  # a window is full or the kernel pushed back
        self._skip_full = False  # overflow: drop, while publishing under pressure
        self._room = asyncio.Event()
        self._window_stalls = STORE.cell("insane_window_stalls", "udp")
        self._rx_fast: dict[bytes, _FastReceive] = {}
        self._flush_handle: asyncio.Handle | None = None
        self._channels: dict[str, _Channel] = {}
        self._subs: dict[int, Subscription] = {}
        self._sids = itertools.count(1)
        self._requests: dict[str, asyncio.Future[Msg | None]] = {}
        self._deadlines = Deadlines(self._loop)
        self._tokens = itertools.count(1)
        self.inbox_prefix = f"{INBOX_PREFIX}.{self.peer_id:016x}"
        self._registry = HostRegistry(self.domain, self.peer_id) if disc.host_registry else None
        self._static_peers: list[Address] = []
        self._mcast: multicast.MulticastListener | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._progress = asyncio.Event()
        self._flush_due = False  # the caller flushes when done (receive path, request)
        # consumption: poll (see _poll and UdpTransport.spin)
        self._poll_subs: set[int] = set()
        self._poll_misses = 0
        self._poll_paused_until = 0.0
        self._capabilities: dict[str, TransportCapability] = {}
        #: (channel pattern, peer id) -> its insane_route_info labels, held while in use
        self._routes: dict[tuple[str, int], tuple[str, str, str]] = {}
        self.metrics_port: int | None = None
        self._closed = False
        self._draining = False
        self.error_cb: Callable[[Exception], Any] | None = None
        self._dropped: dict[tuple[str, str], Cell] = {}
        self._kernel_drops = 0  # the socket's drop counter when last read
        self._dgram_tx = STORE.cell("insane_datagrams_sent", "udp")
        self._dgram_rx = STORE.cell("insane_datagrams_received", "udp")
        self._batch_tx = STORE.cell("insane_batches_sent", "udp")
        self._batch_rx = STORE.cell("insane_batches_received", "udp")
        # Transports by name: kernel UDP always; a kernel-bypass one when it started.
        self._senders: dict[str, Any] = {"udp": self._udp}
        self._bypass: list[Any] = []  # the kernel-bypass transports that started
        self._rdma: RdmaLinks | None = None  # the RDMA connections, when RDMA started
        self._rx_via = "udp"  # the transport of the batch being received
        self._woken = False  # a delivery woke a task waiting in next_msg (Subscription._wake)
        self._udp.spin_until = self._take_woken

    # ================================================================== lifecycle

    async def _start(self) -> None:
        self._capabilities = probe_all(self.config)
        self._udp.on_unreachable = self._on_unreachable
        await self._udp.start(self._on_udp_datagrams)
        await self._start_bypass()
        # The largest frame body that fits a datagram with every prefix it may carry (header,
        # POSITION, SEQ): a datagram must never exceed the path's MTU, or the kernel splits it
        # into IP fragments, and with loss on the path incomplete fragment chains fill the
        # receiver's reassembly memory until every fragmented datagram is dropped.
        prefix = wire.HEADER_SIZE + wire.POSITION_FRAME_SIZE + wire.SEQ_FRAME_SIZE
        # Sealing (security.mode) adds its own prefix and tag to every datagram.
        largest = min(t.max_datagram for t in self._senders.values())
        self._dgram_limit = largest - (security.OVERHEAD if self._sealer is not None else 0)
        if self._rdma is not None:
            self._rdma.transport.set_datagram_limit(largest)
        self._max_body = self._dgram_limit - prefix - wire.FRAME_HEADER_SIZE
        self._chunk = self._max_body - wire.FRAG_HEAD_SIZE
        # The request inbox is part of our interest from the first announcement on.
        self._router.add_local(LocalSub(0, f"{self.inbox_prefix}.*", "", self._on_reply))
        self._discovery.set_interest(self._router.local_interest(), self._loop.time())
        addr = self._udp.local_address
        log.info("session %s (%016x) on udp %s:%d", self.name, self.peer_id, *addr)
        if self._registry is not None:
            self._registry.register(addr)
        for host, port in self.config.discovery.peer_addresses:
            try:
                self._static_peers.append((socket.gethostbyname(host), port))
            except OSError as exc:
                log.warning("discovery.peers: cannot resolve %s: %s", host, exc)
        mc = self.config.discovery.multicast
        if mc.enabled:
            ifaces = multicast_interfaces(addr[0])
            if mc.interfaces is not None:
                ifaces = [i for i in ifaces if i.name in mc.interfaces]
            if ifaces:
                self._mcast = multicast.MulticastListener(mc.group, mc.port, ifaces)
                await self._mcast.start(self._on_datagrams)
                multicast.configure_sender(self._udp.socket, mc.ttl)
        self._start_metrics()
        expected = self._announce_all()
        self._ticker = self._loop.create_task(self._tick_loop())
        await self._settle(expected)

    async def _start_bypass(self) -> None:
        """Open the kernel-bypass datapaths (AF_XDP, DPDK on the kernel socket's port; RDMA)
        the probes found usable; one that fails to start is reported unavailable, with why,
        and the session goes on without it."""
        for name in ("xdp", "dpdk", "rdma"):
            cap = self._capabilities.get(name)
            if cap is None or not cap.available:
                continue
            transport = self._bypass_transport(name, cap)
            try:
                await transport.start(functools.partial(self._on_bypass_datagrams, name))
            except OSError as exc:
                log.warning("%s did not start (%s): using kernel UDP", name, exc)
                self._capabilities[name] = dataclasses.replace(
                    cap, available=False, reason=f"failed to start: {exc}"
                )
                STORE.set_gauge("insane_transport_available", (name,), 0.0)
                continue
            transport.kernel_poll = self._poll_kernel_once
            transport.spin_until = self._take_woken
            self._bypass.append(transport)
            self._senders[name] = transport
            metrics.init_transport(name)
            if name == "rdma":
                self._rdma = RdmaLinks(transport, self.peer_id)
                self._rdma.on_failure = self._rdma_failed
        self._discovery.transports = tuple(self._senders)

    def _bypass_transport(self, name: str, cap: TransportCapability) -> Any:
        port = self._udp.local_address[1]
        if name == "rdma":
            rdma = self.config.transports.rdma
            return RdmaTransport(
                self._udp.local_address,
                fallback=self._udp,
                device=rdma.device,
                port=rdma.port,
                gid_index=rdma.gid_index,
                recv_depth=rdma.recv_depth,
                send_depth=rdma.send_depth,
            )
        if name == "xdp":
            cfg = self.config.transports.xdp
            assert cfg.interface is not None
            return XdpTransport(
                cfg.interface,
                cfg.queue,
                str(cap.details.get("interface_ipv4")),
                port,
                fallback=self._udp,
                mode=cfg.mode,
                zero_copy=cfg.zero_copy,
            )
        dpdk = self.config.transports.dpdk
        return DpdkTransport(
            dpdk.eal_args,
            dpdk.port or 0,
            str(cap.details.get("ip")),
            port,
            fallback=self._udp,
            interface=dpdk.interface,
        )

    def _start_metrics(self) -> None:
        metrics.init_transport("udp")
        for name, cap in self._capabilities.items():
            STORE.set_gauge("insane_transport_available", (name,), float(cap.available))
        metrics.set_build_info(speedups.NATIVE)
        STORE.add_gauge_source("insane_peers_alive", self._peer_count)
        STORE.add_gauge_source("insane_peers_suspect", self._suspect_count)
        STORE.add_gauge_source("insane_sessions", self._open_count)
        STORE.hold("insane_session_info", self._info_labels)
        m = self.config.metrics
        if m.port is not None:
            try:
                self.metrics_port = metrics_http.serve(m.bind, m.port, m.port_span)
            except metrics_http.MetricsPortError as exc:
                raise metrics_http.MetricsPortError(
                    exc.errno, f"{self.config.source}: {exc.strerror}"
                ) from None
            if m.targets_dir is not None:
                metrics_http.write_target(
                    self.config.file_path(m.targets_dir), m.bind, self.metrics_port, self.name
                )

    def _peer_count(self) -> float:
        return float(len(self._discovery.alive))

    def _suspect_count(self) -> float:
        return float(len(self._discovery.peers) - len(self._discovery.alive))

    def _open_count(self) -> float:
        return 0.0 if self._closed else 1.0

    def _announce_all(self) -> set[Address]:
        """Announce to every peer we can name; return the addresses we expect answers from."""
        targets: set[Address] = set(self._static_peers)
        if self._registry is not None:
            entries = self._registry.entries()
            self._local_pids = {peer_id: pid for peer_id, (_addr, pid) in entries.items()}
            targets.update(addr for addr, _pid in entries.values())
        for t in targets:
            self._discovery.announce_to(t)
        self._beacon()
        self._pump()
        return targets

    def _beacon(self) -> None:
        if self._mcast is None:
            return
        data = self._header + wire.frame(wire.ANNOUNCE, self._discovery.announce_body(reply=True))
        if self._sealer is not None:
            data = self._sealer.seal(data)
        for iface in self._mcast.interfaces:
            multicast.send_beacon(
                self._udp.socket, data, self._mcast.group, self._mcast.port, iface
            )

    async def _settle(self, expected: set[Address]) -> None:
        """Wait (bounded by ``discovery.settle``) until the peers we announced to have answered
        with their interest, so a publish right after connect reaches existing subscribers."""
        settle = self.config.discovery.settle
        if settle <= 0:
            return

        def answered() -> bool:
            have = {p.addr for p in self._discovery.peers.values() if p.interest_version >= 0}
            return expected <= have

        await self._wait_for(answered, settle)
        if self._mcast is not None:
            # Multicast answers come from peers we cannot count in advance: give them the window.
            await asyncio.sleep(settle)

    async def _wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = self._loop.time() + timeout
        while not predicate():
            remaining = deadline - self._loop.time()
            if remaining <= 0 or self._closed:
                return predicate()
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)
        return True

    async def _tick_loop(self) -> None:
        disc = self.config.discovery
        tick = min(0.05, disc.heartbeat_interval / 5)
        next_scan = self._loop.time() + disc.heartbeat_interval
        next_beacon = self._loop.time() + 1.0
        try:
            while not self._closed:
                await asyncio.sleep(tick)
                now = self._loop.time()
                self._discovery.tick(now)
                self._update_stalled(now)
                self._check_local_peers()
                if self._rdma is not None:
                    self._rdma.tick(now)
                self._reassembler.expire(now)
                self._count_reassembly_drops()
                if now >= next_scan:
                    next_scan = now + disc.heartbeat_interval
                    self._rediscover()
                    for t in self._bypass:
                        t.count_drops()
                    self._count_kernel_drops()
                if now >= next_beacon:
                    next_beacon = now + max(1.0, disc.heartbeat_interval)
                    self._beacon()
                self._pump()
        except asyncio.CancelledError:
            pass
        except Exception:  # pragma: no cover - a bug here must not go unnoticed
            log.exception("insane: session ticker failed")
            raise

    def _rediscover(self) -> None:
        known = {p.addr for p in self._discovery.peers.values()}
        targets = set(self._static_peers)
        if self._registry is not None:
            entries = self._registry.entries()
            self._local_pids = {peer_id: pid for peer_id, (_addr, pid) in entries.items()}
            targets.update(
                a for peer_id, (a, _pid) in entries.items() if peer_id not in self._discovery.peers
            )
        for t in targets - known:
            self._discovery.announce_to(t)

    def _check_local_peers(self) -> None:
        """Drop at once a peer on this host whose process is gone (killed: no BYE came),
        and one whose address keeps answering ICMP port unreachable."""
        disc = self._discovery
        for peer_id, pid in list(self._local_pids.items()):
            if peer_id in disc.peers and not process_alive(pid):
                del self._local_pids[peer_id]
                disc.remove(peer_id, f"its process ({pid}) is gone")
        if disc.has_news:
            self._pump()

    def _on_unreachable(self, addr: Address) -> None:
        """ICMP port unreachable for ``addr`` (nothing listens there any more): its peer is
        suspect at once, so it gets no new work; dropped if it stays so for a heartbeat
        interval with nothing heard from it (an ICMP message is easy to forge: one alone
        drops nobody)."""
        disc = self._discovery
        now = self._loop.time()
        first = self._unreachable.setdefault(addr, now)
        for peer in [p for p in disc.peers.values() if p.addr == addr]:
            if now - first >= self.config.discovery.heartbeat_interval and peer.last_seen < first:
                disc.remove(peer.peer_id, "its address is unreachable (ICMP port unreachable)")
            else:
                disc.suspect(peer.peer_id, "its address is unreachable (ICMP port unreachable)")
        if len(self._unreachable) > 4096:
            self._unreachable.clear()
        self._pump()

    async def close(self) -> None:
        """Leave the bus: say goodbye to peers, stop subscriptions, release sockets."""
        if self._closed:
            return
        self._closed = True
        self._routes_changed()
        # Acknowledge everything received before saying goodbye, so that publishers do not
        # count what we got as discarded undelivered.
        self._send_to_peers(self._links.ack_all(), None)
        for addr, ftype, body in self._discovery.bye_frames():
            self._send_frame(addr, ftype, body)
        self._flush()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._wait_drained(), 1.0)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for fut in self._requests.values():
            if not fut.done():
                fut.set_exception(errors.ConnectionClosedError("session closed"))
        self._deadlines.close()
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if self._rel_timer is not None:
            self._rel_timer.cancel()
            self._rel_timer = None
        for sub in list(self._subs.values()):
            sub._finish()
            await sub._stop_worker()
        self._subs.clear()
        if self._registry is not None:
            self._registry.unregister()
        STORE.remove_gauge_source("insane_peers_alive", self._peer_count)
        STORE.remove_gauge_source("insane_peers_suspect", self._suspect_count)
        STORE.remove_gauge_source("insane_sessions", self._open_count)
        STORE.release("insane_session_info", self._info_labels)
        m = self.config.metrics
        if self.metrics_port is not None and m.targets_dir is not None:
            metrics_http.withdraw_target(self.config.file_path(m.targets_dir), self.name)
        for key in list(self._routes):
            self._forget_route(key)
        for peer in self._discovery.peers.values():
            STORE.forget_histogram(RTT, "udp", metrics.peer_label(peer.name, peer.peer_id))
        if self._mcast is not None:
            await self._mcast.close()
        for t in self._bypass:
            await t.close()
        await self._udp.close()
        self._progress.set()

    async def drain(self) -> None:
        """Stop every subscription, let pending messages be processed, flush, then close."""
        if self._closed:
            raise errors.ConnectionClosedError("session closed")
        self._draining = True
        for sub in list(self._subs.values()):
            await sub.drain()
        await self.flush()
        await self.close()

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def is_draining(self) -> bool:
        return self._draining and not self._closed

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ================================================================== publishing

    def _channel(self, subject: str) -> _Channel:
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
            ch = self._channels[key] = _Channel(
                pattern,
                qos,
                b"" if family else subject.encode(),
                STORE.cell("insane_messages_delivered", pattern),
            )
            if self._own_perms is not None and not family:
                ch.may_publish = self._own_perms.may_publish(subject)
        return ch

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        reply: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Send ``payload`` to every subscriber of ``subject``, wherever it is.

        Returns once the message is queued.  While a receiver's flow-control window is full
        (or the kernel pushes back), the channel's ``overflow`` says what happens: ``block``
        (the default) waits for room, ``drop`` leaves the message out for the destinations
        that are full, ``error`` raises ``OutboundBufferLimitError``.
        """
        if self._backpressure:
            await self._publish_under_pressure(subject, payload, reply, headers)
            return
        fast = self._tx_fast.get(subject)
        if fast is None and subject.startswith(REPLY_PREFIX):
            fast = self._tx_reply.get(reply_family(subject) or "")
        if (
            fast is not None
            and not reply
            and headers is None
            and type(payload) is bytes
            and len(payload) <= fast.max_inline
        ):
            # The common case, kept short: append the frame to each peer's datagram (as
            # _send_plain does, inlined: this is the throughput path).
            self._out_bytes += append_plain(
                fast.queues, fast.subject_bytes or subject.encode(), b"", payload
            )
            for c, n in fast.counts:
                c.sent.value += n
                c.bytes_sent.value += len(payload) * n
            if self._flush_handle is None and not self._flush_due:
                self._flush_handle = self._loop.call_soon(self._flush)
            if self._out_bytes >= _FLUSH_BYTES:
                self._flush()
        else:
            self._publish_checked(subject, payload, reply, headers)

    async def _publish_under_pressure(
        self, subject: str, payload: bytes, reply: str | None, headers: dict[str, str] | None
    ) -> None:
        overflow = self._channel(subject).qos.overflow
        if overflow == "block":
            await self._wait_for_room()
            self._publish_checked(subject, payload, reply, headers)
            return
        self._flush()  # (brings the picture of who is full up to date)
        if overflow == "error" and self._backpressure:
            raise errors.OutboundBufferLimitError(
                f"a receiver's window is full: {subject!r} not published"
            )
        self._skip_full = True  # drop: leave it out where there is no room
        try:
            self._publish_checked(subject, payload, reply, headers)
        finally:
            self._skip_full = False

    def _publish_checked(
        self, subject: str, data: bytes, reply: str | None, headers: dict[str, str] | None
    ) -> None:
        if self._closed:
            raise errors.ConnectionClosedError("session closed")
        if reply:
            try:
                validate_subject(reply)
            except SubjectError as exc:
                raise errors.BadSubjectError(f"reply: {exc}") from None
        self._publish(subject, data, reply or "", clean_headers(headers))
        if self._out_bytes >= _FLUSH_BYTES:
            self._flush()

    def _publish(
        self, subject: str, data: bytes, reply: str, headers: dict[str, str] | None
    ) -> None:
        if len(data) > self.max_payload:
            raise errors.MaxPayloadError(
                f"payload of {len(data)} bytes exceeds max_payload {self.max_payload}"
            )
        ch = self._channels.get(subject) or self._channel(subject)
        if not ch.may_publish:
            raise errors.PermissionDeniedError(
                f"identity {self._identities.own if self._identities else ''!r} may not publish "
                f"to {subject!r}"
            )
        payload = data if type(data) is bytes else bytes(data)
        plan = self._router.request_plan(subject) if reply else self._router.plan(subject)
        if plan.empty:
            return
        if not plan.local and not plan.groups:
            self._learn_fast_send(subject, ch, plan.peers)
        for sub in plan.local:
            sub.deliver(Msg(subject, payload, reply, headers, sub.sid, self))
        peers = plan.peers
        if not peers and not plan.groups:
            return
        sb = ch.subject_bytes or subject.encode()
        rb = reply.encode() if reply else b""
        hdr = wire.encode_headers(headers) if headers else b""
        if plan.groups:
            chosen: dict[int, list[bytes]] = {}
            for group, members in plan.groups.items():
                m = self._router.pick(members)
                if isinstance(m, LocalSub):
                    m.deliver(Msg(subject, payload, reply, headers, m.sid, self))
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

    def _send_plain(self, fast: _FastSend, sb: bytes, rb: bytes, data: bytes) -> None:
        """Append a MSG frame with no headers or queue groups to each destination's datagram
        (the caller checked that it fits one frame)."""
        self._out_bytes += append_plain(fast.queues, sb, rb, data)
        for c, n in fast.counts:
            c.sent.value += n
            c.bytes_sent.value += len(data) * n
        if self._flush_handle is None and not self._flush_due:
            self._flush_handle = self._loop.call_soon(self._flush)
        if self._out_bytes >= _FLUSH_BYTES:
            self._flush()

    def _learn_fast_send(self, subject: str, ch: _Channel, peer_ids: list[int]) -> None:
        if self._closed:
            return
        family = not ch.subject_bytes  # request replies: one route per requester
        if len(self._tx_reply if family else self._tx_fast) >= _CACHE_LIMIT:
            return
        queues = []
        for peer_id in peer_ids:
            peer = self._discovery.peers.get(peer_id)
            if peer is None:
                return
            if peer_id not in ch.routed:
                self._note_route(ch, peer)
            queues.append(self._dest_queue(peer, ch))
        # Room left for the payload in one frame, with the longest reply subject we send.
        room = self._max_body - wire.MSG_HEAD_SIZE - len(subject.encode()) - _REPLY_ROOM
        max_inline = min(self.max_payload, room)
        if family:
            self._tx_reply[reply_family(subject) or subject] = _FastSend(
                ch, tuple(queues), b"", max_inline
            )
        else:
            self._tx_fast[subject] = _FastSend(ch, tuple(queues), ch.subject_bytes, max_inline)

    def _routes_changed(self) -> None:
        self._tx_fast.clear()
        self._tx_reply.clear()
        self._rx_fast.clear()

    def _send_msg(self, peer_id: int, ch: _Channel, body: bytes, size: int) -> None:
        peer = self._discovery.peers.get(peer_id)
        if peer is None:
            return
        if peer_id not in ch.routed:
            self._note_route(ch, peer)
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

    def _unusable(self, peer: Peer) -> dict[str, str]:
        """Transports that cannot reach ``peer`` for a reason of their own, and why."""
        why = self._rdma.unusable(peer) if self._rdma is not None else None
        return {"rdma": why} if why else {}

    def _note_route(self, ch: _Channel, peer: Peer) -> None:
        """The first message of a channel to a peer: ask the policy which transport it uses
        (kept in ``ch.routed``); log and count a fallback once per (channel pattern, peer)."""
        route = choose_route(ch.qos, self._capabilities, peer.transports, self._unusable(peer))
        ch.routed[peer.peer_id] = route.transport if route.transport in self._senders else "udp"
        if (ch.pattern, peer.peer_id) in self._routes:
            return
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
            wanted = self._capabilities.get(route.wanted)
            local_ok = wanted is not None and wanted.available and wanted.healthy
            short = "peer" if local_ok else "unavailable"
            STORE.cell(
                "insane_policy_fallbacks", ch.pattern, route.wanted, route.transport, short
            ).value += 1

    def _forget_route(self, key: tuple[str, int]) -> None:
        labels = self._routes.pop(key, None)
        if labels is not None:
            STORE.release("insane_route_info", labels)

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

    def _dest_queue(self, peer: Peer, ch: _Channel) -> OutQueue:
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
                stream=self._links.send_stream(peer.peer_id, kind),
                kind=kind,
                clock=self._loop.time,
                transport=transport,
            )
            self._arm_reliability()
        return q

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
        if self._flush_handle is None and not self._flush_due:
            # Inside the receive path the batch's end flushes; elsewhere, the loop's next turn.
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Hand every queued datagram to the transport."""
        handle = self._flush_handle
        if handle is not None:
            self._flush_handle = None
            handle.cancel()
        if not self._out_bytes:
            return
        self._out_bytes = 0
        datagrams: list[tuple[bytes, Address]] = []
        bypass: dict[str, list[tuple[bytes, Address]]] = {}
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
        self._backpressure = blocked or self._backlog_bytes() > _BACKLOG_LIMIT
        if reliable and self._rel_timer is None:
            self._arm_reliability()  # a TAIL follows if the stream goes quiet unacknowledged

    # ------------------------------------------------------------------ flow control

    def _window_body(self, fin: FlowIn) -> bytes:
        return wire.window_body(fin.take_ack(), self._window)

    def _on_position_frame(self, data: bytes, addr: Address) -> None:
        """The POSITION pre-pass of a batch: what fails here is counted by the main pass."""
        try:
            _version, _flags, domain, sender = wire.decode_header(data)
            pflags, position = wire.read_position(data, wire.HEADER_SIZE)
        except wire.WireError:
            return
        if domain == self.domain and sender != self.peer_id:
            self._on_position(sender, addr, pflags, position)

    def _on_position(self, sender: int, addr: Address, flags: int, position: int) -> None:
        fin = self._flow_in.get(addr)
        if fin is None or fin.source != sender:
            if sender not in self._discovery.peers:
                return  # not a peer (yet): nothing to acknowledge to
            fin = self._flow_in[addr] = FlowIn(sender)
        fin.on_position(position)
        if flags & ACK_NOW or fin.unacked >= self._window // 4:
            self._acks_now.add(addr)
        elif self._ack_timer is None:
            self._ack_timer = self._loop.call_later(_ACK_DELAY, self._ack_all)

    def _send_acks(self) -> None:
        """Acknowledge now where a probe asked or a quarter of the window is unacknowledged."""
        for addr in self._acks_now:
            fin = self._flow_in.get(addr)
            if fin is not None:
                self._send_frame(addr, wire.WINDOW, self._window_body(fin))
        self._acks_now.clear()

    def _ack_all(self) -> None:
        """The delayed acknowledgement: whatever is unacknowledged, acknowledge it now."""
        self._ack_timer = None
        for addr, fin in self._flow_in.items():
            if fin.unacked:
                self._send_frame(addr, wire.WINDOW, self._window_body(fin))
        self._flush()

    def _on_window(self, addr: Address, body: memoryview) -> None:
        acked, window = wire.decode_window(body)
        f = self._flows.get(addr)
        if f is not None and f.on_window(acked, window):
            self._room.set()

    def _update_stalled(self, now: float) -> None:
        """The destinations that have blocked publishers (a full window or a full stream) for
        ``reliability.stall_timeout`` while silent for as long (a frozen or killed process, a
        partition; a live one, however slow, acknowledges or at least sends heartbeats): they
        stop blocking publishers until they are heard again."""
        stall = self.config.reliability.stall_timeout
        peers = self._discovery.peers
        heard: dict[Address, float] = {}
        for p in peers.values():
            heard[p.addr] = max(heard.get(p.addr, 0.0), p.last_seen)
        blocked = {a for a, f in self._flows.items() if f.blocked}
        blocked.update(
            dest.addr
            for (peer_id, _kind), s in self._links.tx.items()
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

    async def _wait_for_room(self) -> None:
        """Wait while a destination's window is full or the kernel pushes back.

        A WINDOW frame opening room wakes us; without one for a while we probe the blocked
        destinations (their WINDOW frame may have been lost). A destination silent for
        ``stall_timeout`` is not waited for (`_update_stalled`): its reliable stream keeps
        what it misses, within the retransmit buffer's bounds, for when it is back.
        """
        while True:
            self._flush()
            if self._backlog_bytes() > _BACKLOG_LIMIT:
                await self._wait_drained()
                continue
            self._update_stalled(self._loop.time())
            stalled = self._stalled
            blocked = [a for a, f in self._flows.items() if f.blocked and a not in stalled]
            # A reliable stream whose retransmit buffer is nearly full of unacknowledged data
            # waits for acknowledgements too (rather than evict what may still be asked for).
            peers = self._discovery.peers
            streams_full = any(
                s.full and (p := peers.get(peer_id)) is not None and p.addr not in stalled
                for (peer_id, _kind), s in self._links.tx.items()
            )
            if not blocked and not streams_full:
                self._backpressure = False
                return
            if self._closed:
                raise errors.ConnectionClosedError("session closed")
            self._window_stalls.value += 1
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), _PROBE_INTERVAL)
            except TimeoutError:
                self._send_datagrams([(self._queue(a).probe(), a) for a in blocked])

    async def flush(self, timeout: float = 10.0) -> None:
        """Hand everything queued to the network and make sure every live peer knows our
        current subscriptions."""
        if self._closed:
            raise errors.ConnectionClosedError("session closed")
        self._flush()
        try:
            await asyncio.wait_for(self._wait_drained(), timeout)
        except TimeoutError:
            raise errors.TimeoutError("flush timed out") from None
        v = self._discovery.interest_version
        if not await self._wait_for(lambda: not self._discovery.unacked_peers(v), timeout):
            raise errors.TimeoutError("flush timed out waiting for peers")

    # ================================================================== subscribing

    async def subscribe(
        self,
        subject: str,
        queue: str | None = None,
        cb: Callback | None = None,
        *,
        pending_msgs_limit: int | None = None,
        pending_bytes_limit: int | None = None,
    ) -> Subscription:
        """Subscribe to a subject or pattern; returns once known peers have learnt of it."""
        if self._closed or self._draining:
            raise errors.ConnectionClosedError("session closed")
        try:
            validate_pattern(subject)
        except SubjectError as exc:
            raise errors.BadSubjectError(str(exc)) from None
        if self._own_perms is not None and not self._own_perms.may_subscribe(subject):
            raise errors.PermissionDeniedError(
                f"identity {self._identities.own if self._identities else ''!r} may not "
                f"subscribe to {subject!r}"
            )
        if len(self._subs) >= self.config.limits.max_subscriptions:
            raise errors.Error(
                f"insane: limits.max_subscriptions ({self.config.limits.max_subscriptions}) "
                "reached: unsubscribe first, or raise the limit"
            )
        if queue and (len(queue.encode()) > 255 or any(c.isspace() for c in queue)):
            raise errors.BadSubjectError(f"invalid queue group name {queue!r}")
        sid = next(self._sids)
        kw: dict[str, int] = {}
        if pending_msgs_limit is not None:
            kw["pending_msgs_limit"] = pending_msgs_limit
        if pending_bytes_limit is not None:
            kw["pending_bytes_limit"] = pending_bytes_limit
        sub = Subscription(self, sid, subject, queue or "", cb, **kw)
        self._subs[sid] = sub
        if self.config.qos_for(subject)[1].consumption == "poll":
            self._poll_subs.add(sid)
            for t in self._pollers():
                t.poll_idle = _POLL_IDLE
        self._router.add_local(LocalSub(sid, subject, queue or "", sub._deliver))
        v = self._discovery.set_interest(self._router.local_interest(), self._loop.time())
        self._pump()
        await self._wait_for(
            lambda: not self._discovery.unacked_peers(v), self.config.discovery.settle * 4
        )
        return sub

    def _remove_subscription(self, sub: Subscription) -> None:
        if self._subs.pop(sub.sid, None) is None:
            return
        self._poll_subs.discard(sub.sid)
        if not self._poll_subs:
            for t in self._pollers():
                t.poll_idle = 0.0
        self._router.remove_local(sub.sid)
        if not self._closed:
            self._discovery.set_interest(self._router.local_interest(), self._loop.time())
            self._pump()

    def _slow_consumer(self, sub: Subscription, msg: Msg) -> None:
        self._drop("slow_consumer")
        self._report(
            errors.SlowConsumerError(subject=msg.subject, reply=msg.reply, sid=sub.sid, sub=sub)
        )

    def _callback_error(self, sub: Subscription, exc: Exception) -> None:
        log.error("insane: callback of %r raised %r", sub, exc)
        self._report(exc)

    def _report(self, exc: Exception) -> None:
        cb = self.error_cb
        if cb is None:
            return
        res = cb(exc)
        if asyncio.iscoroutine(res):
            self._loop.create_task(res)

    # ================================================================== request / reply

    async def request(
        self,
        subject: str,
        data: bytes = b"",
        timeout: float = 1.0,
        headers: dict[str, str] | None = None,
    ) -> Msg:
        """Publish with a reply subject and wait for the first answer."""
        if self._closed:
            raise errors.ConnectionClosedError("session closed")
        if len(data) > self.max_payload:
            raise errors.MaxPayloadError(
                f"payload of {len(data)} bytes exceeds max_payload {self.max_payload}"
            )
        # (No fast path while a peer is suspect: a request goes to no suspect peer.)
        fast = None if self._router.has_suspects else self._tx_fast.get(subject)
        if fast is None:
            self._channel(subject)
            if self._router.request_plan(subject).empty:
                raise errors.NoRespondersError(f"no responders on {subject!r}")
        token = str(next(self._tokens))
        reply = f"{self.inbox_prefix}.{token}"
        fut: asyncio.Future[Msg | None] = self._loop.create_future()
        self._requests[token] = fut
        self._deadlines.add(timeout, fut)  # resolves fut with None when the time is up
        try:
            self._flush_due = True  # flushed just below: no need to schedule a flush
            try:
                if (
                    fast is not None
                    and headers is None
                    and type(data) is bytes
                    and len(data) <= fast.max_inline
                ):
                    self._send_plain(fast, fast.subject_bytes, reply.encode(), data)
                else:
                    self._publish(subject, data, reply, clean_headers(headers))
            finally:
                self._flush_due = False
            self._flush()  # about to wait: the request leaves now
            ch = fast.ch if fast is not None else self._channel(subject)
            spinner = self._bypass[0] if self._bypass else self._udp
            if self._poll(ch) and not spinner.spinning:
                # consumption: poll: read the reply off the socket ourselves, without a
                # round through the event loop (see UdpTransport.spin).
                if spinner.spin(fut.done, _POLL_IDLE, _REQUEST_SPIN):
                    self._poll_misses = 0
                else:
                    self._poll_misses += 1
                    if self._poll_misses >= _POLL_MISSES:
                        self._poll_misses = 0
                        self._poll_paused_until = self._loop.time() + 1.0
            msg = fut.result() if fut.done() else await fut
        finally:
            self._requests.pop(token, None)
        if msg is None:
            raise errors.TimeoutError(f"no reply on {subject!r} within {timeout}s")
        self._deadlines.finished()
        return msg

    def _poll(self, ch: _Channel) -> bool:
        """Whether to busy-poll for this channel's answers: its QoS says ``consumption: poll``
        and polling has been paying off.  Polling only pays when the peer runs on another CPU;
        when eight polls in a row come back empty (the peer shares our CPU and cannot run while
        we poll), polling pauses for a second."""
        return ch.qos.consumption == "poll" and self._loop.time() >= self._poll_paused_until

    def new_inbox(self) -> str:
        return f"{self.inbox_prefix}.x{next(self._tokens)}"

    def _on_reply(self, msg: Msg) -> None:
        fut = self._requests.get(msg.subject.rpartition(".")[2])
        if fut is not None and not fut.done():
            fut.set_result(msg)
            self._woken = True  # a poll-mode spin stops: the requester must run

    # ================================================================== receiving

    def _drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` dropped under ``reason``, on the transport of the batch at hand."""
        key = (self._rx_via, reason)
        c = self._dropped.get(key)
        if c is None:
            c = self._dropped[key] = STORE.cell("insane_dropped", *key)
        c.value += n

    def _count_kernel_drops(self) -> None:
        """The kernel's receive-buffer overflows on our socket, as drops (``kernel_rcvbuf``),
        so that "sent minus received" has a name."""
        total = self._udp.kernel_drops()
        if total > self._kernel_drops:
            key = ("udp", "kernel_rcvbuf")
            c = self._dropped.get(key)
            if c is None:
                c = self._dropped[key] = STORE.cell("insane_dropped", *key)
            c.value += total - self._kernel_drops
        self._kernel_drops = total

    def _count_reassembly_drops(self) -> None:
        for reason in self._reassembler.take_drops():
            self._drop(reason)

    def _send_datagrams(
        self, datagrams: list[tuple[bytes, Address]], via: str = "udp", *, sealed: bool = False
    ) -> None:
        """Hand datagrams to a transport (kernel UDP unless ``via`` names another), sealed
        first when ``security.mode`` says so (and they are not ``sealed`` already)."""
        sealer = self._sealer
        if sealer is not None and not sealed:
            datagrams = [(sealer.seal(d), a) for d, a in datagrams]
        if via == "udp":
            self._udp.send_batch(datagrams)
            self._dgram_tx.value += len(datagrams)
            self._batch_tx.value += 1
            return
        self._senders[via].send_batch(datagrams)
        STORE.cell("insane_datagrams_sent", via).value += len(datagrams)
        STORE.cell("insane_batches_sent", via).value += 1

    def _backlog_bytes(self) -> int:
        """Bytes the transports hold in user space because the kernel or a ring pushed back."""
        n = self._udp.backlog_bytes
        return n + sum(int(t.backlog_bytes) for t in self._bypass)

    async def _wait_drained(self) -> None:
        for t in self._senders.values():
            await t.wait_drained()

    def _on_bypass_datagrams(self, via: str, batch: list[tuple[bytes, Address]]) -> None:
        self._rx_via = via
        try:
            self._on_datagrams(batch)
        finally:
            self._rx_via = "udp"

    def _on_udp_datagrams(self, batch: list[tuple[bytes, Address]]) -> None:
        """The kernel socket's batches. A DPDK tap on a kernel interface (net_af_packet) gets
        the same frames as the kernel: what came by that interface is a copy, ignored."""
        for t in self._bypass:
            shadows = getattr(t, "shadows", None)
            if shadows is not None:
                batch = [item for item in batch if not shadows(item[1])]
        if batch:
            self._on_datagrams(batch)

    def _pollers(self) -> list[Any]:
        """The transports that busy-poll after a delivery (``consumption: poll``): the
        kernel-bypass ones, whose spin polls the kernel socket too; else the kernel socket.
        (A kernel socket spinning on its own would leave a bypass datapath unread: a copy
        of a frame a tap shows it too would hold up the frame itself.)"""
        return list(self._bypass) or [self._udp]

    def _take_woken(self) -> bool:
        woken, self._woken = self._woken, False
        return woken

    def _poll_kernel_once(self) -> bool:
        """One non-blocking read of the kernel socket, delivered (AF_XDP's spin polls both)."""
        try:
            item = self._udp.socket.recvfrom(65536)
        except OSError:
            return False
        self._on_udp_datagrams([item])
        return True

    def _open(self, batch: list[tuple[bytes, Address]]) -> list[tuple[bytes, Address]]:
        """Check and open sealed datagrams; what fails is counted by reason and dropped."""
        opener = self._opener
        assert opener is not None
        now = time.time()
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

    def _on_datagrams(self, batch: list[tuple[bytes, Address]]) -> None:
        if self._opener is not None:
            batch = self._open(batch)
        self._flush_due = True
        try:
            self._receive(batch)
        finally:
            self._flush_due = False
        self._flush()  # answers (control frames, replies of inline callbacks) leave in this turn

    def _receive(self, batch: list[tuple[bytes, Address]]) -> None:
        now = self._loop.time()
        if self._rx_via == "udp":
            self._dgram_rx.value += len(batch)
            self._batch_rx.value += 1
        else:
            STORE.cell("insane_datagrams_received", self._rx_via).value += len(batch)
            STORE.cell("insane_batches_received", self._rx_via).value += 1
        domain = self.domain
        me = self.peer_id
        disc = self._discovery
        peers = disc.peers
        control = False
        # Flow control first: the whole batch is out of the socket buffer now, so the senders
        # may go on while we process it (acknowledging after processing would make them wait
        # for it, and sender and receiver would take turns instead of working side by side).
        for data, addr in batch:
            if len(data) > wire.HEADER_SIZE and data[wire.HEADER_SIZE] == wire.POSITION:
                self._on_position_frame(data, addr)
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
                disc.heard(peer, now)
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
                    ready, lost = self._links.on_seq(sender, kind, epoch, seq, data, now)
                except wire.WireError as exc:
                    self._drop(exc.reason)
                    continue
                for d in ready:
                    control |= self._process_frames(d, _frames_start(d), sender, addr, now)
                if lost:
                    self._report_lost(lost)
                continue
            control |= self._process_frames(data, pos, sender, addr, now)
        if reliable:
            links = self._links
            self._send_to_peers(links.acks_due(), None)
            if links.gap_open:
                links.gap_open = False
                self._arm_reliability()
        if control or self._discovery.has_news:
            self._pump()

    def _from_stranger(
        self, data: bytes, pos: int, sender: int, addr: Address, now: float
    ) -> bool:
        """A datagram from a sender that is not a peer: only its ANNOUNCE frames count (the
        handshake of `discovery`); anything else is dropped, once per datagram, and never
        answered, so a stranger makes us hold nothing. True if an ANNOUNCE was handled."""
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
                self._discovery.on_frame(sender, ftype, memoryview(data)[start:pos], addr, now)
            except wire.WireError as exc:
                self._drop(exc.reason)
                return handled
            handled = True
            if sender in self._discovery.peers:  # admitted: the rest is a peer's
                return self._process_frames(data, pos, sender, addr, now) or handled
        if not handled:
            self._drop("unknown_peer")
        return handled

    def _process_frames(
        self, data: bytes, pos: int, sender: int, addr: Address, now: float
    ) -> bool:
        """Handle the frames of one datagram from ``pos``; True if control frames came."""
        end = len(data)
        disc = self._discovery
        rx_fast = self._rx_fast
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
            # Any other frame, the general way.
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
                if ftype == wire.MSG:
                    self._on_msg(data, start, pos, sender)
                elif ftype == wire.FRAG:
                    control = True  # a reassembled frame may be a control frame
                    self._on_frag(sender, memoryview(data)[start:pos], addr, now)
                elif ftype == wire.WINDOW:
                    self._on_window(addr, memoryview(data)[start:pos])
                elif wire.ACK <= ftype <= wire.GAP:
                    self._on_stream_frame(ftype, sender, addr, memoryview(data)[start:pos], now)
                elif ftype in (wire.POSITION, wire.SEQ):
                    pass  # only meaningful first in a datagram
                elif ftype == wire.RDMA_SETUP:
                    control = True
                    self._on_rdma_setup(sender, addr, memoryview(data)[start:pos], now)
                else:
                    control = True
                    disc.on_frame(sender, ftype, memoryview(data)[start:pos], addr, now)
            except wire.WireError as exc:
                self._drop(exc.reason)
        return control

    # ------------------------------------------------------------------ reliable streams

    def _on_stream_frame(
        self, ftype: int, sender: int, addr: Address, body: memoryview, now: float
    ) -> None:
        links = self._links
        if ftype == wire.ACK:
            if links.on_ack(sender, body):
                self._room.set()
        elif ftype == wire.NACK:
            again, gap_frames = links.on_nack(sender, body, now)
            if again:  # resent on the lane's transport
                via = lane_transport(wire.decode_nack(body)[0])
                via = via if via in self._senders else "udp"
                self._send_datagrams([(d, addr) for d in again], via)
            self._send_to_peers(gap_frames, addr)
            if gap_frames:
                self._report_gaps_sent()
        elif ftype == wire.TAIL:
            frames, ready, lost = links.on_tail(sender, body, now)
            for d in ready:
                self._process_frames(d, _frames_start(d), sender, addr, now)
            self._report_lost(lost)
            self._send_to_peers(frames, addr)
            self._arm_reliability()
        else:  # GAP
            ready, lost = links.on_gap(sender, body, now)
            for d in ready:
                self._process_frames(d, _frames_start(d), sender, addr, now)
            self._report_lost(lost)

    def _send_to_peers(self, frames: list[tuple[int, int, bytes]], addr: Address | None) -> None:
        """Queue control frames addressed to peer ids (``addr``: where the unknown ones go)."""
        peers = self._discovery.peers
        for peer_id, ftype, body in frames:
            peer = peers.get(peer_id)
            to = peer.addr if peer is not None else addr
            if to is not None:
                self._send_frame(to, ftype, body)

    def _peer_name(self, peer_id: int) -> str:
        peer = self._discovery.peers.get(peer_id)
        return peer.name if peer is not None and peer.name else f"{peer_id:016x}"

    def _report_lost(self, lost: list[LostData]) -> None:
        """Tell the application what a publisher's streams will never deliver: one error per
        gap, with its message count where the publisher could give it."""
        for item in lost:
            name = self._peer_name(item.peer_id)
            kind = "ordered" if is_ordered(item.kind) else "unordered"
            detail = f"{kind} stream, datagrams {item.gap.start}..{item.gap.end - 1}"
            if item.gap.messages is None:
                detail += ": the publisher can no longer say how many messages they held"
            log.warning("insane: lost for good from %s: %s", name, detail)
            self._report(
                errors.MessagesLostError(
                    name, item.gap.messages, detail, datagrams=item.gap.count
                )
            )

    def _report_discarded(self, peer_id: int, messages: int, why: str) -> None:
        """Tell the application (a publisher) how many messages to ``peer_id`` it discarded
        before they were acknowledged."""
        if not messages:
            return
        name = self._peer_name(peer_id)
        log.warning("insane: %d message(s) to %s discarded undelivered: %s", messages, name, why)
        self._report(errors.MessagesLostError(name, messages, why, sent=True))

    def _arm_reliability(self) -> None:
        """Make sure the reliability timer fires when the next TAIL or NACK is due."""
        now = self._loop.time()
        at = self._links.next_timer(now)
        handle = self._rel_timer
        if at is None:
            return
        at = max(at, now + _MIN_TIMER)
        if handle is not None and handle.when() <= at:
            return
        if handle is not None:
            handle.cancel()
        self._rel_timer = self._loop.call_at(at, self._reliability_tick)

    def _reliability_tick(self) -> None:
        self._rel_timer = None
        if self._closed:
            return
        self._send_to_peers(self._links.due(self._loop.time()), None)
        self._flush()
        self._report_gaps_sent()
        self._arm_reliability()

    def _report_gaps_sent(self) -> None:
        for peer_id, n in self._links.take_discarded().items():
            self._report_discarded(
                peer_id, n, "evicted from the retransmit buffer (reliability.retransmit_bytes, "
                "retransmit_age) before the subscriber acknowledged them"
            )

    def _on_frag(self, sender: int, body: memoryview, addr: Address, now: float) -> None:
        msg_id, total, offset, inner, chunk = wire.decode_frag(body)
        done = self._reassembler.feed(sender, msg_id, total, offset, inner, chunk, now)
        self._count_reassembly_drops()
        if done is None:
            return
        if done.inner_type == wire.MSG:
            self._on_msg(done.body)
        elif done.inner_type == wire.FRAG:
            raise wire.WireError("malformed", "nested fragment")
        elif wire.ACK <= done.inner_type <= wire.GAP:
            self._on_stream_frame(done.inner_type, sender, addr, memoryview(done.body), now)
        else:
            self._discovery.on_frame(sender, done.inner_type, done.body, addr, now)

    def _on_msg(
        self, buf: bytes | memoryview, start: int = 0, end: int = -1, sender: int = 0
    ) -> None:
        subject, reply, headers, queues, payload = wire.decode_msg(buf, start, end)
        if self._sender_perms:
            perms = self._sender_perms.get(sender)
            if perms is not None and not perms.may_publish(subject) and not reply_family(subject):
                raise wire.WireError("permission", subject[:64])  # counted, dropped
        ch = self._channels.get(subject)
        if ch is None:
            try:
                ch = self._channel(subject)
            except errors.BadSubjectError:
                raise wire.WireError("bad_subject", subject[:64]) from None
        c = ch.counters(self._rx_via)
        c.received.value += 1
        c.bytes_received.value += len(payload)
        targets = self._router.local_targets(subject, queues)
        plain = not (reply or headers or queues)
        if plain and ch.subject_bytes and len(self._rx_fast) < _CACHE_LIMIT:
            runners = tuple(self._plain_runner(t) for t in targets)
            self._rx_fast[subject.encode()] = _FastReceive(subject, ch, runners)
        for sub in targets:
            sub.deliver(Msg(subject, payload, reply, headers, sub.sid, self))
        ch.delivered.value += len(targets)

    def _plain_runner(self, target: LocalSub) -> Callable[[str, list[bytes]], None]:
        sub = self._subs.get(target.sid)
        if sub is not None:
            return sub._deliver_plain
        deliver, sid = target.deliver, target.sid

        def run(subject: str, payloads: list[bytes]) -> None:
            for p in payloads:
                deliver(Msg(subject, p, "", None, sid, self))

        return run

    def _pump(self) -> None:
        """Send what discovery (and the RDMA set-up) wants sent and apply what it learnt."""
        disc = self._discovery
        for addr, ftype, body in disc.take_outgoing():
            self._send_frame(addr, ftype, body)
        events = disc.take_events()
        rdma = self._rdma
        for ev in events:
            if isinstance(ev, InterestChanged):
                self._router.set_remote(ev.peer.peer_id, ev.peer.interest)
            elif isinstance(ev, PeerUp):
                log.info(
                    "peer up: %s (%016x) at %s:%d", ev.peer.name, ev.peer.peer_id, *ev.peer.addr
                )
                if rdma is not None:
                    rdma.peer_up(ev.peer, self._loop.time())
            elif isinstance(ev, PeerSuspect):
                log.info(
                    "peer suspect (%s): %s (%016x): no new work for it; its streams are kept",
                    ev.reason, ev.peer.name, ev.peer.peer_id,
                )  # fmt: skip
                self._router.set_suspect(ev.peer.peer_id, True)
            elif isinstance(ev, PeerBack):
                log.info("peer back: %s (%016x)", ev.peer.name, ev.peer.peer_id)
                self._router.set_suspect(ev.peer.peer_id, False)
                self._unreachable.pop(ev.peer.addr, None)
            elif isinstance(ev, RttMeasured):
                label = metrics.peer_label(ev.peer.name, ev.peer.peer_id)
                STORE.histogram(RTT, "udp", label).observe(ev.rtt)
            elif isinstance(ev, PeerDown):
                log.info("peer down (%s): %s (%016x)", ev.reason, ev.peer.name, ev.peer.peer_id)
                if rdma is not None:
                    rdma.peer_down(ev.peer)
                self._router.drop_remote(ev.peer.peer_id)
                self._reassembler.forget_sender(ev.peer.peer_id)
                for t in self._bypass:
                    t.forget(ev.peer.addr)
                for key in [k for k in self._routes if k[1] == ev.peer.peer_id]:
                    self._forget_route(key)
                STORE.forget_histogram(
                    RTT, "udp", metrics.peer_label(ev.peer.name, ev.peer.peer_id)
                )
                for ch in self._channels.values():
                    ch.routed.pop(ev.peer.peer_id, None)
                self._forget_flow(ev.peer)
        if rdma is not None:
            for addr, ftype, body in rdma.take_outgoing():
                self._send_frame(addr, ftype, body)
        self._progress.set()

    # ------------------------------------------------------------------ RDMA connections

    def _on_rdma_setup(self, sender: int, addr: Address, body: memoryview, now: float) -> None:
        """An RDMA_SETUP frame (insane/control/rdma_links.py). Without RDMA here, an offer is
        refused with the reason, so the peer falls back at once instead of after its
        time-out."""
        peer = self._discovery.peers.get(sender)
        if peer is None:
            return  # not a peer yet: it offers again
        if self._rdma is not None:
            self._rdma.on_frame(peer, body, now)
            return
        flags, _to, remote, _reason = rdma_frames.decode(body)
        if remote is not None and not flags & rdma_frames.ANSWER:
            cap = self._capabilities.get("rdma")
            why = cap.reason if cap is not None and cap.reason else "RDMA is not available here"
            refusal = rdma_frames.encode(rdma_frames.REFUSE, sender, None, why)
            self._send_frame(addr, wire.RDMA_SETUP, refusal)

    def _rdma_failed(self, ev: LinkFailed) -> None:
        """RDMA to a peer is over (never made, or broke): its channels take the next transport
        the policy allows (it now says why not RDMA); what had not left goes by kernel UDP;
        what was handed to the adapter and not confirmed is reported lost."""
        for ch in self._channels.values():
            if ch.routed.get(ev.peer_id) == "rdma":
                del ch.routed[ev.peer_id]
        for key in [k for k in self._routes if k[1] == ev.peer_id]:
            self._forget_route(key)
        self._routes_changed()
        if ev.unsent:
            self._send_datagrams([(d, ev.addr) for d in ev.unsent], sealed=True)
        q = self._out.pop(("rdma", ev.addr), None)
        if q is not None and not q.empty:
            self._send_datagrams([(d, ev.addr) for d in q.take()])
        if ev.lost:
            peer = self._discovery.peers.get(ev.peer_id)
            name = peer.name if peer is not None and peer.name else f"{ev.peer_id:016x}"
            detail = f"handed to RDMA and not confirmed: {ev.reason}"
            log.warning("insane: %d datagram(s) to %s lost: %s", ev.lost, name, detail)
            self._report(
                errors.MessagesLostError(name, None, detail, sent=True, datagrams=ev.lost)
            )

    def _forget_flow(self, peer: Peer) -> None:
        """A gone peer neither blocks publishers nor keeps flow or stream state; what it still
        owed us on reliable streams is reported lost, what we held back is handed over."""
        now = self._loop.time()
        ready, lost, discarded = self._links.peer_gone(peer.peer_id, now)
        for d in ready:
            self._process_frames(d, _frames_start(d), peer.peer_id, peer.addr, now)
        self._report_lost(lost)
        self._report_discarded(
            peer.peer_id, discarded, "the subscriber went away before acknowledging them"
        )
        for kind in STREAM_KINDS:
            self._out.pop((peer.peer_id, kind), None)
        for name in self._senders:
            self._out.pop((name, peer.addr), None)
        if not any(p.addr == peer.addr for p in self._discovery.peers.values()):
            q = self._out.get(peer.addr)
            if q is not None and q.empty:
                del self._out[peer.addr]
            self._flows.pop(peer.addr, None)
            self._room.set()
        fin = self._flow_in.get(peer.addr)
        if fin is not None and fin.source == peer.peer_id:
            del self._flow_in[peer.addr]
        self._sender_perms.pop(peer.peer_id, None)

    # ================================================================== introspection

    @property
    def peers(self) -> list[Peer]:
        """The peers currently alive (suspect ones, silent for discovery.peer_timeout, are
        not: see `suspect_peers`)."""
        return self._discovery.alive

    @property
    def suspect_peers(self) -> list[Peer]:
        """Peers silent past discovery.peer_timeout (or unreachable): given no new work, their
        streams kept until reliability.retransmit_age more has passed."""
        return [p for p in self._discovery.peers.values() if p.suspect]

    @property
    def address(self) -> Address:
        return self._udp.local_address

    @property
    def capabilities(self) -> dict[str, TransportCapability]:
        return dict(self._capabilities)

    def has_subscribers(self, subject: str) -> bool:
        """Whether a subscription known to this session (here, or a peer's interest) matches
        ``subject``: a publish now would reach someone."""
        validate_subject(subject)
        return not self._router.plan(subject).empty

    def route_for(self, subject: str, peer: Peer | None = None) -> Any:
        """The policy's route for ``subject`` toward ``peer`` (or a peer like us)."""
        ch = self._channel(subject)
        if peer is None:
            transports = tuple(n for n, c in self._capabilities.items() if c.available)
            return choose_route(ch.qos, self._capabilities, transports)
        return choose_route(ch.qos, self._capabilities, peer.transports, self._unusable(peer))


_frozen = False


def _frames_start(data: bytes) -> int:
    """Where the frames of a (well-formed) datagram start, after POSITION and SEQ."""
    pos = wire.HEADER_SIZE
    if data[pos] == wire.POSITION:
        pos += wire.POSITION_FRAME_SIZE
    if pos < len(data) and data[pos] == wire.SEQ:
        pos += wire.SEQ_FRAME_SIZE
    return pos


def _freeze_startup_objects() -> None:
    """Once per process, after the first session is up: move everything alive (modules,
    classes, configuration: objects that live as long as the process) out of the cyclic
    garbage collector's generations (``gc.freeze()``).

    Messaging allocates many short-lived objects; each collection would otherwise walk those
    long-lived ones again, which measurably costs round-trip time.  Nothing is switched off:
    new objects are collected as before.  ``INSANE_GC_FREEZE=0`` leaves the collector alone.
    """
    global _frozen
    if not _frozen and os.environ.get("INSANE_GC_FREEZE", "1") != "0":
        _frozen = True
        gc.collect()
        gc.freeze()


class _Connecting:
    """What :func:`connect` returns: await it for a session, or use it with ``async with``."""

    def __init__(self, config: Any, name: str | None) -> None:
        self._config = config
        self._name = name
        self._session: Session | None = None

    async def _open(self) -> Session:
        cfg = load_config(self._config)
        session = Session(cfg, self._name)
        try:
            await session._start()
        except BaseException:
            await session.close()
            raise
        self._session = session
        _freeze_startup_objects()
        return session

    def __await__(self) -> Any:
        return self._open().__await__()

    async def __aenter__(self) -> Session:
        return await self._open()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()


def connect(config: Any = None, name: str | None = None) -> _Connecting:
    """Join the bus. ``config``: a YAML path, a mapping, a Config, or None (``INSANE_CONFIG``,
    then ``./insane.yaml``, then the embedded default: kernel UDP on loopback)."""
    return _Connecting(config, name)
