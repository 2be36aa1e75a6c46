"""Kernel UDP transport: batches of datagrams through one non-blocking IPv4 socket.

Receives are drained in bursts from the event loop's reader callback (one wake-up, many
datagrams); sends go straight to the socket and queue in user space only when the kernel
pushes back (EAGAIN/ENOBUFS), to be flushed when the socket is writable again.

The socket asks for ICMP errors (IP_RECVERR): a port unreachable for a destination (nothing
listens there any more: the peer's process died) is read off the error queue and reported to
``on_unreachable`` with that destination. `kernel_drops` reads how many datagrams the kernel
dropped because the receive buffer was full (the socket's drop counter, the one SO_RXQ_OVFL
reports, read with SO_MEMINFO).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import socket
import struct
import time
from collections.abc import Callable, Sequence

from insane.transports.base import Address, Datagram, ReceiveCallback, Transport, busy_poll
from insane.transports.netif import path_mtu, resolve_bind

_IP_UDP_HEADERS = 28
_MAX_UDP_PAYLOAD = 65507
#: Largest datagram we send on loopback: big enough to batch well, below the 64 KiB limit.
_LOOPBACK_DATAGRAM = 65000
_RECV_BURST = 512
#: Stop a receive burst after a datagram shorter than this (see ``_readable``).
_SMALL_DATAGRAM = 1024
#: Wake-ups closer together than this (seconds) mean traffic is heavy: always read in bursts.
_BUSY_GAP = 200e-6
#: Poll mode returns to the event loop at least this often (seconds), so timers and other
#: tasks still run.
_SPIN_LIMIT = 0.005
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
_IP_RECVERR = 11
_MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
_SO_MEMINFO = 55
_SK_MEMINFO = struct.Struct("9I")  # ... SK_MEMINFO_DROPS is the ninth
_EXTENDED_ERR = struct.Struct("IBBBBII")  # struct sock_extended_err
_SO_EE_ORIGIN_ICMP = 2


def _set_buffer(sock: socket.socket, force: int, plain: int, size: int) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, size)  # root: beyond net.core.*mem_max
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, plain, size)


class UdpTransport(Transport):
    name = "udp"

    def __init__(
        self,
        bind: str = "127.0.0.1",
        port: int = 0,
        *,
        max_datagram: int | None = None,
        rcvbuf: int = 32 * 1024 * 1024,
        sndbuf: int = 8 * 1024 * 1024,
    ) -> None:
        self._bind = resolve_bind(bind)
        self._port = port
        self._rcvbuf = rcvbuf
        #: Poll mode: after each delivery keep reading for this long (seconds; 0: off).
        self.poll_idle = 0.0
        #: Set by the session: true once a delivery woke a waiting task, which must run now
        #: (a ``next_msg``), so the spin after a delivery ends instead of idling on.
        self.spin_until: Callable[[], bool] | None = None
        #: The spin loop in native code, where the data plane has one (the driver sets the
        #: engine's ``spin_udp(fd, deliver, until, idle, limit)``): `spin` with no Python
        #: frame or exception per empty poll. None: the Python loop below, its reference.
        self.native_spin: Callable[..., bool] | None = None
        self._spinning = False
        self._sndbuf = sndbuf
        if max_datagram is None:
            mtu = path_mtu(self._bind)
            max_datagram = _LOOPBACK_DATAGRAM if mtu >= 65536 else mtu - _IP_UDP_HEADERS
        self._max_datagram = min(max_datagram, _MAX_UDP_PAYLOAD)
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_receive: ReceiveCallback | None = None
        self._backlog: collections.deque[tuple[bytes, Address]] = collections.deque()
        self._backlog_bytes = 0
        self._drained: asyncio.Event | None = None
        self.send_errors = 0
        #: Called with a destination that answered ICMP port unreachable.
        self.on_unreachable: Callable[[Address], None] | None = None

    @property
    def local_address(self) -> Address:
        assert self._sock is not None, "transport not started"
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    @property
    def max_datagram(self) -> int:
        return self._max_datagram

    @property
    def socket(self) -> socket.socket:
        assert self._sock is not None, "transport not started"
        return self._sock

    @property
    def backlog_bytes(self) -> int:
        """Bytes queued in user space because the kernel pushed back."""
        return self._backlog_bytes

    async def start(self, on_receive: ReceiveCallback) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            _set_buffer(sock, _SO_RCVBUFFORCE, socket.SO_RCVBUF, self._rcvbuf)
            _set_buffer(sock, _SO_SNDBUFFORCE, socket.SO_SNDBUF, self._sndbuf)
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
            sock.bind((self._bind, self._port))
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._on_receive = on_receive
        self._loop = asyncio.get_running_loop()
        self._drained = asyncio.Event()
        self._drained.set()
        self._last_rx = 0.0
        self._loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        batch: list[tuple[bytes, Address]] = []
        recv = sock.recvfrom
        # At low rates (the previous wake-up was a while ago) a small datagram is most likely
        # alone: stop after it rather than pay a failing recv per message.  If more were
        # waiting, the loop polls readable again at once, and the short gap switches back to
        # full bursts.
        now = time.monotonic()
        lone = now - self._last_rx > _BUSY_GAP
        self._last_rx = now
        try:
            for _ in range(_RECV_BURST):
                item = recv(65536)
                batch.append(item)
                if lone and len(item[0]) < _SMALL_DATAGRAM:
                    break
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._read_errors()  # ICMP errors surface as a pending error, details queued
        if batch and self._on_receive is not None:
            self._on_receive(batch)
            until = self.spin_until
            if self.poll_idle and not self._spinning and not (until and until()):
                self.spin(until, self.poll_idle, _SPIN_LIMIT)

    # ------------------------------------------------------------------ poll mode

    @property
    def spinning(self) -> bool:
        """True while :meth:`spin` runs (a delivery inside it cannot spin again)."""
        return self._spinning

    def spin(self, until: Callable[[], bool] | None, idle: float, limit: float) -> bool:
        """Busy-poll the socket (``consumption: poll``): read and deliver datagrams one by one
        as they come, without the event loop, until ``until()`` holds (returns True), nothing
        came for ``idle`` seconds, or ``limit`` seconds passed (returns False).

        It keeps a CPU busy on purpose: a datagram is picked up within microseconds instead of
        after a wake-up through the event loop (which, across CPUs of a virtual machine, can
        take hundreds).  Not re-entered from inside a delivery.
        """
        sock = self._sock
        if sock is None or self._spinning or self._on_receive is None:
            return False
        deliver = self._on_receive
        native = self.native_spin
        recv = sock.recvfrom

        def poll_once() -> bool | None:
            try:
                item = recv(65536)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                return None
            deliver([item])
            return True

        self._spinning = True
        try:
            if native is not None:
                return native(sock.fileno(), deliver, until, idle, limit)
            return busy_poll(poll_once, until, idle, limit)
        finally:
            self._spinning = False

    def send_batch(self, datagrams: Sequence[Datagram]) -> int:
        sock = self._sock
        if sock is None:
            return 0
        if self._backlog:
            for data, addr in datagrams:
                self._queue(bytes(data), addr)
            return len(datagrams)
        sendto = sock.sendto
        for i, (data, addr) in enumerate(datagrams):
            try:
                sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                for d, a in datagrams[i:]:
                    self._queue(bytes(d), a)
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    for d, a in datagrams[i:]:
                        self._queue(bytes(d), a)
                    break
                # Unreachable peer, message too long...: the datagram is lost like on a wire.
                self.send_errors += 1
                if exc.errno == errno.ECONNREFUSED:
                    self._read_errors()
        return len(datagrams)

    def _read_errors(self) -> None:
        """Read the socket's error queue: report each destination that answered ICMP port
        unreachable."""
        sock = self._sock
        if sock is None:
            return
        for _ in range(64):
            try:
                _d, anc, _f, addr = sock.recvmsg(1, 1024, _MSG_ERRQUEUE)
            except OSError:
                return
            for level, kind, data in anc:
                if level != socket.IPPROTO_IP or kind != _IP_RECVERR:
                    continue
                if len(data) < _EXTENDED_ERR.size:
                    continue
                err, origin = _EXTENDED_ERR.unpack_from(data)[:2]
                refused = err == errno.ECONNREFUSED and origin == _SO_EE_ORIGIN_ICMP
                if refused and self.on_unreachable is not None and isinstance(addr, tuple):
                    self.on_unreachable((str(addr[0]), int(addr[1])))

    def kernel_drops(self) -> int:
        """Datagrams the kernel dropped for this socket since it opened (receive buffer
        full): the socket's drop counter."""
        if self._sock is None:
            return 0
        try:
            raw = self._sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, _SK_MEMINFO.size)
        except OSError:
            return 0
        return int(_SK_MEMINFO.unpack(raw)[8]) if len(raw) >= _SK_MEMINFO.size else 0

    def _queue(self, data: bytes, addr: Address) -> None:
        if not self._backlog and self._loop is not None and self._sock is not None:
            self._loop.add_writer(self._sock.fileno(), self._writable)
            if self._drained is not None:
                self._drained.clear()
        self._backlog.append((data, addr))
        self._backlog_bytes += len(data)

    def _writable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        backlog = self._backlog
        while backlog:
            data, addr = backlog[0]
            try:
                sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    return
                self.send_errors += 1
            backlog.popleft()
            self._backlog_bytes -= len(data)
        if self._loop is not None:
            self._loop.remove_writer(sock.fileno())
        if self._drained is not None:
            self._drained.set()

    async def wait_drained(self) -> None:
        """Return once everything queued in user space has been handed to the kernel."""
        if self._drained is not None and self._backlog:
            await self._drained.wait()

    async def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(sock.fileno())
            if self._backlog:
                self._loop.remove_writer(sock.fileno())
        self._backlog.clear()
        self._backlog_bytes = 0
        if self._drained is not None:
            self._drained.set()
        sock.close()
