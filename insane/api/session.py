"""A session: one peer on the bus, as an application uses it.

Only the public API lives here: publish, subscribe, request, flush, drain, close, and what a
session can say about itself. The data plane is the sans-IO node (protocol/node.py), the I/O
its driver (insane/driver.py), the peers and their interest the control plane
(control/discovery.py), the channels and routes `qos.channels`. A session is made and started
by :func:`insane.connect` (api/connect.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import socket
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from insane import errors
from insane.api.deadlines import Deadlines
from insane.api.message import Msg, clean_headers
from insane.api.subscription import Callback, Subscription
from insane.control.discovery import Discovery, Peer
from insane.driver import Driver
from insane.ops import metrics, metrics_http
from insane.ops.metrics import STORE
from insane.protocol import speedups
from insane.protocol.permissions import Permissions
from insane.protocol.router import LocalSub
from insane.qos import Config
from insane.qos.channels import Channel, ChannelTable
from insane.qos.engine import engine_name, node_class
from insane.qos.keys import load_identities, load_keyring
from insane.subjects import SubjectError, validate_pattern, validate_subject
from insane.transports.base import Address, TransportCapability

if TYPE_CHECKING:
    from insane.protocol.node import PeerNode

log = logging.getLogger("insane")

#: consumption: poll: keep reading the socket this long after the last datagram (seconds),
#: and wait for a request's reply this long before falling back to the event loop.
_POLL_IDLE = 1e-3
_REQUEST_SPIN = 2e-3
#: Polls in a row that find nothing before polling pauses for a second.
_POLL_MISSES = 8
DEFAULT_MAX_PAYLOAD = 64 * 1024 * 1024
INBOX_PREFIX = "_INBOX"


class Session:
    """A peer on the bus. Create with :func:`insane.connect`."""

    def __init__(self, config: Config, name: str | None = None) -> None:
        self.config = config
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.peer_id = random.getrandbits(64) or 1
        self.domain = config.domain
        self.max_payload = DEFAULT_MAX_PAYLOAD
        self.inbox_prefix = f"{INBOX_PREFIX}.{self.peer_id:016x}"
        self.metrics_port: int | None = None
        self.error_cb: Callable[[Exception], Any] | None = None
        self._loop = asyncio.get_running_loop()
        with_identities = load_identities(config)  # (a ConfigError names the file and key)
        keyring = with_identities[0] if with_identities else load_keyring(config)
        identities = with_identities[1] if with_identities else None
        self._identities = identities
        self._own_perms: Permissions | None = (
            identities.permissions[identities.own] if identities else None
        )
        disc = config.discovery
        self._discovery = Discovery(
            self.peer_id,
            name=self.name,
            transports=("udp",),
            heartbeat_interval=disc.heartbeat_interval,
            peer_timeout=disc.peer_timeout,
            suspect_hold=config.reliability.retransmit_age,
            max_peers=config.limits.max_peers,
        )
        self._channels = ChannelTable(config, {}, self._own_perms)
        self.engine = engine_name()  # (a ConfigError for an engine there is not)
        self._node: PeerNode = node_class(self.engine)(
            self.peer_id,
            self.domain,
            control=self._discovery,
            channels=self._channels,
            streams=config.reliability,
            stall_timeout=config.reliability.stall_timeout,
            clock=self._loop.time,
            max_payload=self.max_payload,
            keyring=keyring,
            encrypt=config.security.mode == "encrypt",
            identities=identities,
        )
        self._publish_fast = self._node.publish_fast  # (bound once: the throughput path)
        native_publish = self._node.publisher(self.publish)
        if native_publish is not None:  # the engine's: the common path with no Python frame
            self.publish = native_publish  # type: ignore[method-assign]
        self._driver = Driver(config, self._node, self._discovery, self._report, self._take_woken)
        self._owner = _Owner(self)
        self._subs: dict[int, Subscription] = {}
        self._sids = itertools.count(1)
        self._requests: dict[str, asyncio.Future[Msg | None]] = {}
        self._deadlines = Deadlines(self._loop)
        self._tokens = itertools.count(1)
        # consumption: poll (see _poll and UdpTransport.spin)
        self._poll_subs: set[int] = set()
        self._poll_misses = 0
        self._poll_paused_until = 0.0
        self._info_labels = (self.name, f"{self.peer_id:016x}")
        self._closed = False
        self._draining = False
        self._woken = False  # a delivery woke a task waiting in next_msg (Subscription._wake)

    # ================================================================== lifecycle

    async def _start(self) -> None:
        driver = self._driver
        await driver.start()
        # The request inbox is part of our interest from the first announcement on.
        self._node.add_local(LocalSub(0, f"{self.inbox_prefix}.*", "", self._on_reply))
        self._discovery.set_interest(self._node.router.local_interest(), self._loop.time())
        addr = driver.udp.local_address
        log.info("session %s (%016x) on udp %s:%d", self.name, self.peer_id, *addr)
        await driver.start_discovery()
        self._start_metrics()
        expected = driver.announce_all()
        driver.start_timer()
        await self._settle(expected)

    def _start_metrics(self) -> None:
        metrics.init_transport("udp")
        for name, cap in self._driver.capabilities.items():
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
        if self._driver.listens_multicast:
            # Multicast answers come from peers we cannot count in advance: give them the window.
            await asyncio.sleep(settle)

    async def _wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = self._loop.time() + timeout
        progress = self._driver.progress
        while not predicate():
            remaining = deadline - self._loop.time()
            if remaining <= 0 or self._closed:
                return predicate()
            progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progress.wait(), remaining)
        return True

    async def close(self) -> None:
        """Leave the bus: say goodbye to peers, stop subscriptions, release sockets."""
        if self._closed:
            return
        self._closed = True
        await self._driver.close()
        for fut in self._requests.values():
            if not fut.done():
                fut.set_exception(errors.ConnectionClosedError("session closed"))
        self._deadlines.close()
        for sub in list(self._subs.values()):
            sub._finish()
            await sub._stop_worker()
        self._subs.clear()
        STORE.remove_gauge_source("insane_peers_alive", self._peer_count)
        STORE.remove_gauge_source("insane_peers_suspect", self._suspect_count)
        STORE.remove_gauge_source("insane_sessions", self._open_count)
        STORE.release("insane_session_info", self._info_labels)
        m = self.config.metrics
        if self.metrics_port is not None and m.targets_dir is not None:
            metrics_http.withdraw_target(self.config.file_path(m.targets_dir), self.name)

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
        if self._node.backpressure:
            await self._publish_under_pressure(subject, payload, reply, headers)
        elif reply or headers is not None or not self._publish_fast(subject, payload):
            self._publish_checked(subject, payload, reply, headers)

    async def _publish_under_pressure(
        self, subject: str, payload: bytes, reply: str | None, headers: dict[str, str] | None
    ) -> None:
        overflow = self._channels.get(subject).overflow
        if overflow == "block":
            await self._driver.wait_for_room()
            self._publish_checked(subject, payload, reply, headers)
            return
        node = self._node
        self._driver.flush()  # (brings the picture of who is full up to date)
        if overflow == "error" and node.backpressure:
            raise errors.OutboundBufferLimitError(
                f"a receiver's window is full: {subject!r} not published"
            )
        node.skip_full(True)  # drop: leave it out where there is no room
        try:
            self._publish_checked(subject, payload, reply, headers)
        finally:
            node.skip_full(False)

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
        self._node.publish(subject, data, reply or "", clean_headers(headers))

    async def flush(self, timeout: float = 10.0) -> None:
        """Hand everything queued to the network and make sure every live peer knows our
        current subscriptions."""
        if self._closed:
            raise errors.ConnectionClosedError("session closed")
        self._driver.flush()
        try:
            await asyncio.wait_for(self._driver.wait_drained(), timeout)
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
        sub = Subscription(self, self._owner, sid, subject, queue or "", cb, **kw)
        self._subs[sid] = sub
        if self.config.qos_for(subject)[1].consumption == "poll":
            self._poll_subs.add(sid)
            for t in self._driver.pollers():
                t.poll_idle = _POLL_IDLE
        self._node.add_local(
            LocalSub(sid, subject, queue or "", sub._deliver, sub._deliver_plain)
        )
        v = self._discovery.set_interest(self._node.router.local_interest(), self._loop.time())
        self._driver.pump()
        await self._wait_for(
            lambda: not self._discovery.unacked_peers(v), self.config.discovery.settle * 4
        )
        return sub

    def _remove_subscription(self, sub: Subscription) -> None:
        if self._subs.pop(sub.sid, None) is None:
            return
        self._poll_subs.discard(sub.sid)
        if not self._poll_subs:
            for t in self._driver.pollers():
                t.poll_idle = 0.0
        self._node.remove_local(sub.sid)
        if not self._closed:
            self._discovery.set_interest(self._node.router.local_interest(), self._loop.time())
            self._driver.pump()

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
        node = self._node
        # (No fast path while a peer is suspect: a request goes to no suspect peer.)
        ch: Channel | None = node.fast_channel(subject)
        if ch is None:
            self._channels.get(subject)
            if not node.has_responders(subject):
                raise errors.NoRespondersError(f"no responders on {subject!r}")
        token = str(next(self._tokens))
        reply = f"{self.inbox_prefix}.{token}"
        fut: asyncio.Future[Msg | None] = self._loop.create_future()
        self._requests[token] = fut
        self._deadlines.add(timeout, fut)  # resolves fut with None when the time is up
        try:
            node.flush_due = True  # flushed just below: no need to schedule a flush
            try:
                if ch is None or headers is not None or not node.publish_request_fast(
                    subject, reply.encode(), data
                ):
                    node.publish(subject, data, reply, clean_headers(headers))
            finally:
                node.flush_due = False
            self._driver.flush()  # about to wait: the request leaves now
            ch = ch or self._channels.get(subject)
            spinner = self._driver.spinner
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

    def _poll(self, ch: Channel) -> bool:
        """Whether to busy-poll for this channel's answers: its QoS says ``consumption: poll``
        and polling has been paying off.  Polling only pays when the peer runs on another CPU;
        when eight polls in a row come back empty (the peer shares our CPU and cannot run while
        we poll), polling pauses for a second."""
        return ch.poll and self._loop.time() >= self._poll_paused_until

    def new_inbox(self) -> str:
        return f"{self.inbox_prefix}.x{next(self._tokens)}"

    def _on_reply(
        self, subject: str, data: bytes, reply: str, headers: dict[str, str] | None, sid: int
    ) -> None:
        fut = self._requests.get(subject.rpartition(".")[2])
        if fut is not None and not fut.done():
            fut.set_result(Msg(subject, data, reply, headers, sid, self))
            self._woken = True  # a poll-mode spin stops: the requester must run

    def _take_woken(self) -> bool:
        woken, self._woken = self._woken, False
        return woken

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
        return self._driver.udp.local_address

    @property
    def capabilities(self) -> dict[str, TransportCapability]:
        return dict(self._driver.capabilities)

    def has_subscribers(self, subject: str) -> bool:
        """Whether a subscription known to this session (here, or a peer's interest) matches
        ``subject``: a publish now would reach someone."""
        return self._node.has_subscribers(subject)

    def route_for(self, subject: str, peer: Peer | None = None) -> Any:
        """The policy's route for ``subject`` toward ``peer`` (or a peer like us)."""
        return self._channels.route_for(subject, peer)


class _Owner:
    """What a subscription asks of its session (`insane.api.subscription.Owner`), kept out of
    the session's public API."""

    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def deadlines(self) -> Deadlines:
        return self._session._deadlines

    def callback_error(self, sub: Subscription, exc: Exception) -> None:
        log.error("insane: callback of %r raised %r", sub, exc)
        self._session._report(exc)

    def remove_subscription(self, sub: Subscription) -> None:
        self._session._remove_subscription(sub)

    def slow_consumer(self, sub: Subscription, msg: Msg) -> None:
        self._session._node.drop("slow_consumer")
        self._session._report(
            errors.SlowConsumerError(subject=msg.subject, reply=msg.reply, sid=sub.sid, sub=sub)
        )

    def wake(self) -> None:
        self._session._woken = True

    def flush_now(self) -> None:
        self._session._driver.flush()
