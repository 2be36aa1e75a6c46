"""Flow control: a fast publisher never overruns a slow subscriber (protocol/flow.py and the
session's use of it), first as a state machine, then between two processes on loopback."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from insane.ops.metrics import STORE
from insane.protocol import wire
from insane.protocol.batching import OutQueue
from insane.protocol.flow import DATAGRAM_OVERHEAD, MIN_WINDOW, FlowIn, FlowOut

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_sender_blocks_when_the_window_is_full_and_resumes_on_acknowledgement() -> None:
    out = FlowOut(window=10_000)
    positions = [out.advance(1000) for _ in range(7)]
    assert positions == [(1000 + DATAGRAM_OVERHEAD) * i for i in range(1, 8)]
    assert out.blocked  # 7 * 1512 >= 10_000
    assert out.on_window(positions[2], 10_000) is True  # room again
    assert not out.blocked
    assert out.in_flight == positions[6] - positions[2]


def test_acknowledgements_cannot_run_ahead_or_shrink_the_window_to_nothing() -> None:
    out = FlowOut(window=MIN_WINDOW)
    out.advance(100)
    out.on_window(10**12, 0)  # acknowledges more than was sent, grants nothing
    assert out.acked == out.sent
    assert out.window == MIN_WINDOW
    out.on_window(5, MIN_WINDOW)  # an old acknowledgement does not move it back
    assert out.acked == out.sent


def test_receiver_acknowledges_the_highest_position_so_loss_never_stalls() -> None:
    fin = FlowIn(source=7)
    for pos in (1512, 4536, 3024):  # the datagram at 3024 came late, one was lost
        fin.on_position(pos)
    assert fin.unacked == 4536
    assert fin.take_ack() == 4536
    assert fin.unacked == 0


def test_light_traffic_carries_no_position_and_a_stream_does() -> None:
    header = wire.encode_header(3, 42)
    q = OutQueue(header, limit=600, flow=FlowOut(window=10**9))
    q.add(wire.frame(wire.MSG, wire.encode_msg_body(b"s", b"", b"", (), b"x")))
    (d,) = q.take()
    assert wire.frame_spans(d)[0][0] == wire.MSG  # far from the window: no POSITION frame
    assert q.flow.sent == len(d) + DATAGRAM_OVERHEAD  # but counted all the same


def test_near_the_window_every_datagram_opens_with_its_position() -> None:
    header = wire.encode_header(3, 42)
    q = OutQueue(header, limit=600, flow=FlowOut(window=0))
    for i in range(20):
        q.add(wire.frame(wire.MSG, wire.encode_msg_body(b"s", b"", b"", (), bytes(100 + i))))
    datagrams = q.take()
    assert len(datagrams) > 3 and all(len(d) <= 600 for d in datagrams)
    positions = []
    for d in datagrams:
        flags, position = wire.read_position(d, wire.HEADER_SIZE)
        assert flags == 0
        positions.append(position)
        spans = wire.frame_spans(d)
        assert spans[0][0] == wire.POSITION and all(t == wire.MSG for t, *_ in spans[1:])
    expected, total = [], 0
    for d in datagrams:
        total += len(d) + DATAGRAM_OVERHEAD
        expected.append(total)
    assert positions == expected
    probe = q.probe()
    assert wire.read_position(probe, wire.HEADER_SIZE) == (1, q.flow.sent)


_SUBSCRIBER = textwrap.dedent(
    """
    import asyncio, hashlib, json, sys, time
    import insane
    from insane.ops.metrics import STORE

    async def main(domain, count):
        s = await insane.connect({"domain": domain}, name="slow-sub")
        got, order_ok, last, digest = 0, True, -1, hashlib.sha256()
        done = asyncio.Event()

        async def on_msg(msg):
            nonlocal got, order_ok, last
            seq = int.from_bytes(msg.data[:4], "little")
            order_ok = order_ok and seq == last + 1
            last = seq
            digest.update(msg.data)
            got += 1
            if got % 64 == 0:
                time.sleep(0.001)  # a slow consumer: about a third of the publisher's pace
            if got == count:
                done.set()

        await s.subscribe("flow.data", cb=on_msg)
        await s.flush()
        print("ready", flush=True)
        try:
            await asyncio.wait_for(done.wait(), 90)
        except TimeoutError:
            pass
        dropped = STORE.total("insane_dropped")
        print(json.dumps({"got": got, "in_order": order_ok, "sha": digest.hexdigest(),
                          "dropped": dropped}), flush=True)
        await s.close()

    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
    """
)

_PUBLISHER = textwrap.dedent(
    """
    import asyncio, hashlib, json, sys
    import insane
    from insane.ops.metrics import STORE

    async def main(domain, count):
        s = await insane.connect({"domain": domain}, name="fast-pub")
        while not s.peers:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        digest = hashlib.sha256()
        for i in range(count):
            size = 1024 if i % 3 else 64
            data = i.to_bytes(4, "little") + bytes((i + k) % 251 for k in range(size - 4))
            digest.update(data)
            await s.publish("flow.data", data)
        await s.flush()
        stalls = STORE.total("insane_window_stalls")
        print(json.dumps({"sha": digest.hexdigest(), "stalls": stalls}), flush=True)
        await s.close()

    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
    """
)


def test_fast_publisher_and_slow_subscriber_lose_nothing() -> None:
    """60,000 messages of 64 B and 1 KiB, published as fast as Python can, to a subscriber
    that takes a third of that pace: every one arrives, in order, byte-identical, with no
    datagram dropped anywhere, because the publisher waits for the subscriber's window."""
    domain, count = random.randrange(1, 2**32), 60_000
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop("INSANE_CONFIG", None)
    sub = subprocess.Popen(
        [sys.executable, "-c", _SUBSCRIBER, str(domain), str(count)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert sub.stdout is not None
        assert sub.stdout.readline().strip() == "ready"
        pub = subprocess.run(
            [sys.executable, "-c", _PUBLISHER, str(domain), str(count)],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=120,
            check=True,
        )
        sent = json.loads(pub.stdout.strip().splitlines()[-1])
        got = json.loads(sub.stdout.readline())
    finally:
        sub.kill()
        sub.wait()
    assert got["got"] == count
    assert got["in_order"]
    assert got["sha"] == sent["sha"]
    assert got["dropped"] == 0
    assert sent["stalls"] > 0  # flow control did engage


async def _stalled_pair(overflow: str, stall: float = 30.0) -> tuple[Any, Any, Any]:
    """Two sessions; the subscriber's socket is no longer read (a hung process), so the
    publisher's window toward it fills."""
    import insane

    cfg = {
        "domain": random.randrange(1, 2**32),
        "channels": {"f.>": {"qos": ["reliable"], "overflow": overflow}},
        "reliability": {"stall_timeout": stall},
    }
    a = await insane.connect(cfg, name="pub")
    b = await insane.connect(cfg, name="sub")
    sub = await b.subscribe("f.x")
    await a.flush()
    udp = b._driver.udp
    udp._loop.remove_reader(udp._sock.fileno())  # stop reading: nothing is acknowledged
    return a, b, sub


async def _fill(a: Any) -> None:
    chunk = b"x" * 60_000
    for _ in range(200):  # 12 MB: far beyond the 4 MiB window
        if a._node.backpressure:
            return
        await a.publish("f.x", chunk)
    raise AssertionError("the window never filled")


async def test_overflow_block_waits_for_room_and_goes_on_when_the_receiver_reads() -> None:
    import asyncio

    a, b, _sub = await _stalled_pair("block")
    try:
        await _fill(a)
        blocked = asyncio.ensure_future(a.publish("f.x", b"last"))
        await asyncio.sleep(0.3)
        assert not blocked.done()  # waiting for room
        udp = b._driver.udp
        udp._loop.add_reader(udp._sock.fileno(), udp._readable)  # reads again
        await asyncio.wait_for(blocked, 10)
    finally:
        await a.close()
        await b.close()


async def test_overflow_drop_and_error() -> None:
    import insane

    for overflow in ("drop", "error"):
        a, b, _sub = await _stalled_pair(overflow)
        try:
            await _fill(a)
            before = STORE.total("insane_dropped", reason="window_full")
            if overflow == "drop":
                await a.publish("f.x", b"dropped")  # returns at once
                assert STORE.total("insane_dropped", reason="window_full") == before + 1
            else:
                with pytest.raises(insane.errors.OutboundBufferLimitError):
                    await a.publish("f.x", b"refused")
        finally:
            await a.close()
            await b.close()


async def test_a_destination_that_acknowledges_nothing_stops_blocking_after_stall_timeout() -> None:
    import asyncio

    a, b, _sub = await _stalled_pair("block", stall=0.3)
    # and no more heartbeats: as good as dead (a SIGKILLed process)
    driver = b._driver
    driver.arm = lambda: None
    if driver._timer is not None:
        driver._timer.cancel()
    try:
        await _fill(a)
        t0 = asyncio.get_running_loop().time()
        await asyncio.wait_for(a.publish("f.x", b"goes on"), 5)
        assert 0.2 < asyncio.get_running_loop().time() - t0 < 2.0
    finally:
        await a.close()
        await b.close()
