"""A simulated RDMA fabric for the tests that have no RDMA hardware (none of our machines has
any: their kernel has no RDMA subsystem).

It implements what insane/transports/rdma/transport.py asks of a device (the `Device`,
`QueuePair` and `Region` protocols of insane/transports/rdma/verbs.py) with the semantics of a
reliable connection (RC) that the transport relies on, and it records every way the transport could
misuse one, so that tests can assert it never does:

- a SEND lands, in order, in the oldest receive buffer the peer posted, and completes on both
  sides; a message longer than that buffer is a local length error on the receiver and breaks
  the connection, as on hardware;
- a SEND that finds no receive buffer posted waits, as the adapter's receiver-not-ready
  retries would (``Fabric.rnr`` counts them: credits should keep it at 0);
- a SEND toward a queue pair that is not connected yet waits for it, as the adapter's
  retransmissions would (``Fabric.not_ready``: the readiness rule should keep it at 0);
- `Fabric.break_connection` puts both queue pairs in the error state: posted receives flush
  with errors, and sends not yet delivered fail, as they do when a link dies.

Completions are delivered through an eventfd that the event loop watches, armed and taken like
a completion channel. This is not the pyverbs code path: the hardware tests
(tests/test_rdma_hardware.py) run that where a device exists.
"""

from __future__ import annotations

import collections
import ipaddress
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from insane.control.rdma_setup import Endpoint
from insane.transports.rdma.verbs import Completion


@dataclass
class Fabric:
    """The wire between simulated ports."""

    qps: dict[tuple[bytes, int], SimQueuePair] = field(default_factory=dict)
    devices: list[SimDevice] = field(default_factory=list)
    rnr: int = 0
    not_ready: int = 0
    messages: int = 0
    bytes: int = 0
    _qpns: Any = field(default_factory=lambda: itertools.count(0x100))
    _hosts: Any = field(default_factory=lambda: itertools.count(1))
    #: Make the next queue_pair() calls fail with this message (a device out of resources).
    refuse_queue_pairs: str = ""

    def opener(self, *args: Any) -> SimDevice:
        """Stands in for rdma_verbs.open_device: a new port on this fabric."""
        dev = SimDevice(self, next(self._hosts))
        self.devices.append(dev)
        return dev

    def break_connection(self, qp: SimQueuePair) -> None:
        qp.error("retry exceeded error")
        if qp.remote is not None:
            qp.remote.error("retry exceeded error")


class SimRegion:
    def __init__(self, slots: int, slot_size: int) -> None:
        self.slots = slots
        self.slot_size = slot_size
        self.buf = bytearray(slots * slot_size)

    def write(self, slot: int, parts: Sequence[bytes]) -> int:
        at = start = slot * self.slot_size
        for p in parts:
            self.buf[at : at + len(p)] = p
            at += len(p)
        if at - start > self.slot_size:
            raise AssertionError("wrote past the end of a slot")
        return at - start

    def read(self, slot: int, length: int) -> bytes:
        at = slot * self.slot_size
        return bytes(self.buf[at : at + length])

    def close(self) -> None:
        pass


class SimQueuePair:
    def __init__(self, dev: SimDevice, send_depth: int, recv_depth: int) -> None:
        self.dev = dev
        self.qpn = next(dev.fabric._qpns)
        self.state = "INIT"
        self.send_depth = send_depth
        self.recv_depth = recv_depth
        self.remote: SimQueuePair | None = None
        self.recvs: collections.deque[tuple[SimRegion, int, int]] = collections.deque()
        #: sends that could not land yet: (data, wr_id)
        self.waiting: collections.deque[tuple[bytes, int]] = collections.deque()
        self.sends_out = 0  # posted, not completed
        dev.fabric.qps[(dev.gid, self.qpn)] = self

    def connect(self, remote: Endpoint, psn: int, mtu: int) -> None:
        assert self.state == "INIT", f"connect in state {self.state}"
        assert mtu in (256, 512, 1024, 2048, 4096)
        peer = self.dev.fabric.qps.get((remote.gid, remote.qpn))
        assert peer is not None, "connect to a queue pair that does not exist"
        self.remote = peer
        self.state = "RTS"
        self._retry()
        if peer.remote is self:
            peer._retry()  # its sends waited for us

    def post_recv(self, region: SimRegion, slot: int, wr_id: int) -> None:
        if self.state == "ERR":
            self.dev.complete(Completion(wr_id, False, "Work Request Flushed Error", 0, self.qpn))
            return
        if len(self.recvs) >= self.recv_depth:
            raise AssertionError("more receives posted than the queue pair holds")
        self.recvs.append((region, slot, wr_id))
        if self.remote is not None:
            self.remote._retry()

    def post_send(self, region: SimRegion, slot: int, length: int, wr_id: int) -> None:
        if self.state != "RTS":
            raise OSError(f"post_send in state {self.state}")
        if self.sends_out >= self.send_depth:
            raise AssertionError("more sends posted than the queue pair holds")
        self.sends_out += 1
        self.waiting.append((region.read(slot, length), wr_id))
        self._retry()

    def _retry(self) -> None:
        """Land what waits, in order, as far as the peer allows."""
        fabric = self.dev.fabric
        while self.waiting and self.state == "RTS":
            peer = self.remote
            assert peer is not None
            if peer.state == "INIT":
                fabric.not_ready += 1  # the adapter would resend after its ACK timeout
                return
            if peer.state != "RTS":  # gone or broken: the adapter's retries run out
                self.error("retry exceeded error")
                return
            if not peer.recvs:
                fabric.rnr += 1
                return
            data, wr_id = self.waiting.popleft()
            region, slot, recv_id = peer.recvs.popleft()
            if len(data) > region.slot_size:
                peer.dev.complete(Completion(recv_id, False, "local length error", 0, peer.qpn))
                peer.error("local length error")
                self.sends_out -= 1
                why = "remote invalid request error"
                self.dev.complete(Completion(wr_id, False, why, 0, self.qpn))
                self.error(why)
                return
            at = slot * region.slot_size
            region.buf[at : at + len(data)] = data
            fabric.messages += 1
            fabric.bytes += len(data)
            peer.dev.complete(Completion(recv_id, True, "", len(data), peer.qpn))
            self.sends_out -= 1
            self.dev.complete(Completion(wr_id, True, "", 0, self.qpn))

    def error(self, why: str) -> None:
        if self.state == "ERR":
            return
        self.state = "ERR"
        for _region, _slot, wr_id in self.recvs:
            self.dev.complete(Completion(wr_id, False, "Work Request Flushed Error", 0, self.qpn))
        self.recvs.clear()
        for _data, wr_id in self.waiting:
            self.dev.complete(Completion(wr_id, False, why, 0, self.qpn))
        self.sends_out = 0
        self.waiting.clear()

    def close(self) -> None:
        self.state = "RESET"
        self.dev.fabric.qps.pop((self.dev.gid, self.qpn), None)
        self.recvs.clear()
        self.waiting.clear()


class SimDevice:
    link_layer = "ethernet"
    port = 1
    lid = 0
    mtu = 4096
    gid_index = 3

    def __init__(self, fabric: Fabric, host: int) -> None:
        self.fabric = fabric
        self.name = f"sim{host}"
        self.gid = ipaddress.IPv6Address(f"::ffff:10.77.0.{host}").packed
        self.gid_reason = f"RoCE v2 GID 3 (10.77.0.{host})"
        self.event_fd = os.eventfd(0, os.EFD_NONBLOCK)
        self.completions: collections.deque[Completion] = collections.deque()
        self.armed = True
        self.closed = False

    def region(self, slots: int, slot_size: int) -> SimRegion:
        return SimRegion(slots, slot_size)

    def queue_pair(self, send_depth: int, recv_depth: int) -> SimQueuePair:
        if self.fabric.refuse_queue_pairs:
            raise OSError(self.fabric.refuse_queue_pairs)
        return SimQueuePair(self, send_depth, recv_depth)

    def complete(self, c: Completion) -> None:
        if self.closed:
            return
        self.completions.append(c)
        if self.armed:
            self.armed = False
            os.eventfd_write(self.event_fd, 1)

    def poll(self, n: int) -> list[Completion]:
        out = []
        while self.completions and len(out) < n:
            out.append(self.completions.popleft())
        return out

    def take_event(self) -> bool:
        try:
            os.eventfd_read(self.event_fd)
        except BlockingIOError:
            return False
        self.armed = True  # (the transport then polls what is there)
        return True

    def close(self) -> None:
        self.closed = True
        for qp in self.queue_pairs():
            qp.close()
        os.close(self.event_fd)

    def queue_pairs(self) -> list[SimQueuePair]:
        return [qp for qp in self.fabric.qps.values() if qp.dev is self]
