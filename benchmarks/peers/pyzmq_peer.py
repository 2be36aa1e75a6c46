"""pyzmq over tcp://127.0.0.1: REQ/REP for round trips, PUSH/PULL for throughput.

    python -m benchmarks.peers.pyzmq_peer server PORT
    python -m benchmarks.peers.pyzmq_peer client HOST PORT SIZE COUNT WARMUP
    python -m benchmarks.peers.pyzmq_peer sink PORT COUNT
    python -m benchmarks.peers.pyzmq_peer blast HOST PORT SIZE COUNT

Blocking sockets, one message per call (``copy=True``, the fast path for small messages).
An empty request stops the REP server; the blaster ends with ``E`` + the 64-bit count sent.
PUSH/PULL over TCP does not lose messages: a slow sink slows the sender down instead.
"""

from __future__ import annotations

import struct
import sys
import time

import zmq

from benchmarks.common import (
    announce_ready,
    emit_blast_result,
    emit_result,
    emit_sink_result,
    rtt_summary,
    run_role,
)

SYSTEM = "pyzmq"
MARKER = struct.Struct("=cq")


def bind(ctx: zmq.Context, kind: int, port: int) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.bind(f"tcp://127.0.0.1:{port or '*'}")
    endpoint = sock.getsockopt(zmq.LAST_ENDPOINT)
    assert isinstance(endpoint, bytes)
    announce_ready(int(endpoint.rsplit(b":", 1)[1]))
    return sock


def server(port: int) -> int:
    ctx = zmq.Context()
    sock = bind(ctx, zmq.REP, port)
    sock.setsockopt(zmq.RCVTIMEO, 30_000)  # idle timeout
    recv, send = sock.recv, sock.send
    try:
        while True:
            msg = recv()
            send(msg)
            if not msg:
                return 0
    except zmq.Again:
        print("pyzmq server: idle timeout", file=sys.stderr)
        return 1
    finally:
        sock.close()
        ctx.term()


def client(host: str, port: int, size: int, count: int, warmup: int) -> int:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.setsockopt(zmq.RCVTIMEO, 5_000)
    sock.connect(f"tcp://{host}:{port}")
    payload = b"p" * size
    rtts: list[int] = []
    clock = time.perf_counter_ns
    send, recv = sock.send, sock.recv
    error = None
    start = clock()
    try:
        for i in range(warmup + count):
            if i == warmup:
                start = clock()
            t0 = clock()
            send(payload)
            recv()
            if i >= warmup:
                rtts.append(clock() - t0)
        seconds = (clock() - start) / 1e9
        send(b"")  # stop the server
        recv()
    except zmq.Again:
        seconds = (clock() - start) / 1e9
        error = "reply timed out (REQ socket stuck)"
    sock.close()
    ctx.term()
    result = {
        "system": SYSTEM,
        "mode": "pingpong",
        "size": size,
        "count": count,
        "done": len(rtts),
        "lost": count - len(rtts),
        **rtt_summary(rtts, seconds),
    }
    if error:
        result["error"] = error
    emit_result(result)
    return 0 if len(rtts) == count else 1


def sink(port: int, expect: int) -> int:
    ctx = zmq.Context()
    sock = bind(ctx, zmq.PULL, port)
    sock.setsockopt(zmq.RCVTIMEO, 30_000)  # until the first message
    recv = sock.recv
    clock = time.monotonic_ns
    received, sent, first, last, why = 0, -1, 0, 0, "marker"
    try:
        while expect <= 0 or received < expect:
            msg = recv()
            if msg[:1] == b"D":
                last = clock()
                if received == 0:
                    first = last
                    sock.setsockopt(zmq.RCVTIMEO, 2_000)
                received += 1
            elif msg[:1] == b"E" and len(msg) >= MARKER.size:
                sent = MARKER.unpack_from(msg)[1]
                break
        else:
            why = "count"
    except zmq.Again:
        why = "idle timeout" if received else "no data"
    sock.close()
    ctx.term()
    return emit_sink_result(SYSTEM, received, sent, first, last, why)


def blast(host: str, port: int, size: int, count: int) -> int:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 10_000)  # let queued messages reach the sink on close
    sock.setsockopt(zmq.SNDTIMEO, 10_000)
    sock.connect(f"tcp://{host}:{port}")
    payload = b"D" + b"d" * (size - 1)
    send = sock.send
    t0 = time.monotonic_ns()
    for _ in range(count):
        send(payload)
    t1 = time.monotonic_ns()
    send(MARKER.pack(b"E", count))
    sock.close()
    ctx.term()
    emit_blast_result(SYSTEM, size, count, t0, t1)
    return 0


def main(argv: list[str]) -> int:
    return run_role(argv, __doc__, server=server, client=client, sink=sink, blast=blast)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
