"""Python blocking UDP sockets: the simplest Python baseline, same roles as the raw C one.

    python -m benchmarks.peers.pyudp server PORT
    python -m benchmarks.peers.pyudp client HOST PORT SIZE COUNT WARMUP
    python -m benchmarks.peers.pyudp sink PORT COUNT
    python -m benchmarks.peers.pyudp blast HOST PORT SIZE COUNT

Wire conventions match ``raw/udp_pingpong.c``: a zero-length datagram stops the echo server;
throughput data starts with ``D`` and the end marker is ``E`` + the 64-bit count sent.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
import time

from benchmarks.common import (
    announce_ready,
    big_buffers,
    emit_blast_result,
    emit_result,
    emit_sink_result,
    rtt_summary,
    run_role,
)

SYSTEM = "python-udp"
MARKER = struct.Struct("=cq")
MAX_DATAGRAM = 65535


def bound(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    big_buffers(sock)
    sock.bind(("127.0.0.1", port))
    return sock


def server(port: int) -> int:
    sock = bound(port)
    sock.settimeout(30.0)  # idle timeout
    announce_ready(sock.getsockname()[1])
    buf = bytearray(MAX_DATAGRAM)
    view = memoryview(buf)
    recvfrom_into, sendto = sock.recvfrom_into, sock.sendto
    while True:
        try:
            n, addr = recvfrom_into(buf)
        except TimeoutError:
            print("pyudp server: idle timeout", file=sys.stderr)
            return 1
        if n == 0:
            return 0
        sendto(view[:n], addr)


def client(host: str, port: int, size: int, count: int, warmup: int) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    sock.settimeout(1.0)
    payload = bytearray(b"p" * size)
    rtts: list[int] = []
    lost = 0
    clock = time.perf_counter_ns
    send, recv = sock.send, sock.recv
    start = clock()
    for i in range(warmup + count):
        if i == warmup:
            start = clock()
        tag = (i & 0xFFFFFFFF).to_bytes(4, "little")[:size]
        payload[: len(tag)] = tag
        t0 = clock()
        send(payload)
        while True:
            try:
                reply = recv(MAX_DATAGRAM)
            except TimeoutError:
                lost += 1
                break
            if reply[: len(tag)] == tag:
                if i >= warmup:
                    rtts.append(clock() - t0)
                break
        if lost > 10:
            print("pyudp client: too many lost round trips", file=sys.stderr)
            break
    seconds = (clock() - start) / 1e9
    sock.send(b"")  # stop the server
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


def sink(port: int, expect: int) -> int:
    sock = bound(port)
    sock.settimeout(30.0)  # until the first datagram
    announce_ready(sock.getsockname()[1])
    buf = bytearray(MAX_DATAGRAM)
    recv_into = sock.recv_into
    clock = time.monotonic_ns
    received, sent, first, last, why = 0, -1, 0, 0, "marker"
    while expect <= 0 or received < expect:
        try:
            n = recv_into(buf)
        except TimeoutError:
            why = "idle timeout" if received else "no data"
            break
        if n and buf[0] == 0x44:  # b"D"
            last = clock()
            if received == 0:
                first = last
                sock.settimeout(2.0)
            received += 1
        elif n >= MARKER.size and buf[0] == 0x45:  # b"E"
            sent = MARKER.unpack_from(buf)[1]
            break
    else:
        why = "count"
    return emit_sink_result(SYSTEM, received, sent, first, last, why)


def blast(host: str, port: int, size: int, count: int) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    big_buffers(sock)
    sock.connect((host, port))
    payload = b"D" + b"d" * (size - 1)
    send = sock.send
    sent = 0
    t0 = time.monotonic_ns()
    while sent < count:
        try:
            send(payload)
            sent += 1
        except ConnectionRefusedError:
            continue  # ICMP from an earlier datagram: retry, as the C blaster does
        except OSError as e:
            if e.errno not in (errno.ENOBUFS, errno.EAGAIN):
                raise
    t1 = time.monotonic_ns()
    marker = MARKER.pack(b"E", sent)
    for _ in range(16):  # several, spaced out: one may meet a full receive buffer
        try:
            send(marker)
        except OSError:
            break  # the sink already stopped (it had every message): nobody to tell
        time.sleep(0.002)
    emit_blast_result(SYSTEM, size, sent, t0, t1)
    return 0


def main(argv: list[str]) -> int:
    return run_role(argv, __doc__, server=server, client=client, sink=sink, blast=blast)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
