"""The same asyncio pub/sub app against INSANE or against nats-py (+ nats-server).

    python -m benchmarks.peers.pubsub IMPL server PORT
    python -m benchmarks.peers.pubsub IMPL client HOST PORT SIZE COUNT WARMUP
    python -m benchmarks.peers.pubsub IMPL sink PORT COUNT
    python -m benchmarks.peers.pubsub IMPL blast HOST PORT SIZE COUNT

IMPL is ``insane`` (peers discover each other; HOST and PORT are ignored) or ``nats``
(PORT is the nats-server's port on 127.0.0.1).  INSANE peers join the discovery domain
``INSANE_BENCH_DOMAIN`` (the harness sets the benchmark's own), or use ``INSANE_CONFIG`` when
set.

Ping-pong: the server subscribes to ``bench.ping`` and publishes every message it gets to
``bench.pong``; the client publishes to ``bench.ping`` and waits on ``bench.pong`` with
``next_msg``, timing each round trip with ``perf_counter_ns``.  Each ping carries a sequence
tag so that a late reply to a ping that timed out is recognised and skipped.  An empty ping
stops the server.

Throughput: the sink counts ``bench.tput`` messages in a callback, from the first to the last
one received; the blaster publishes COUNT messages as fast as it can, calls ``flush()``, then
publishes the count it sent on ``bench.tput.end``.  The sink stops when it has COUNT messages,
shortly after the end marker once traffic is quiet, or after an idle timeout, and reports how
many it got: losses are counted, never hidden.  Each payload starts with its 32-bit sequence
number (sizes of 4 bytes and more), so the sink also counts duplicates and reordering.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from benchmarks.common import (
    announce_ready,
    emit_blast_result,
    emit_result,
    emit_sink_result,
    rtt_summary,
    run_role,
)

PING, PONG, TPUT, TPUT_END = "bench.ping", "bench.pong", "bench.tput", "bench.tput.end"
SYSTEMS = {"insane": "insane", "nats": "nats-py"}


async def open_session(impl: str, port: int, name: str) -> Any:
    """Connect with the chosen implementation; the result has the NATS-like surface."""
    if impl == "insane":
        import insane

        # A private discovery domain keeps the benchmark's peers apart from any other INSANE
        # application on this host (and them from it).  With INSANE_CONFIG set, that file
        # is used as it is.
        config: Any = None
        if not os.environ.get("INSANE_CONFIG"):
            config = {"domain": int(os.environ.get("INSANE_BENCH_DOMAIN", "0"))}
        return await insane.connect(config=config, name=name)
    if impl == "nats":
        import nats

        return await nats.connect(f"nats://127.0.0.1:{port}", name=name)
    raise SystemExit(f"unknown implementation {impl!r}")


def is_timeout(exc: BaseException) -> bool:
    """True for the timeout of either implementation (nats-py's subclasses TimeoutError)."""
    return isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower()


async def server(impl: str, port: int) -> int:
    nc = await open_session(impl, port, "bench-pong")
    stop = asyncio.Event()
    last_seen = time.monotonic()

    async def on_ping(msg: Any) -> None:
        nonlocal last_seen
        last_seen = time.monotonic()
        if not msg.data:
            stop.set()
            return
        await nc.publish(PONG, msg.data)

    await nc.subscribe(PING, cb=on_ping)
    await nc.flush()
    announce_ready(port)
    status = 0
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            if time.monotonic() - last_seen > 30.0:
                print(f"{impl} server: idle timeout", file=sys.stderr)
                status = 1
                break
    await nc.close()
    return status


async def client(impl: str, port: int, size: int, count: int, warmup: int) -> int:
    nc = await open_session(impl, port, "bench-ping")
    sub = await nc.subscribe(PONG)
    await nc.flush()
    payload = bytearray(b"p" * size)
    rtts: list[int] = []
    lost = 0
    clock = time.perf_counter_ns
    publish, next_msg = nc.publish, sub.next_msg
    error = None
    start = clock()
    for i in range(warmup + count):
        if i == warmup:
            start = clock()
        tag = (i & 0xFFFFFFFF).to_bytes(4, "little")[:size]
        payload[: len(tag)] = tag
        t0 = clock()
        await publish(PING, bytes(payload))
        while True:
            try:
                msg = await next_msg(timeout=1.0)
            except Exception as exc:
                if not is_timeout(exc):
                    raise
                lost += 1
                break
            if msg.data[: len(tag)] == tag:
                if i >= warmup:
                    rtts.append(clock() - t0)
                break
        if lost > 10:
            error = f"too many lost round trips ({lost}) after {i + 1} pings"
            break
    seconds = (clock() - start) / 1e9
    await publish(PING, b"")  # stop the server
    await nc.flush()
    await nc.close()
    result: dict[str, Any] = {
        "system": SYSTEMS[impl],
        "mode": "pingpong",
        "size": size,
        "count": count,
        "done": len(rtts),
        "lost": lost,
        **rtt_summary(rtts, seconds),
    }
    if error:
        result["error"] = error
    emit_result(result)
    return 0 if len(rtts) == count else 1


async def sink(impl: str, port: int, expect: int) -> int:
    nc = await open_session(impl, port, "bench-sink")
    clock = time.monotonic_ns
    received, first, last, sent = 0, 0, 0, -1
    end_seen_ns = 0
    # Sequence checks: each payload starts with its 32-bit sequence number (sizes >= 4).
    seen = bytearray(max(expect, 0))
    duplicates = reordered = 0
    highest = -1

    async def on_data(msg: Any) -> None:
        nonlocal received, first, last, duplicates, reordered, highest
        last = clock()
        if received == 0:
            first = last
        received += 1
        data = msg.data
        if len(data) >= 4:
            seq = int.from_bytes(data[:4], "little")
            if seq < len(seen):
                if seen[seq]:
                    duplicates += 1
                seen[seq] = 1
            if seq < highest:
                reordered += 1
            else:
                highest = seq

    async def on_end(msg: Any) -> None:
        nonlocal sent, end_seen_ns
        sent = int(msg.data)
        end_seen_ns = clock()

    await nc.subscribe(TPUT, cb=on_data)
    await nc.subscribe(TPUT_END, cb=on_end)
    await nc.flush()
    announce_ready(port)
    started = clock()
    while True:
        await asyncio.sleep(0.05)
        now = clock()
        if expect > 0 and received >= expect:
            why = "count"
            break
        quiet = (now - max(last, end_seen_ns)) / 1e9
        if end_seen_ns and quiet > 0.5:
            why = "marker"
            break
        if received and quiet > 2.0:
            why = "idle timeout"
            break
        if not received and not end_seen_ns and (now - started) / 1e9 > 30.0:
            why = "no data"
            break
    await nc.close()
    return emit_sink_result(
        SYSTEMS[impl], received, sent, first, last, why, duplicates=duplicates, reordered=reordered
    )


async def blast(impl: str, port: int, size: int, count: int) -> int:
    nc = await open_session(impl, port, "bench-blast")
    filler = b"d" * (size - 4)
    publish = nc.publish
    t0 = time.monotonic_ns()
    if size >= 4:
        for seq in range(count):
            await publish(TPUT, seq.to_bytes(4, "little") + filler)
    else:
        payload = b"d" * size
        for _ in range(count):
            await publish(TPUT, payload)
    await nc.flush()
    t1 = time.monotonic_ns()
    await publish(TPUT_END, str(count).encode())
    await nc.flush()
    await nc.close()
    emit_blast_result(SYSTEMS[impl], size, count, t0, t1)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in SYSTEMS:
        print(__doc__, file=sys.stderr)
        return 2
    impl = argv[0]
    return run_role(
        argv[1:],
        __doc__,
        server=lambda port: server(impl, port),
        client=lambda _host, port, size, count, warmup: client(impl, port, size, count, warmup),
        sink=lambda port, expect: sink(impl, port, expect),
        blast=lambda _host, port, size, count: blast(impl, port, size, count),
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
