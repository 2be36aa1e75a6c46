"""AF_XDP transport: batches of UDP datagrams through an AF_XDP socket, bypassing the kernel's
network stack, on the same UDP port as the session's kernel socket.

The native layer (insane._xdp, insane/native/_xdp.c) owns the socket, its rings and INSANE's
XDP program, which redirects only this port's UDP datagrams to the socket and passes the rest
of the interface's traffic to the kernel. What arrives for the port on this interface's queue
comes through here; the kernel socket still receives whatever the program passes (other
queues, IP fragments), so nothing is lost if the two overlap.

Sending needs the next hop's MAC: each destination gets a header template once its MAC is
known (insane/transports/frames.py: the neighbour table, then ARP, in a worker thread).
Until then, and for destinations not reached through this interface, datagrams go by the
kernel socket (``fallback``): the wire is the same, so the peer cannot tell. Wake-ups come
through the event loop (``consumption: low``); ``spin`` busy-polls the RX ring (``poll``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

from insane.metrics import STORE
from insane.transports import frames
from insane.transports.base import Address, Datagram, ReceiveCallback, Transport, busy_poll

log = logging.getLogger("insane.xdp")

_RECV_BURST = 256
#: How long start() retries a queue that is still busy (seconds).
_BUSY_WAIT = 3.0
#: UMEM frames, half to receive, half to send. The RX ring must hold what peers may send
#: before we read it: a flow-control window (4 MiB) of full datagrams is about 3,000 frames,
#: so 8,192 leave room for smaller ones. 2 KiB frames where the MTU allows: 32 MiB of UMEM.
_FRAMES = 16384
#: insane_dropped_total reason -> the native layer's counter
_DROPS = {"malformed": "malformed", "bad_checksum": "bad_checksum", "rx_ring_full": "rx_dropped"}
#: Poll mode returns to the event loop at least this often (seconds).
_SPIN_LIMIT = 0.005
#: TX ring full: wake the kernel and retry this many times before queueing in user space.
_TX_RETRIES = 64


def program_path() -> str:
    """Where the compiled XDP program lies (built by setup.py beside the sources)."""
    return str(resources.files("insane") / "native" / "xdp_redirect.bpf.o")


class XdpTransport(Transport):
    name = "xdp"

    def __init__(
        self,
        interface: str,
        queue: int,
        ip: str,
        port: int,
        *,
        fallback: Transport,
        mode: str = "auto",
        zero_copy: str | bool = "auto",
    ) -> None:
        self.interface = interface
        self.queue = queue
        self._ip = ip
        self._port = port
        self._mode = mode
        self._zero_copy = zero_copy
        self._fallback = fallback
        self._mac = frames.interface_mac(interface)
        self._max_datagram = frames.interface_mtu(interface) - 28
        self._sock: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_receive: ReceiveCallback | None = None
        #: destination -> header template; None: reached by the kernel socket
        self._headers: dict[Address, bytes | None] = {}
        self._resolving: set[Address] = set()
        self._backlog: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self._backlog_bytes = 0
        self._retry: asyncio.TimerHandle | None = None
        self._drained: asyncio.Event | None = None
        self.poll_idle = 0.0
        self.spin_until: Callable[[], bool] | None = None  # see UdpTransport
        self._spinning = False
        self.native = False
        self.zero_copy = False
        #: Set by the session: one non-blocking read of its kernel socket, delivered; True if
        #: something came. ``spin`` polls it too, since replies may come either way.
        self.kernel_poll: Callable[[], bool] | None = None
        self._counted: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self, on_receive: ReceiveCallback) -> None:
        from insane import _xdp  # type: ignore[attr-defined]

        zc = "auto" if self._zero_copy == "auto" else "on" if self._zero_copy else "off"
        deadline = time.monotonic() + _BUSY_WAIT
        while True:
            try:
                self._sock = _xdp.Socket(
                    self.interface,
                    self.queue,
                    program_path(),
                    [self._port],
                    mode=self._mode,
                    zero_copy=zc,
                    frames=_FRAMES,
                    frame_size=2048 if self._max_datagram + 42 <= 2048 else 4096,
                )
                break
            except OSError as exc:
                # The queue stays busy for a moment after a previous socket on it closed.
                if "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        self.native = bool(self._sock.native)
        self.zero_copy = bool(self._sock.zero_copy)
        self._on_receive = on_receive
        self._loop = asyncio.get_running_loop()
        self._drained = asyncio.Event()
        self._drained.set()
        self._loop.add_reader(self._sock.fileno(), self._readable)
        log.info(
            "AF_XDP on %s queue %d, port %d: %s XDP, %s",
            self.interface,
            self.queue,
            self._port,
            "native" if self.native else "generic",
            "zero-copy" if self.zero_copy else "copy mode",
        )

    async def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wait_drained(), 1.0)  # what was sent, leaves
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(sock.fileno())
        if self._retry is not None:
            self._retry.cancel()
        self._backlog.clear()
        self._backlog_bytes = 0
        if self._drained is not None:
            self._drained.set()
        sock.close()  # the BPF link goes with it: the program is detached

    @property
    def local_address(self) -> Address:
        return self._ip, self._port

    @property
    def max_datagram(self) -> int:
        return self._max_datagram

    def stats(self) -> dict[str, int]:
        return dict(self._sock.stats()) if self._sock is not None else {}

    def count_drops(self) -> None:
        """Bring the native layer's drop counters into insane_dropped_total{transport="xdp"}:
        frames that were not well-formed IPv4/UDP (malformed) or failed a checksum
        (bad_checksum), and frames the kernel could not put on the full RX ring
        (rx_ring_full)."""
        stats = self.stats()
        for reason, key in _DROPS.items():
            n = stats.get(key, 0) - self._counted.get(key, 0)
            if n > 0:
                STORE.cell("insane_dropped", "xdp", reason).value += n
                self._counted[key] = stats[key]

    # ------------------------------------------------------------------ receive

    def _readable(self) -> None:
        sock = self._sock
        if sock is None or self._on_receive is None:
            return
        batch = sock.recv(_RECV_BURST)
        if batch:
            self._on_receive(batch)
            until = self.spin_until
            if self.poll_idle and not self._spinning and not (until and until()):
                self.spin(until, self.poll_idle, _SPIN_LIMIT)

    @property
    def spinning(self) -> bool:
        return self._spinning

    def spin(self, until: Callable[[], bool] | None, idle: float, limit: float) -> bool:
        """Busy-poll the RX ring (``consumption: poll``); see UdpTransport.spin."""
        sock = self._sock
        if sock is None or self._spinning or self._on_receive is None:
            return False
        deliver = self._on_receive
        recv = sock.recv
        kernel = self.kernel_poll

        def poll_once() -> bool | None:
            batch = recv(_RECV_BURST)
            if batch:
                deliver(batch)
                return True
            return kernel() if kernel is not None else False

        self._spinning = True
        try:
            return busy_poll(poll_once, until, idle, limit)
        finally:
            self._spinning = False

    # ------------------------------------------------------------------ send

    @property
    def backlog_bytes(self) -> int:
        return self._backlog_bytes

    def send_batch(self, datagrams: Sequence[Datagram]) -> int:
        sock = self._sock
        if sock is None:
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
                    self._resolve(addr)
        if kernel:
            self._fallback.send_batch(kernel)
        if items:
            if self._backlog:
                self._queue(items)
            else:
                self._send(items)
        return len(datagrams)

    def _send(self, items: list[tuple[bytes, bytes]]) -> None:
        sock = self._sock
        for _ in range(_TX_RETRIES):
            n = sock.send(items)
            if n == len(items):
                return
            items = items[n:]
            sock.flush()  # wake the kernel, take back completed frames
        self._queue(items)

    def _queue(self, items: list[tuple[bytes, bytes]]) -> None:
        self._backlog.extend(items)
        self._backlog_bytes += sum(len(p) for p, _h in items)
        if self._drained is not None:
            self._drained.clear()
        if self._retry is None and self._loop is not None:
            self._retry = self._loop.call_later(0.0002, self._drain)

    def _drain(self) -> None:
        self._retry = None
        sock = self._sock
        if sock is None:
            return
        sock.flush()
        items = list(self._backlog)
        n = sock.send(items) if items else 0
        for _ in range(n):
            payload, _h = self._backlog.popleft()
            self._backlog_bytes -= len(payload)
        if self._backlog:
            assert self._loop is not None
            self._retry = self._loop.call_later(0.0002, self._drain)
        elif self._drained is not None:
            self._drained.set()

    async def wait_drained(self) -> None:
        """Return once every datagram handed over has left: none queued in user space, none
        left on the TX ring (the kernel has completed them)."""
        if self._drained is not None and self._backlog:
            await self._drained.wait()
        for _ in range(1000):
            if self._sock is None or not self._sock.flush():
                return
            await asyncio.sleep(0.001)

    # ------------------------------------------------------------------ next hops

    def _resolve(self, addr: Address) -> None:
        """Find the next hop's MAC for ``addr`` in a worker thread (the neighbour table, then
        ARP); meanwhile its datagrams go by the kernel socket."""
        if addr in self._resolving or self._loop is None:
            return
        self._resolving.add(addr)
        fut = self._loop.run_in_executor(
            None, frames.resolve_mac, addr[0], self.interface, self._ip
        )
        fut.add_done_callback(lambda f: self._resolved(addr, f))

    def _resolved(self, addr: Address, fut: asyncio.Future[bytes | None]) -> None:
        self._resolving.discard(addr)
        try:
            mac = fut.result()
        except Exception as exc:  # an unexpected `ip` failure: keep using the kernel
            log.warning("next hop of %s:%d: %s", *addr, exc)
            mac = None
        if mac is None:
            self._headers[addr] = None  # not through this interface: always the kernel
            log.info("%s:%d is not reached through %s: kernel UDP", *addr, self.interface)
            return
        self._headers[addr] = frames.udp_header(self._mac, mac, (self._ip, self._port), addr)
        log.debug("%s:%d via %s (next hop %s)", *addr, self.interface, frames.mac_text(mac))

    def forget(self, addr: Address) -> None:
        """A peer left: resolve its next hop again if it comes back (its MAC may change)."""
        self._headers.pop(addr, None)

    def reaches(self, addr: Address) -> bool:
        """Datagrams to ``addr`` leave through AF_XDP (its next hop is known)."""
        return bool(self._headers.get(addr))
