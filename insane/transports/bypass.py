"""What the kernel-bypass transports (AF_XDP, DPDK) share: they sit on the kernel socket's
UDP port, send Ethernet/IPv4/UDP frames built natively from per-destination header
templates, and fall back to the kernel socket for a destination until its next hop's MAC is
known (or for good, when it is not reached through them).

A subclass provides the native datapath: ``_recv()`` (a batch of ``(payload, address)``),
``_send_items(items)`` (how many ``(payload, header)`` it took), ``_kick()`` (push what is
queued, say how much is in flight), ``_native_stats()``, ``_resolve(addr)`` (start finding a
next hop; call :meth:`_set_header` or :meth:`_unreachable` when done) and its own start/close.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable, Sequence

from insane.ops.metrics import STORE
from insane.transports import frames
from insane.transports.base import Address, Datagram, ReceiveCallback, Transport, spin_datapath

#: Poll mode returns to the event loop at least this often (seconds).
SPIN_LIMIT = 0.005
#: Ring or pool full: retry the backlog this often (seconds).
_RETRY = 0.0002


class BypassTransport(Transport):
    #: insane_dropped_total reason -> the native layer's counter
    DROPS: dict[str, str] = {}

    def __init__(self, ip: str, udp_port: int, fallback: Transport, max_datagram: int) -> None:
        self._ip = ip
        self._udp_port = udp_port
        self._fallback = fallback
        self._max_datagram = max_datagram
        self._mac = b""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_receive: ReceiveCallback | None = None
        #: destination -> header template; b"": being resolved; None: the kernel's for good
        self._headers: dict[Address, bytes | None] = {}
        self._backlog: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self._backlog_bytes = 0
        self._retry: asyncio.TimerHandle | None = None
        self._drained: asyncio.Event | None = None
        self._counted: dict[str, int] = {}
        self._spinning = False
        self._open = False
        #: ``consumption: poll``: after a delivery keep polling this long (seconds; 0: off).
        self.poll_idle = 0.0
        #: Set by the session: a delivery woke a waiting task (see UdpTransport.spin_until).
        self.spin_until: Callable[[], bool] | None = None
        #: Set by the session: one non-blocking read of its kernel socket, delivered; True if
        #: something came. ``spin`` polls it too, since replies may come either way.
        self.kernel_poll: Callable[[], bool] | None = None

    # ------------------------------------------------------------------ for subclasses

    def _recv(self) -> list[tuple[bytes, Address]]:
        raise NotImplementedError

    def _send_items(self, items: list[tuple[bytes, bytes]]) -> int:
        raise NotImplementedError

    def _kick(self) -> int:
        return 0

    def _native_stats(self) -> dict[str, int]:
        raise NotImplementedError

    def _resolve(self, addr: Address) -> None:
        raise NotImplementedError

    def _opened(self, on_receive: ReceiveCallback, mac: bytes) -> None:
        """The subclass's datapath is up: start working."""
        self._mac = mac
        self._on_receive = on_receive
        self._loop = asyncio.get_running_loop()
        self._drained = asyncio.Event()
        self._drained.set()
        self._open = True

    async def _closing(self) -> None:
        """Let what was handed over leave, then stop sending."""
        if self._open:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wait_drained(), 1.0)
        self._open = False
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._backlog.clear()
        self._backlog_bytes = 0
        if self._drained is not None:
            self._drained.set()

    # ------------------------------------------------------------------ common

    @property
    def local_address(self) -> Address:
        return self._ip, self._udp_port

    @property
    def max_datagram(self) -> int:
        return self._max_datagram

    def stats(self) -> dict[str, int]:
        return self._native_stats() if self._open else {}

    def count_drops(self) -> None:
        """Bring the native layer's drop counters into insane_dropped_total{transport}."""
        stats = self.stats()
        for reason, key in self.DROPS.items():
            n = stats.get(key, 0) - self._counted.get(key, 0)
            if n > 0:
                STORE.cell("insane_dropped", self.name, reason).value += n
                self._counted[key] = stats[key]

    def _deliver_available(self) -> bool:
        """Read and deliver one batch; then, in poll mode, spin for more."""
        if not self._open or self._on_receive is None:
            return False
        batch = self._recv()
        if not batch:
            return False
        self._on_receive(batch)
        until = self.spin_until
        if self.poll_idle and not self._spinning and not (until and until()):
            self.spin(until, self.poll_idle, SPIN_LIMIT)
        return True

    @property
    def spinning(self) -> bool:
        return self._spinning

    def spin(self, until: Callable[[], bool] | None, idle: float, limit: float) -> bool:
        """Busy-poll the datapath and the kernel socket (``consumption: poll``); see
        UdpTransport.spin."""
        if not self._open or self._spinning or self._on_receive is None:
            return False
        deliver = self._on_receive
        recv = self._recv

        def datapath() -> bool:
            batch = recv()
            if batch:
                deliver(batch)
                return True
            return False

        self._spinning = True
        try:
            return spin_datapath(datapath, self.kernel_poll, until, idle, limit)
        finally:
            self._spinning = False

    # ------------------------------------------------------------------ send

    @property
    def backlog_bytes(self) -> int:
        return self._backlog_bytes

    def send_batch(self, datagrams: Sequence[Datagram]) -> int:
        if not self._open:
            return 0
        headers = self._headers
        items: list[tuple[bytes, bytes]] = []
        kernel: list[Datagram] = []
        for data, addr in datagrams:
            header = headers.get(addr, b"")
            if header:
                items.append((data if type(data) is bytes else bytes(data), header))
            else:
                kernel.append((data, addr))
                if header is not None and addr not in headers:
                    headers[addr] = b""  # being resolved
                    self._resolve(addr)
        if kernel:
            self._fallback.send_batch(kernel)
        if items:
            if self._backlog:
                self._queue(items)
            else:
                n = self._send_items(items)
                if n < len(items):
                    self._queue(items[n:])
        return len(datagrams)

    def _queue(self, items: list[tuple[bytes, bytes]]) -> None:
        self._backlog.extend(items)
        self._backlog_bytes += sum(len(p) for p, _h in items)
        if self._drained is not None:
            self._drained.clear()
        if self._retry is None and self._loop is not None:
            self._retry = self._loop.call_later(_RETRY, self._drain)

    def _drain(self) -> None:
        self._retry = None
        if not self._open:
            return
        self._kick()
        items = list(self._backlog)
        n = self._send_items(items) if items else 0
        for _ in range(n):
            payload, _h = self._backlog.popleft()
            self._backlog_bytes -= len(payload)
        if self._backlog:
            assert self._loop is not None
            self._retry = self._loop.call_later(_RETRY, self._drain)
        elif self._drained is not None:
            self._drained.set()

    async def wait_drained(self) -> None:
        """Return once everything handed over has left: nothing queued here, nothing left
        in flight in the datapath."""
        if self._drained is not None and self._backlog:
            await self._drained.wait()
        for _ in range(1000):
            if not self._open or not self._kick():
                return
            await asyncio.sleep(0.001)

    # ------------------------------------------------------------------ next hops

    def _set_header(self, addr: Address, mac: bytes) -> None:
        self._headers[addr] = frames.udp_header(
            self._mac, mac, (self._ip, self._udp_port), addr
        )

    def _unreachable(self, addr: Address) -> None:
        """Not reached through this datapath: the kernel socket sends to it, always."""
        self._headers[addr] = None

    def _retry_later(self, addr: Address) -> None:
        """No answer yet: ask again on the next send."""
        self._headers.pop(addr, None)

    def forget(self, addr: Address) -> None:
        """A peer left: find its next hop again if it comes back (its MAC may change)."""
        self._headers.pop(addr, None)

    def reaches(self, addr: Address) -> bool:
        """Datagrams to ``addr`` leave through this datapath (its next hop is known)."""
        return bool(self._headers.get(addr))
