"""asyncio UDP (``DatagramProtocol``): the floor for any asyncio-based design such as INSANE.

    python -m benchmarks.peers.asyncio_udp server PORT
    python -m benchmarks.peers.asyncio_udp client HOST PORT SIZE COUNT WARMUP
    python -m benchmarks.peers.asyncio_udp sink PORT COUNT
    python -m benchmarks.peers.asyncio_udp blast HOST PORT SIZE COUNT

The difference between this row and ``python-udp`` is what the event loop costs; the
difference between this row and ``insane`` is what INSANE itself costs.  Wire conventions
match ``raw/udp_pingpong.c`` (zero-length datagram stops the server; ``D`` data, ``E`` +
64-bit count as the end marker).  The blaster yields to the loop every 256 datagrams.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import time
from typing import cast

from benchmarks.common import (
    announce_ready,
    big_buffers,
    emit_blast_result,
    emit_result,
    emit_sink_result,
    rtt_summary,
    run_role,
)

SYSTEM = "asyncio-udp"
MARKER = struct.Struct("=cq")
Addr = tuple[str, int]


class Echo(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.stopped = asyncio.Event()
        self.last_seen = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self.last_seen = time.monotonic()
        if not data:
            self.stopped.set()
        elif self.transport is not None:
            self.transport.sendto(data, addr)


async def server(port: int) -> int:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", port))
    big_buffers(transport.get_extra_info("socket"))
    announce_ready(transport.get_extra_info("sockname")[1])
    status = 0
    while not proto.stopped.is_set():
        try:
            await asyncio.wait_for(proto.stopped.wait(), 1.0)
        except TimeoutError:
            if time.monotonic() - proto.last_seen > 30.0:
                print("asyncio-udp server: idle timeout", file=sys.stderr)
                status = 1
                break
    transport.close()
    return status


class Replies(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future[bytes] | None = None

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)


async def client(host: str, port: int, size: int, count: int, warmup: int) -> int:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Replies, remote_addr=(host, port))
    payload = bytearray(b"p" * size)
    rtts: list[int] = []
    lost = 0
    clock = time.perf_counter_ns
    start = clock()
    for i in range(warmup + count):
        if i == warmup:
            start = clock()
        tag = (i & 0xFFFFFFFF).to_bytes(4, "little")[:size]
        payload[: len(tag)] = tag
        t0 = clock()
        transport.sendto(bytes(payload))
        while True:
            proto.waiter = loop.create_future()
            try:
                reply = await asyncio.wait_for(proto.waiter, 1.0)
            except TimeoutError:
                lost += 1
                break
            if reply[: len(tag)] == tag:
                if i >= warmup:
                    rtts.append(clock() - t0)
                break
        if lost > 10:
            print("asyncio-udp client: too many lost round trips", file=sys.stderr)
            break
    seconds = (clock() - start) / 1e9
    transport.close()
    # Stop the server with a zero-length datagram, which asyncio's sendto() would drop.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stopper:
        stopper.sendto(b"", (host, port))
    emit_result(
        {
            "system": SYSTEM,
            "mode": "pingpong",
            "size": size,
            "count": count,
            "done": len(rtts),
            "lost": lost,
            **rtt_summary(rtts, seconds),
        }
    )
    return 0 if len(rtts) == count else 1


class Counter(asyncio.DatagramProtocol):
    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.received, self.first, self.last, self.sent = 0, 0, 0, -1
        self.done = asyncio.Event()

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        if data[:1] == b"D":
            self.last = time.monotonic_ns()
            if self.received == 0:
                self.first = self.last
            self.received += 1
            if self.received == self.expect:
                self.done.set()
        elif data[:1] == b"E" and len(data) >= MARKER.size:
            self.sent = MARKER.unpack_from(data)[1]
            self.done.set()


async def sink(port: int, expect: int) -> int:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: Counter(expect), local_addr=("127.0.0.1", port)
    )
    big_buffers(transport.get_extra_info("socket"))
    announce_ready(transport.get_extra_info("sockname")[1])
    started, why = time.monotonic_ns(), "marker"
    while not proto.done.is_set():
        try:
            await asyncio.wait_for(proto.done.wait(), 0.25)
        except TimeoutError:
            now = time.monotonic_ns()
            if proto.received and (now - proto.last) / 1e9 > 2.0:
                why = "idle timeout"
                break
            if not proto.received and (now - started) / 1e9 > 30.0:
                why = "no data"
                break
    else:
        if expect and proto.received >= expect:
            why = "count"
    transport.close()
    return emit_sink_result(SYSTEM, proto.received, proto.sent, proto.first, proto.last, why)


async def blast(host: str, port: int, size: int, count: int) -> int:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=(host, port)
    )
    big_buffers(transport.get_extra_info("socket"))
    payload = b"D" + b"d" * (size - 1)
    sendto = transport.sendto
    t0 = time.monotonic_ns()
    for i in range(count):
        sendto(payload)
        if i % 256 == 255:
            await asyncio.sleep(0)  # let the loop drain what the kernel pushed back
    while transport.get_write_buffer_size():
        await asyncio.sleep(0.001)
    t1 = time.monotonic_ns()
    for _ in range(16):  # several, spaced out: one may meet a full receive buffer
        sendto(MARKER.pack(b"E", count))
        await asyncio.sleep(0.002)
    transport.close()
    emit_blast_result(SYSTEM, size, count, t0, t1)
    return 0


def main(argv: list[str]) -> int:
    return run_role(argv, __doc__, server=server, client=client, sink=sink, blast=blast)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
