"""The asyncio driver: the transports, the one timer, readiness, and the control plane's pump.

It owns what does I/O for a session: the kernel UDP socket, the kernel-bypass datapaths that
started (built through the registry), the multicast listener, the host registry, and one
event-loop timer. It feeds the sans-IO node (protocol/node.py) what the transports read, sends
what the node hands out, and runs the node's and the control plane's deadlines on that one
timer: the node's (reliability, delayed acknowledgements) and the control plane's tick
(discovery, RDMA set-up, reassembly expiry, stalled destinations, the host registry), which
comes every 50 ms. Between the node and the control plane (discovery) it is the glue: frames
the node receives for the control plane are handed to it through the node's `Control`
protocol; what the control plane decides (peers up, down, suspect, their interest) it applies
to the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import socket
from collections.abc import Callable
from typing import Any

from insane import errors
from insane.control.discovery import (
    Discovery,
    InterestChanged,
    PeerBack,
    PeerDown,
    PeerSuspect,
    PeerUp,
    RttMeasured,
)
from insane.control.host_registry import HostRegistry
from insane.control.rdma_links import LinkFailed, RdmaLinks
from insane.ops import metrics
from insane.ops.metrics import STORE
from insane.ops.process import process_alive
from insane.protocol import rdma_frames, wire
from insane.protocol.node import PeerNode
from insane.protocol.node_base import Report, Room
from insane.qos.model import Config
from insane.transports import multicast
from insane.transports.base import Address, Transport, TransportCapability
from insane.transports.netif import multicast_interfaces
from insane.transports.registry import probe_all, transport_class
from insane.transports.udp import UdpTransport

log = logging.getLogger("insane")

#: Make publishers wait while this much is queued in user space because the kernel pushed back.
BACKLOG_LIMIT = 8 * 1024 * 1024
#: A publisher blocked this long without news probes the receiver (seconds).
_PROBE_INTERVAL = 0.05
#: How often a closing session looks whether its peers acknowledged everything (seconds).
_LINGER_POLL = 0.002
RTT = "insane_peer_rtt_seconds"


class Driver:
    """The I/O of one session around its node (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        node: PeerNode,
        discovery: Discovery,
        report: Callable[[Exception], None],
        take_woken: Callable[[], bool],
    ) -> None:
        self.config = config
        self.node = node
        self.discovery = discovery
        self._report = report
        self._take_woken = take_woken
        self._loop = asyncio.get_running_loop()
        udp = config.transports.udp
        self.udp = UdpTransport(
            udp.bind,
            udp.port,
            max_datagram=udp.max_datagram,
            rcvbuf=udp.rcvbuf or 0,
            sndbuf=udp.sndbuf or 0,
        )
        self.udp.spin_until = take_woken
        #: Transports by name: kernel UDP always; a kernel-bypass one when it started.
        self.senders: dict[str, Transport] = {"udp": self.udp}
        self.bypass: list[Transport] = []
        #: The transport a request busy-polls on (``consumption: poll``): the first
        #: kernel-bypass one that started (its spin polls the kernel socket too), else that.
        self.spinner: Transport = self.udp
        #: The kernel-bypass transports that see copies of the kernel socket's frames.
        self._shadowing: list[Transport] = []
        self.rdma: RdmaLinks | None = None
        self.capabilities: dict[str, TransportCapability] = {}
        self._registry = (
            HostRegistry(config.domain, node.peer_id) if config.discovery.host_registry else None
        )
        self._static_peers: list[Address] = []
        self._mcast: multicast.MulticastListener | None = None
        #: Peers on this host, from the host registry: their process ids (a gone process is
        #: dropped at once).
        self._local_pids: dict[int, int] = {}
        #: Addresses that answered ICMP port unreachable: when first.
        self._unreachable: dict[Address, float] = {}
        self._kernel_drops = 0  # the socket's drop counter when last read
        #: Set whenever the control plane learnt something (tasks waiting on peers wake).
        self.progress = asyncio.Event()
        #: Set when a window opened (blocked publishers wake).
        self.room = asyncio.Event()
        self.closed = False
        self._flush_handle: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._next_tick = 0.0
        self._next_scan = 0.0
        self._next_beacon = 0.0
        self._tick = min(0.05, config.discovery.heartbeat_interval / 5)
        node.on_output = self.send
        node.on_flush_wanted = self.schedule_flush
        node.on_event = self._events
        node.on_control_news = self.pump
        node.on_timer_changed = self.arm
        node.on_rdma_setup = self._on_rdma_setup
        node.backlog_bytes = self.backlog_bytes
        node.backlog_limit = BACKLOG_LIMIT

    # ================================================================== lifecycle

    async def start(self) -> None:
        """Probe, open the transports, and start discovery (the caller then settles)."""
        self.capabilities = probe_all(self.config)
        self.node.channels.capabilities = self.capabilities  # type: ignore[attr-defined]
        self.udp.on_unreachable = self._on_unreachable
        await self.udp.start(self._on_udp_datagrams)
        self.udp.native_spin = self.node.udp_spin
        await self._start_bypass()
        largest = min(t.max_datagram for t in self.senders.values())
        self.node.set_datagram_limit(largest)
        if self.rdma is not None:
            self.rdma.transport.set_datagram_limit(largest)

    async def start_discovery(self) -> None:
        """Register in the host registry, learn the static peers, listen for beacons."""
        addr = self.udp.local_address
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
                multicast.configure_sender(self.udp.socket, mc.ttl)

    def announce_all(self) -> set[Address]:
        """Announce to every peer we can name; return the addresses we expect answers from."""
        targets: set[Address] = set(self._static_peers)
        if self._registry is not None:
            entries = self._registry.entries()
            self._local_pids = {peer_id: pid for peer_id, (_addr, pid) in entries.items()}
            targets.update(addr for addr, _pid in entries.values())
        for t in targets:
            self.discovery.announce_to(t)
        self._beacon()
        self.pump()
        return targets

    def start_timer(self) -> None:
        now = self._loop.time()
        hb = self.config.discovery.heartbeat_interval
        self._next_tick = now + self._tick
        self._next_scan = now + hb
        self._next_beacon = now + 1.0
        self.arm()

    async def _start_bypass(self) -> None:
        """Open the kernel-bypass datapaths (AF_XDP, DPDK on the kernel socket's port; RDMA)
        the probes found usable; one that fails to start is reported unavailable, with why,
        and the session goes on without it."""
        for name in ("xdp", "dpdk", "rdma"):
            cap = self.capabilities.get(name)
            if cap is None or not cap.available:
                continue
            transport = self._bypass_transport(name, cap)
            try:
                await transport.start(functools.partial(self._on_bypass_datagrams, name))
            except OSError as exc:
                log.warning("%s did not start (%s): using kernel UDP", name, exc)
                self.capabilities[name] = dataclasses.replace(
                    cap, available=False, reason=f"failed to start: {exc}"
                )
                STORE.set_gauge("insane_transport_available", (name,), 0.0)
                continue
            transport.kernel_poll = self._poll_kernel_once
            transport.spin_until = self._take_woken
            self.bypass.append(transport)
            self.spinner = self.bypass[0]
            if type(transport).shadows is not Transport.shadows:
                self._shadowing.append(transport)
            self.senders[name] = transport
            metrics.init_transport(name)
            if name == "rdma":
                self.rdma = RdmaLinks(transport, self.node.peer_id)
                self.rdma.on_failure = self._rdma_failed
        self.discovery.transports = tuple(self.senders)
        self.node.set_running(set(self.senders))
        self.node.channels.running = set(self.senders)  # type: ignore[attr-defined]
        if self.rdma is not None:
            rdma = self.rdma
            self.node.channels.unusable = (  # type: ignore[attr-defined]
                lambda peer: {"rdma": why} if (why := rdma.unusable(peer)) else {}
            )

    def _bypass_transport(self, name: str, cap: TransportCapability) -> Any:
        """A kernel-bypass transport of the registry, with what it needs from the config."""
        cls: Any = transport_class(name)
        port = self.udp.local_address[1]
        if name == "rdma":
            rdma = self.config.transports.rdma
            return cls(
                self.udp.local_address,
                fallback=self.udp,
                device=rdma.device,
                port=rdma.port,
                gid_index=rdma.gid_index,
                recv_depth=rdma.recv_depth,
                send_depth=rdma.send_depth,
            )
        if name == "xdp":
            cfg = self.config.transports.xdp
            assert cfg.interface is not None
            return cls(
                cfg.interface,
                cfg.queue,
                str(cap.details.get("interface_ipv4")),
                port,
                fallback=self.udp,
                mode=cfg.mode,
                zero_copy=cfg.zero_copy,
            )
        dpdk = self.config.transports.dpdk
        return cls(
            dpdk.eal_args,
            dpdk.port or 0,
            str(cap.details.get("ip")),
            port,
            fallback=self.udp,
            interface=dpdk.interface,
        )

    async def close(self) -> None:
        """Wait a while for peers to acknowledge what reliable channels sent them, then
        acknowledge what came, say goodbye, stop the timer, close the transports."""
        node = self.node
        await self._linger()
        node.routes_changed()
        node.close()
        for addr, ftype, body in self.discovery.bye_frames():
            node.send_frame(addr, ftype, body)
        self.flush()
        self.closed = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.wait_drained(), 1.0)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._registry is not None:
            self._registry.unregister()
        node.channels.forget_all()  # type: ignore[attr-defined]
        for peer in self.discovery.peers.values():
            STORE.forget_histogram(RTT, "udp", metrics.peer_label(peer.name, peer.peer_id))
        if self._mcast is not None:
            await self._mcast.close()
        for t in self.bypass:
            await t.close()
        await self.udp.close()
        self.progress.set()

    async def _linger(self) -> None:
        """Until peers (not suspect ones) acknowledged everything the reliable streams sent
        them, at most ``reliability.close_linger`` seconds: retransmissions go on meanwhile.
        What is still unacknowledged after it, ``node.close()`` reports."""
        node = self.node
        deadline = self._loop.time() + self.config.reliability.close_linger
        self.flush()
        while node.unacknowledged() and self._loop.time() < deadline:
            await asyncio.sleep(_LINGER_POLL)

    # ================================================================== the node's I/O

    def send(self, via: str, datagrams: list[tuple[bytes, Address]]) -> None:
        """Hand a batch of the node's datagrams to its transport."""
        self.senders[via].send_batch(datagrams)

    def schedule_flush(self) -> None:
        if self._flush_handle is None and not self.closed:
            self._flush_handle = self._loop.call_soon(self.flush)

    def flush(self) -> None:
        handle = self._flush_handle
        if handle is not None:
            self._flush_handle = None
            handle.cancel()
        self.node.flush()

    def _events(self) -> None:
        node = self.node
        while (ev := node.next_event()) is not None:
            if isinstance(ev, Room):
                self.room.set()
            elif isinstance(ev, Report):
                if isinstance(ev.error, errors.MessagesLostError):
                    log.warning("%s", ev.error)
                self._report(ev.error)

    def _on_bypass_datagrams(self, via: str, batch: list[tuple[bytes, Address]]) -> None:
        self.node.receive_datagrams(batch, via, self._loop.time())

    def _on_udp_datagrams(self, batch: list[tuple[bytes, Address]]) -> None:
        """The kernel socket's batches. A DPDK tap on a kernel interface (net_af_packet) gets
        the same frames as the kernel: what came by that interface is a copy, ignored."""
        for t in self._shadowing:
            batch = [item for item in batch if not t.shadows(item[1])]
        if batch:
            self.node.receive_datagrams(batch, "udp", self._loop.time())

    def _on_datagrams(self, batch: list[tuple[bytes, Address]]) -> None:
        self.node.receive_datagrams(batch, "udp", self._loop.time())

    @property
    def listens_multicast(self) -> bool:
        return self._mcast is not None

    def pollers(self) -> list[Transport]:
        """The transports that busy-poll after a delivery (``consumption: poll``): the
        kernel-bypass ones, whose spin polls the kernel socket too; else the kernel socket.
        (A kernel socket spinning on its own would leave a bypass datapath unread: a copy
        of a frame a tap shows it too would hold up the frame itself.)"""
        return list(self.bypass) or [self.udp]

    def _poll_kernel_once(self) -> bool:
        """One non-blocking read of the kernel socket, delivered (AF_XDP's spin polls both)."""
        try:
            item = self.udp.socket.recvfrom(65536)
        except OSError:
            return False
        self._on_udp_datagrams([item])
        return True

    def backlog_bytes(self) -> int:
        """Bytes the transports hold in user space because the kernel or a ring pushed back."""
        n = self.udp.backlog_bytes
        return n + sum(int(t.backlog_bytes) for t in self.bypass)

    async def wait_drained(self) -> None:
        for t in self.senders.values():
            await t.wait_drained()

    async def wait_for_room(self) -> None:
        """Wait while a destination's window is full or the kernel pushes back.

        A WINDOW frame opening room wakes us; without one for a while we probe the blocked
        destinations (their WINDOW frame may have been lost). A destination stalled for
        ``stall_timeout`` is not waited for: its reliable stream keeps what it misses, within
        the retransmit buffer's bounds, for when it is back.
        """
        node = self.node
        window_stalls = STORE.cell("insane_window_stalls", "udp")
        while True:
            self.flush()
            if self.backlog_bytes() > BACKLOG_LIMIT:
                await self.wait_drained()
                continue
            node.update_stalled(self._loop.time())
            blocked, streams_full = node.blocked()
            if not blocked and not streams_full:
                node.set_backpressure(False)
                return
            if self.closed:
                raise errors.ConnectionClosedError("session closed")
            window_stalls.value += 1
            self.room.clear()
            try:
                await asyncio.wait_for(self.room.wait(), _PROBE_INTERVAL)
            except TimeoutError:
                node.probes(blocked)

    # ================================================================== the one timer

    def arm(self) -> None:
        """Make the timer fire at the next deadline of the node or the control plane."""
        if self.closed:
            return
        at = self._next_tick
        node_at = self.node.get_timer()
        if node_at is not None and node_at < at:
            at = node_at
        timer = self._timer
        if timer is not None:
            if timer.when() == at:
                return
            timer.cancel()
        self._timer = self._loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.closed:
            return
        now = self._loop.time()
        if now >= self._next_tick:
            self._next_tick = now + self._tick
            self._control_tick(now)
        self.node.handle_timer(now)
        self.arm()

    def _control_tick(self, now: float) -> None:
        """The control plane's turn, every 50 ms (and the node's slow chores)."""
        self.discovery.tick(now)
        self.node.update_stalled(now)
        self._check_local_peers()
        if self.rdma is not None:
            self.rdma.tick(now)
        self.node.expire(now)
        hb = self.config.discovery.heartbeat_interval
        if now >= self._next_scan:
            self._next_scan = now + hb
            self._rediscover()
            for t in self.bypass:
                t.count_drops()
            self._count_kernel_drops()
        if now >= self._next_beacon:
            self._next_beacon = now + max(1.0, hb)
            self._beacon()
        self.pump()

    # ================================================================== the control plane

    def pump(self) -> None:
        """Send what discovery (and the RDMA set-up) wants sent and apply what it learnt."""
        disc = self.discovery
        node = self.node
        for addr, ftype, body in disc.take_outgoing():
            node.send_frame(addr, ftype, body)
        rdma = self.rdma
        for ev in disc.take_events():
            if isinstance(ev, InterestChanged):
                node.set_remote(ev.peer.peer_id, ev.peer.interest)
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
                node.set_suspect(ev.peer.peer_id, True)
            elif isinstance(ev, PeerBack):
                log.info("peer back: %s (%016x)", ev.peer.name, ev.peer.peer_id)
                node.set_suspect(ev.peer.peer_id, False)
                self._unreachable.pop(ev.peer.addr, None)
            elif isinstance(ev, RttMeasured):
                label = metrics.peer_label(ev.peer.name, ev.peer.peer_id)
                STORE.histogram(RTT, "udp", label).observe(ev.rtt)
            elif isinstance(ev, PeerDown):
                log.info("peer down (%s): %s (%016x)", ev.reason, ev.peer.name, ev.peer.peer_id)
                if rdma is not None:
                    rdma.peer_down(ev.peer)
                for t in self.bypass:
                    t.forget(ev.peer.addr)
                node.channels.forget_peer(ev.peer.peer_id)  # type: ignore[attr-defined]
                STORE.forget_histogram(
                    RTT, "udp", metrics.peer_label(ev.peer.name, ev.peer.peer_id)
                )
                node.peer_down(ev.peer)
        if rdma is not None:
            for addr, ftype, body in rdma.take_outgoing():
                node.send_frame(addr, ftype, body)
        self.progress.set()

    def _beacon(self) -> None:
        if self._mcast is None:
            return
        body = self.discovery.announce_body(reply=True)
        data = self.node._header + wire.frame(wire.ANNOUNCE, body)
        if self.node._sealer is not None:
            data = self.node._sealer.seal(data)
        for iface in self._mcast.interfaces:
            multicast.send_beacon(
                self.udp.socket, data, self._mcast.group, self._mcast.port, iface
            )

    def _rediscover(self) -> None:
        known = {p.addr for p in self.discovery.peers.values()}
        targets = set(self._static_peers)
        if self._registry is not None:
            entries = self._registry.entries()
            self._local_pids = {peer_id: pid for peer_id, (_addr, pid) in entries.items()}
            targets.update(
                a for peer_id, (a, _pid) in entries.items() if peer_id not in self.discovery.peers
            )
        for t in targets - known:
            self.discovery.announce_to(t)

    def _check_local_peers(self) -> None:
        """Drop at once a peer on this host whose process is gone (killed: no BYE came)."""
        disc = self.discovery
        for peer_id, pid in list(self._local_pids.items()):
            if peer_id in disc.peers and not process_alive(pid):
                del self._local_pids[peer_id]
                disc.remove(peer_id, f"its process ({pid}) is gone")
        if disc.has_news:
            self.pump()

    def _on_unreachable(self, addr: Address) -> None:
        """ICMP port unreachable for ``addr`` (nothing listens there any more): its peer is
        suspect at once, so it gets no new work; dropped if it stays so for a heartbeat
        interval with nothing heard from it (an ICMP message is easy to forge: one alone
        drops nobody)."""
        disc = self.discovery
        now = self._loop.time()
        first = self._unreachable.setdefault(addr, now)
        for peer in [p for p in disc.peers.values() if p.addr == addr]:
            if now - first >= self.config.discovery.heartbeat_interval and peer.last_seen < first:
                disc.remove(peer.peer_id, "its address is unreachable (ICMP port unreachable)")
            else:
                disc.suspect(peer.peer_id, "its address is unreachable (ICMP port unreachable)")
        if len(self._unreachable) > 4096:
            self._unreachable.clear()
        self.pump()

    def _count_kernel_drops(self) -> None:
        """The kernel's receive-buffer overflows on our socket, as drops (``kernel_rcvbuf``),
        so that "sent minus received" has a name."""
        total = self.udp.kernel_drops()
        if total > self._kernel_drops:
            self.node.drop("kernel_rcvbuf", total - self._kernel_drops)
        self._kernel_drops = total

    # ================================================================== RDMA connections

    def _on_rdma_setup(self, sender: int, addr: Address, body: memoryview, now: float) -> None:
        """An RDMA_SETUP frame (insane/control/rdma_links.py). Without RDMA here, an offer is
        refused with the reason, so the peer falls back at once instead of after its
        time-out."""
        peer = self.discovery.peers.get(sender)
        if peer is None:
            return  # not a peer yet: it offers again
        if self.rdma is not None:
            self.rdma.on_frame(peer, body, now)
            return
        flags, _to, remote, _reason = rdma_frames.decode(body)
        if remote is not None and not flags & rdma_frames.ANSWER:
            cap = self.capabilities.get("rdma")
            why = cap.reason if cap is not None and cap.reason else "RDMA is not available here"
            refusal = rdma_frames.encode(rdma_frames.REFUSE, sender, None, why)
            self.node.send_frame(addr, wire.RDMA_SETUP, refusal)

    def _rdma_failed(self, ev: LinkFailed) -> None:
        """RDMA to a peer is over (never made, or broke): its channels take the next transport
        the policy allows (it now says why not RDMA); what had not left goes by kernel UDP;
        what was handed to the adapter and not confirmed is reported lost."""
        node = self.node
        node.channels.forget_transport(ev.peer_id, "rdma")  # type: ignore[attr-defined]
        node.transport_failed(ev.addr, "rdma", ev.unsent)
        if ev.lost:
            name = node.peer_name(ev.peer_id)
            detail = f"handed to RDMA and not confirmed: {ev.reason}"
            node.report(errors.MessagesLostError(name, None, detail, sent=True, datagrams=ev.lost))
