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
import logging
import time
from importlib import resources
from typing import Any

from insane.transports import frames
from insane.transports.base import Address, ReceiveCallback, Transport
from insane.transports.bypass import BypassTransport

log = logging.getLogger("insane.xdp")

_RECV_BURST = 256
#: How long start() retries a queue that is still busy (seconds).
_BUSY_WAIT = 3.0
#: UMEM frames, half to receive, half to send. The RX ring must hold what peers may send
#: before we read it: a flow-control window (4 MiB) of full datagrams is about 3,000 frames,
#: so 8,192 leave room for smaller ones. 2 KiB frames where the MTU allows: 32 MiB of UMEM.
_FRAMES = 16384
#: The largest UMEM a socket maps (4 KiB frames for jumbo MTUs), charged to RLIMIT_MEMLOCK.
UMEM_BYTES = _FRAMES * 4096
#: TX ring full: wake the kernel and retry this many times before queueing in user space.
_TX_RETRIES = 64


def program_path() -> str:
    """Where the compiled XDP program lies (built by setup.py beside the sources)."""
    return str(resources.files("insane") / "native" / "xdp_redirect.bpf.o")


class XdpTransport(BypassTransport):
    name = "xdp"
    DROPS = {"malformed": "malformed", "bad_checksum": "bad_checksum", "rx_ring_full": "rx_dropped"}

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
        super().__init__(ip, port, fallback, frames.interface_mtu(interface) - 28)
        self.interface = interface
        self.queue = queue
        self._mode = mode
        self._zero_copy = zero_copy
        self._sock: Any = None
        self._poll_idle = 0.0
        self._poller: asyncio.Handle | None = None
        self.native = False
        self.zero_copy = False

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
                    [self._udp_port],
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
        self._opened(on_receive, frames.interface_mac(self.interface))
        assert self._loop is not None
        self._loop.add_reader(self._sock.fileno(), self._deliver_available)
        log.info(
            "AF_XDP on %s queue %d, port %d: %s XDP, %s",
            self.interface,
            self.queue,
            self._udp_port,
            "native" if self.native else "generic",
            "zero-copy" if self.zero_copy else "copy mode",
        )

    async def close(self) -> None:
        if self._sock is None:
            return
        await self._closing()
        sock, self._sock = self._sock, None
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        if self._loop is not None:
            self._loop.remove_reader(sock.fileno())
        sock.close()  # the BPF link goes with it: the program is detached

    # ------------------------------------------------------------------ poll mode

    @property
    def poll_idle(self) -> float:
        return self._poll_idle

    @poll_idle.setter
    def poll_idle(self, value: float) -> None:
        """``consumption: poll`` also reads the RX ring at every event-loop turn, so a task
        waiting for a message (``next_msg``) is not left to a wake-up through epoll."""
        self._poll_idle = value
        if value and self._poller is None and self._loop is not None and self._open:
            self._poller = self._loop.call_soon(self._poll_turn)

    def _poll_turn(self) -> None:
        self._poller = None
        if not self._open or not self._poll_idle or self._loop is None:
            return
        self._deliver_available()
        if self._open:
            self._poller = self._loop.call_soon(self._poll_turn)

    # ------------------------------------------------------------------ the datapath

    def _recv(self) -> list[tuple[bytes, Address]]:
        batch: list[tuple[bytes, Address]] = self._sock.recv(_RECV_BURST)
        return batch

    def _send_items(self, items: list[tuple[bytes, bytes]]) -> int:
        """As many as the TX ring takes, waking the kernel to make room a few times."""
        sock = self._sock
        n: int = sock.send(items)
        for _ in range(_TX_RETRIES):
            if n == len(items):
                break
            sock.flush()
            n += sock.send(items[n:])
        return n

    def _kick(self) -> int:
        """Wake the kernel for TX, take back completed frames; -> frames still in flight."""
        n: int = self._sock.flush()
        return n

    def _native_stats(self) -> dict[str, int]:
        return dict(self._sock.stats())

    def _resolve(self, addr: Address) -> None:
        """The next hop's MAC from the neighbour table, then ARP, in a worker thread."""
        assert self._loop is not None
        fut = self._loop.run_in_executor(
            None, frames.resolve_mac, addr[0], self.interface, self._ip
        )
        fut.add_done_callback(lambda f: self._resolved(addr, f))

    def _resolved(self, addr: Address, fut: asyncio.Future[bytes | None]) -> None:
        try:
            mac = fut.result()
        except Exception as exc:  # an unexpected `ip` failure: keep using the kernel
            log.warning("next hop of %s:%d: %s", *addr, exc)
            mac = None
        if mac is None:
            self._unreachable(addr)
            log.info("%s:%d is not reached through %s: kernel UDP", *addr, self.interface)
        else:
            self._set_header(addr, mac)
