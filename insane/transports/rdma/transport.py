"""RDMA transport: datagrams as SEND/RECV messages on one reliable connection (an RC queue
pair) per peer, through pyverbs (insane/transports/rdma/verbs.py).

The wire is RDMA's own: the session's datagrams, whole, each in one SEND, behind a 4-byte
header (``returned:u16 flags:u8 0:u8``, see docs/wire-format.md). The network adapter
retransmits and orders on a reliable connection, so reliable channels routed here need no
sequence numbers of ours; large messages are fragmented by the protocol layer into datagrams
like on every transport.

- Receive buffers: each connection has its own registered region of ``recv_depth`` slots,
  all posted before the connection is made and posted again as soon as a message has been
  copied out. Their number is the peer's first credit (transports/rdma/credits.py); credits come
  back in the header of every message, or in an update of their own.
- Send buffers: one registered region of ``send_depth`` slots for every connection; a slot is
  free again when its send completes. What cannot go yet (no credit, no free slot, or the
  connection not made yet) waits in the connection's queue, counted in ``backlog_bytes`` so
  that publishers feel the pressure.
- Completions: one completion queue. ``consumption: low`` sleeps on its completion channel
  (the event loop watches its file descriptor); ``poll`` also busy-polls it, with the kernel
  socket, after a delivery, as the other kernel-bypass transports do.
- Connections are made and broken by the session's RdmaLinks (insane/control/rdma_links.py), which
  exchanges the queue pairs' numbers over the control plane: `prepare`, `connect`, `drop`.
  A failed completion breaks its connection: `on_failure` says so, and what had not been
  handed to the adapter is given back for the session to send another way.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import struct
from collections.abc import Callable, Sequence

from insane.ops.metrics import STORE
from insane.transports.base import (
    Address,
    Datagram,
    ReceiveCallback,
    Transport,
    spin_datapath,
)
from insane.transports.rdma import verbs as rdma_verbs
from insane.transports.rdma.buffers import SlotPool
from insane.transports.rdma.credits import Credits
from insane.transports.rdma.endpoint import MAX_BUFFER, Endpoint
from insane.transports.rdma.verbs import SEND_FLAG, Device, QueuePair, Region

log = logging.getLogger("insane.rdma")

HEADER = struct.Struct("!HBB")  # credits returned, flags, reserved
HEADER_SIZE = HEADER.size
DATA = 0x01
#: A message with no data: "my side is connected" (see `peer_ready`).
HELLO = 0x02
#: The largest datagram the transport accepts (the session's limit is the smallest of its
#: transports', so this never lowers it); receive buffers are sized to the session's limit.
MAX_DATAGRAM = 65536 - HEADER_SIZE
_POLL_BURST = 64
#: Connections one transport holds at most: the completion queue is sized for them (a full
#: completion queue breaks every connection on it); beyond, peers are refused and use UDP.
MAX_CONNECTIONS = 64
#: Poll mode returns to the event loop at least this often (seconds).
SPIN_LIMIT = 0.005

Opener = Callable[..., Device]


class _Connection:
    """One peer's queue pair, its receive buffers, credits and waiting datagrams."""

    __slots__ = ("addr", "credits", "data_in_flight", "failed", "hello_due", "in_flight",
                 "pending", "pending_bytes", "psn", "qp", "ready", "recv")

    def __init__(self, addr: Address, qp: QueuePair, recv: Region) -> None:
        self.addr = addr
        self.qp = qp
        self.recv = recv
        self.psn = random.getrandbits(24)
        self.credits: Credits | None = None  # set when connected
        self.pending: collections.deque[bytes] = collections.deque()
        self.pending_bytes = 0
        self.in_flight = 0  # sends posted, not completed
        self.data_in_flight = 0  # of which datagrams (the rest: updates and hellos)
        #: The peer's queue pair is known to be connected: it answered, or a message came.
        self.ready = False
        #: Our first message to the peer has not left yet (a datagram or a HELLO).
        self.hello_due = False
        self.failed = ""


class RdmaTransport(Transport):
    name = "rdma"

    def __init__(
        self,
        address: Address,
        *,
        fallback: Transport,
        device: str | None = None,
        port: int = 1,
        gid_index: int | None = None,
        recv_depth: int = 64,
        send_depth: int = 256,
        opener: Opener | None = None,
    ) -> None:
        self._address = address
        self._fallback = fallback
        self._device_name = device
        self._port = port
        self._gid_index = gid_index
        self.recv_depth = recv_depth
        self.send_depth = send_depth
        #: Opens the device port (default: rdma_verbs.open_device, looked up at start).
        self._opener = opener
        self._dev: Device | None = None
        self._send_region: Region | None = None
        self._send_pool: SlotPool | None = None
        self._slot_size = MAX_DATAGRAM + HEADER_SIZE
        self._conns: dict[Address, _Connection] = {}
        self._by_qpn: dict[int, _Connection] = {}
        self._starved: set[_Connection] = set()  # waiting for a free send slot
        self._carries_data: list[bool] = []  # per send slot: its send is a datagram
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_receive: ReceiveCallback | None = None
        self._spinning = False
        self._open = False
        #: Set by RdmaLinks: a connection broke (address, why).
        self.on_failure: Callable[[Address, str], None] | None = None
        #: ``consumption: poll``: after a delivery keep polling this long (seconds; 0: off).
        self.poll_idle = 0.0
        #: Set by the session (see UdpTransport.spin_until and BypassTransport.kernel_poll).
        self.spin_until: Callable[[], bool] | None = None
        self.kernel_poll: Callable[[], bool] | None = None
        self._drops = {
            reason: STORE.cell("insane_dropped", "rdma", reason)
            for reason in ("truncated", "rdma_error")
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self, on_receive: ReceiveCallback) -> None:
        """Open the device port and its completion queue. Raises OSError saying why not."""
        cq_depth = self.send_depth + MAX_CONNECTIONS * self.recv_depth
        prefer = self._address[0] if self._address[0] != "0.0.0.0" else None
        try:
            opener: Opener = self._opener or rdma_verbs.open_device
            self._dev = opener(self._device_name, self._port, self._gid_index, prefer, cq_depth)
        except OSError:
            raise
        except Exception as exc:  # pyverbs raises its own errors
            raise OSError(f"cannot open the RDMA device: {exc}") from None
        self._loop = asyncio.get_running_loop()
        self._on_receive = on_receive
        self._loop.add_reader(self._dev.event_fd, self._on_event)
        self._open = True
        log.info("rdma: %s", rdma_verbs.describe(self._dev))

    def set_datagram_limit(self, largest: int) -> None:
        """The largest datagram the session will send: every buffer holds one (and the header).
        Called once, before the first connection."""
        if self._send_region is not None:
            return
        self._slot_size = min(largest, MAX_DATAGRAM) + HEADER_SIZE
        self._ensure_send_region()

    def _ensure_send_region(self) -> tuple[Region, SlotPool]:
        if self._send_region is None or self._send_pool is None:
            assert self._dev is not None
            self._send_region = self._dev.region(self.send_depth, self._slot_size)
            self._send_pool = SlotPool(self.send_depth, self._slot_size)
            self._carries_data = [False] * self.send_depth
        return self._send_region, self._send_pool

    async def close(self) -> None:
        if self._open:
            try:
                await asyncio.wait_for(self.wait_drained(), 1.0)
            except TimeoutError:
                pass
        self._open = False
        for addr in list(self._conns):
            self.drop(addr)
        if self._dev is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._dev.event_fd)
            self._dev.close()
            self._dev = None
        self._send_region = None
        self._send_pool = None

    @property
    def local_address(self) -> Address:
        return self._address

    @property
    def max_datagram(self) -> int:
        return MAX_DATAGRAM

    # ------------------------------------------------------------------ connections

    def prepare(self, addr: Address) -> Endpoint:
        """A queue pair for the peer at ``addr`` (in INIT, its receive buffers posted): our
        side of the connection, for the set-up exchange. Raises OSError."""
        if not self._open or self._dev is None:
            raise OSError("the RDMA transport is closed")
        self.drop(addr)  # an earlier peer at this address
        if len(self._conns) >= MAX_CONNECTIONS:
            raise OSError(
                f"already {len(self._conns)} RDMA connections, as many as the completion "
                "queue is sized for"
            )
        self._ensure_send_region()
        dev = self._dev
        try:
            qp = dev.queue_pair(self.send_depth, self.recv_depth)
            recv = dev.region(self.recv_depth, self._slot_size)
            for slot in range(self.recv_depth):
                qp.post_recv(recv, slot, slot)
        except Exception as exc:
            raise OSError(f"cannot make a queue pair: {exc}") from None
        c = self._conns[addr] = _Connection(addr, qp, recv)
        self._by_qpn[qp.qpn] = c
        return Endpoint(
            qpn=qp.qpn,
            psn=c.psn,
            lid=dev.lid,
            gid=dev.gid,
            mtu=dev.mtu,
            credits=self.recv_depth,
            buffer=self._slot_size,
        )

    def connect(self, addr: Address, remote: Endpoint) -> None:
        """Move the queue pair for ``addr`` to ready-to-send toward ``remote``. Datagrams wait
        until the peer's side is known to be connected too (`peer_ready`, or a first message
        from it). Raises OSError (ValueError when the peer cannot take our datagrams)."""
        c = self._conns.get(addr)
        if c is None or self._dev is None:
            raise OSError(f"no queue pair prepared for {addr[0]}:{addr[1]}")
        if remote.buffer < self._slot_size:
            raise ValueError(
                f"the peer's RDMA receive buffers hold {remote.buffer} bytes, ours "
                f"{self._slot_size}: its transports.udp.max_datagram (or MTU) is smaller"
            )
        try:
            c.qp.connect(remote, c.psn, min(self._dev.mtu, remote.mtu))
        except Exception as exc:
            raise OSError(f"cannot connect the queue pair: {exc}") from None
        c.credits = Credits(remote.credits, self.recv_depth)

    def peer_ready(self, addr: Address) -> None:
        """The peer answered our offer, so its queue pair is connected: send what waits, or
        a HELLO, so that the peer (which connected on our offer and waits for a first
        message before it sends) knows ours is connected too."""
        c = self._conns.get(addr)
        if c is None or c.credits is None or c.ready or c.failed:
            return
        c.ready = True
        c.hello_due = True
        self._pump(c)

    def connected(self, addr: Address) -> bool:
        c = self._conns.get(addr)
        return c is not None and c.credits is not None and not c.failed

    def drop(self, addr: Address) -> tuple[list[bytes], int]:
        """Close the connection to ``addr``: (the datagrams never handed to the adapter, how
        many were handed over but not confirmed)."""
        c = self._conns.pop(addr, None)
        if c is None:
            return [], 0
        self._by_qpn.pop(c.qp.qpn, None)
        self._starved.discard(c)
        unsent = list(c.pending)
        c.pending.clear()
        c.pending_bytes = 0
        lost = c.data_in_flight
        if self._send_pool is not None:
            self._send_pool.release_all(c)
        c.in_flight = c.data_in_flight = 0
        c.qp.close()
        c.recv.close()
        return unsent, lost

    def forget(self, addr: Address) -> None:
        """(The session's hook when a peer leaves: RdmaLinks drops the connection.)"""

    def _fail(self, c: _Connection, reason: str) -> None:
        if c.failed:
            return
        c.failed = reason
        log.warning("rdma: connection to %s:%d failed: %s", *c.addr, reason)
        if self.on_failure is not None:
            self.on_failure(c.addr, reason)

    # ------------------------------------------------------------------ send

    def send_batch(self, datagrams: Sequence[Datagram]) -> int:
        if not self._open:
            return 0
        kernel: list[Datagram] = []
        touched: list[_Connection] = []
        conns = self._conns
        for data, addr in datagrams:
            c = conns.get(addr)
            if c is None or c.failed:
                kernel.append((data, addr))  # no connection (any more): the kernel's way
                continue
            payload = data if type(data) is bytes else bytes(data)
            c.pending.append(payload)
            c.pending_bytes += len(payload)
            if not touched or touched[-1] is not c:
                touched.append(c)
        if kernel:
            self._fallback.send_batch(kernel)
        for c in touched:
            self._pump(c)
        return len(datagrams)

    def _pump(self, c: _Connection) -> None:
        """Post what credits and send slots allow, then a message with no data if one is due:
        a HELLO when no datagram went first, or an update of credits. Without a free send
        slot the connection waits (``_starved``) for the next send completion."""
        credits = c.credits
        if credits is None or not c.ready or c.failed:
            return
        region, pool = self._ensure_send_region()
        pending = c.pending
        while pending and credits.can_send:
            slot = pool.take(c)
            if slot is None:
                self._starved.add(c)
                return
            data = pending.popleft()
            c.pending_bytes -= len(data)
            n = region.write(slot, (HEADER.pack(credits.take(), DATA, 0), data))
            error = self._post(c, region, pool, slot, n, data=True)
            if error:
                pending.appendleft(data)  # not handed over: it goes another way
                c.pending_bytes += len(data)
                self._fail(c, error)
                return
            c.hello_due = False
        hello = c.hello_due and credits.can_send
        if not hello and not credits.update_due:
            return
        slot = pool.take(c)
        if slot is None:
            self._starved.add(c)
            return
        returned = credits.take() if hello else credits.take_update()
        n = region.write(slot, (HEADER.pack(returned, HELLO if hello else 0, 0),))
        error = self._post(c, region, pool, slot, n)
        if error:
            self._fail(c, error)
            return
        c.hello_due = False

    def _post(
        self, c: _Connection, region: Region, pool: SlotPool, slot: int, n: int, data: bool = False
    ) -> str:
        """Post a send of the slot's ``n`` bytes; what went wrong, or ""."""
        try:
            c.qp.post_send(region, slot, n, SEND_FLAG | pool.wr_id(slot))
        except Exception as exc:
            pool.give(slot)
            return f"post_send failed: {exc}"
        c.in_flight += 1
        c.data_in_flight += data
        self._carries_data[slot] = data
        return ""

    @property
    def backlog_bytes(self) -> int:
        return sum(c.pending_bytes for c in self._conns.values())

    async def wait_drained(self) -> None:
        """Return once every connected peer's datagrams have been sent and confirmed."""
        while self._open and any(
            (c.pending and c.ready) or c.in_flight
            for c in self._conns.values()
            if not c.failed
        ):
            await asyncio.sleep(0.0005)

    # ------------------------------------------------------------------ receive

    def _on_event(self) -> None:
        dev = self._dev
        if dev is None or not dev.take_event():
            return
        self._deliver_available()

    def _deliver_available(self) -> None:
        """Everything the completion queue holds; then, in poll mode, spin for more."""
        got = False
        while self._poll_once():
            got = True
        until = self.spin_until
        if got and self.poll_idle and not self._spinning and not (until and until()):
            self.spin(until, self.poll_idle, SPIN_LIMIT)

    def _poll_once(self) -> bool:
        """Handle one burst of completions; True if there were any."""
        dev = self._dev
        if dev is None or not self._open:
            return False
        completions = dev.poll(_POLL_BURST)
        if not completions:
            return False
        pool = self._send_pool
        batch: list[tuple[bytes, Address]] = []
        touched: set[_Connection] = set()
        by_qpn = self._by_qpn
        for wr_id, ok, status, length, qpn in completions:
            if wr_id & SEND_FLAG:
                owner = pool.release(wr_id & ~SEND_FLAG) if pool is not None else None
                if not isinstance(owner, _Connection):
                    continue  # stale: its connection was dropped
                owner.in_flight -= 1
                owner.data_in_flight -= self._carries_data[SlotPool.slot_of(wr_id)]
                if ok:
                    touched.add(owner)
                else:
                    self._drops["rdma_error"].value += 1
                    self._fail(owner, f"send failed: {status}")
                continue
            c = by_qpn.get(qpn)
            if c is None or c.failed:
                continue  # a queue pair closed since, or flushed after its failure
            if not ok:
                self._drops["rdma_error"].value += 1
                self._fail(c, f"receive failed: {status}")
                continue
            data = c.recv.read(wr_id, length) if length else b""
            try:
                c.qp.post_recv(c.recv, wr_id, wr_id)
            except Exception as exc:
                self._fail(c, f"post_recv failed: {exc}")
                continue
            credits = c.credits
            if credits is None:  # (cannot happen: our side moves to RTR only when connected)
                continue
            credits.on_reposted()
            if length < HEADER_SIZE:
                self._drops["truncated"].value += 1
                continue
            returned, flags, _ = HEADER.unpack_from(data)
            credits.on_receive(returned)
            c.ready = True  # it sent: its queue pair is connected
            touched.add(c)
            if flags & DATA:
                batch.append((data[HEADER_SIZE:], c.addr))
        starved = self._starved
        if starved and pool is not None and pool.free:
            touched |= starved
            starved.clear()
        for c in touched:
            self._pump(c)
        if batch and self._on_receive is not None:
            self._on_receive(batch)
        return True

    @property
    def spinning(self) -> bool:
        return self._spinning

    def spin(self, until: Callable[[], bool] | None, idle: float, limit: float) -> bool:
        """Busy-poll the completion queue and the kernel socket (``consumption: poll``)."""
        if not self._open or self._spinning:
            return False
        self._spinning = True
        try:
            return spin_datapath(self._poll_once, self.kernel_poll, until, idle, limit)
        finally:
            self._spinning = False

    def count_drops(self) -> None:
        """(Drops are counted as they happen.)"""


assert MAX_DATAGRAM + HEADER_SIZE <= MAX_BUFFER
