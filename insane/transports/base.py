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
    """One datapath: ``start`` (init), ``send_batch`` (tx), ``on_receive`` (rx), ``close``."""

    name: TransportName

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
