"""The batch contract every transport implements, and the capability descriptor the policy reads.

A transport moves batches of datagrams and nothing else: no framing, no reliability, no
matching. The session hands it ``(payload, address)`` pairs and receives the same back through
the ``on_receive`` callback it supplied at start.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

TransportName = Literal["rdma", "dpdk", "xdp", "udp"]
#: Every technology the policy knows, best-first for a plain `fast` channel.
ALL_TRANSPORTS: tuple[TransportName, ...] = ("rdma", "dpdk", "xdp", "udp")

#: XDP, DPDK and kernel UDP put the same Ethernet/IPv4/UDP frames on the wire; RDMA has its own.
WIRE_OF: dict[str, str] = {"rdma": "rdma", "dpdk": "udp", "xdp": "udp", "udp": "udp"}

Address = tuple[str, int]
Datagram = tuple[bytes | bytearray | memoryview, Address]
ReceiveCallback = Callable[[list[tuple[bytes, Address]]], None]


@dataclass(frozen=True)
class TransportCapability:
    """What one technology can do here, as the policy engine and `insane doctor` see it."""

    name: TransportName
    available: bool
    reason: str = ""
    kernel_bypass: bool = False
    #: The technology itself retransmits and orders (RDMA RC); the protocol layer can lean on it.
    hardware_reliable: bool = False
    #: Consumption modes it supports: busy polling (`poll`) and/or wake-ups (`low`).
    consumption: frozenset[str] = frozenset({"low"})
    #: Runtime health: False after repeated send/receive errors, so the policy routes around it.
    healthy: bool = True
    details: dict[str, object] = field(default_factory=dict)

    @property
    def wire(self) -> str:
        return WIRE_OF[self.name]


class Transport(abc.ABC):
    """One datapath: ``start`` (init), ``send_batch`` (tx), ``on_receive`` (rx), ``close``.

    Besides those, everything the driver (insane/driver.py) asks of a transport is declared
    here, with the default for a datapath that has no such thing: a backlog to drain, drop
    counters to read, per-destination state to forget, a busy-poll loop.
    """

    name: TransportName
    #: ``consumption: poll``: after a delivery keep polling this long (seconds; 0: off).
    poll_idle: float = 0.0
    #: Set by the driver: a delivery woke a waiting task (busy polling may stop).
    spin_until: Callable[[], bool] | None = None
    #: Set by the driver: one non-blocking read of the kernel socket, delivered; True if
    #: something came (a kernel-bypass ``spin`` polls it too: replies may come either way).
    kernel_poll: Callable[[], bool] | None = None

    @abc.abstractmethod
    async def start(self, on_receive: ReceiveCallback) -> None:
        """Open the datapath and begin delivering received batches to ``on_receive``."""

    @abc.abstractmethod
    def send_batch(self, datagrams: Sequence[Datagram]) -> int:
        """Queue datagrams for transmission without blocking; return how many were accepted."""

    @property
    @abc.abstractmethod
    def local_address(self) -> Address:
        """The address peers reach this transport at."""

    @property
    @abc.abstractmethod
    def max_datagram(self) -> int:
        """The largest payload one datagram may carry here (the protocol fragments above it)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop the datapath and release everything it holds."""

    @property
    def backlog_bytes(self) -> int:
        """Bytes accepted by `send_batch` but not yet on the wire."""
        return 0

    async def wait_drained(self) -> None:
        """Return once the backlog is empty."""
        return None

    def set_datagram_limit(self, largest: int) -> None:
        """The largest datagram every running transport carries (some size buffers by it)."""
        return None

    def count_drops(self) -> None:
        """Bring the datapath's own drop counters into the metrics."""
        return None

    def forget(self, addr: Address) -> None:
        """A peer at ``addr`` is gone: drop what is kept for it."""
        return None

    def shadows(self, addr: Address) -> bool:
        """Whether datagrams the kernel socket got from ``addr`` are copies of what this
        datapath already delivered (DPDK on a kernel interface sees the same frames)."""
        return False

    @property
    def spinning(self) -> bool:
        """True while `spin` runs (a delivery inside it cannot spin again)."""
        return False

    def spin(self, until: Callable[[], bool] | None, idle: float, limit: float) -> bool:
        """Busy-poll (``consumption: poll``) until ``until()`` holds (True), nothing came for
        ``idle`` seconds or ``limit`` seconds passed (False). Without a poll loop: False."""
        return False


def busy_poll(
    poll_once: Callable[[], bool | None],
    until: Callable[[], bool] | None,
    idle: float,
    limit: float,
) -> bool:
    """The loop of a transport's ``spin`` (``consumption: poll``): call ``poll_once`` (which
    delivers what it read and returns True, False when nothing was there, None when the
    datapath failed) until ``until()`` holds after a delivery (True), or nothing came for
    ``idle`` seconds, or ``limit`` seconds passed (False)."""
    clock = time.perf_counter
    start = last = clock()
    while True:
        got = poll_once()
        if got is None:
            return False
        if not got:
            now = clock()
            if now - last > idle or now - start > limit:
                return False
            continue
        if until is not None and until():
            return True
        last = clock()
        if last - start > limit:
            return False


def spin_datapath(
    datapath: Callable[[], bool],
    kernel: Callable[[], bool] | None,
    until: Callable[[], bool] | None,
    idle: float,
    limit: float,
) -> bool:
    """`busy_poll` over a kernel-bypass datapath (``datapath()`` reads and delivers a batch,
    True if there was one) and the session's kernel socket (``kernel``), since replies and
    control traffic may come either way."""

    def poll_once() -> bool:
        if datapath():
            return True
        return kernel() if kernel is not None else False

    return busy_poll(poll_once, until, idle, limit)
