"""What the network sends that is not a peer's, with ``security: none``: strangers create no
state and get no answer, forged and damaged datagrams are each counted once, under one
reason, and the streams they imitate are not disturbed."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator

import pytest

import insane
from insane.control.discovery import ADMIT_BURST, ADMIT_RATE
from insane.ops.metrics import STORE
from insane.protocol import wire
from insane.protocol.wire import InterestEntry


def dropped(reason: str) -> float:
    return STORE.value("insane_dropped", "udp", reason)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[insane.Session, insane.Session]]:
    domain = random.randrange(1, 2**32)
    a = await insane.connect({"domain": domain}, name="a")
    b = await insane.connect({"domain": domain}, name="b")
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def forged(domain: int, sender: int, i: int) -> bytes:
    """A well-formed datagram from ``sender``: interest, heartbeats, messages, a stream."""
    head = wire.encode_header(domain, sender)
    kind = i % 5
    if kind == 0:
        body = wire.encode_interest_body(1, [InterestEntry(1, ">", "")])
        return head + wire.frame(wire.INTEREST, body)
    if kind == 1:
        return head + wire.frame(wire.HEARTBEAT, wire.heartbeat_body(1, 1, 0, 0))
    if kind == 2:
        msg = wire.encode_msg_body(b"orders.new", b"", b"", (), b"forged")
        return head + wire.frame(wire.MSG, msg)
    if kind == 3:
        d = bytearray(head + wire.seq_frame(2, 7, 1))
        d += wire.frame(wire.MSG, wire.encode_msg_body(b"orders.new", b"", b"", (), b"x"))
        wire.write_seq(d, wire.HEADER_SIZE, 2, 7, 1)
        return bytes(d)
    return head + wire.frame(wire.NACK, wire.nack_body(2, 7, [(1, 100)]))


async def test_forged_frames_from_strangers_create_nothing_and_get_no_answer(
    pair: tuple[insane.Session, insane.Session],
) -> None:
    a, b = pair
    sub = await b.subscribe("orders.>")
    await a.flush()
    peers = sorted(p.peer_id for p in b.peers)
    before = dropped("unknown_peer") + dropped("kernel_rcvbuf")
    flooder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flooder.bind(("127.0.0.1", 0))
    flooder.setblocking(False)
    n = 20000
    try:
        for i in range(n):
            flooder.sendto(forged(b.domain, random.getrandbits(64) | 1, i), b.address)
            if i % 500 == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(1.2)  # (the kernel's own drops are read every heartbeat interval)
        answers = 0
        try:
            while True:
                flooder.recv(65536)
                answers += 1
        except BlockingIOError:
            pass
    finally:
        flooder.close()
    assert answers == 0
    assert sorted(p.peer_id for p in b.peers) == peers and len(b._discovery.peers) == 1
    assert dropped("unknown_peer") + dropped("kernel_rcvbuf") - before == n  # each once
    with pytest.raises(insane.errors.TimeoutError):
        await sub.next_msg(timeout=0.2)  # no forged message was delivered
    await a.publish("orders.real", b"ok")
    assert (await sub.next_msg(timeout=2)).data == b"ok"


async def test_forged_announcements_admit_nobody_and_answers_are_bounded(
    pair: tuple[insane.Session, insane.Session],
) -> None:
    """Announcements from made-up ids at one address: each gets at most a cookie (none is
    echoed, so nobody is admitted), and the answers stop at the admission rate."""
    _a, b = pair
    peers = len(b._discovery.peers)
    before = dropped("too_many_peers")
    flooder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flooder.bind(("127.0.0.1", 0))
    flooder.setblocking(False)
    n = 2000
    body = wire.frame(wire.ANNOUNCE, wire.announce_body({"reply": True}))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        for i in range(n):
            sender = random.getrandbits(64) | 1
            flooder.sendto(wire.encode_header(b.domain, sender) + body, b.address)
            if i % 200 == 0:
                await asyncio.sleep(0)
        await asyncio.sleep(0.5)
        elapsed = loop.time() - t0
        answers = 0  # ANNOUNCE frames (several may share a datagram)
        try:
            while True:
                data = flooder.recv(65536)
                answers += sum(1 for f in wire.frame_spans(data) if f[0] == wire.ANNOUNCE)
        except BlockingIOError:
            pass
    finally:
        flooder.close()
    assert len(b._discovery.peers) == peers
    assert answers <= ADMIT_BURST + ADMIT_RATE * elapsed + 1, (answers, elapsed)
    assert answers + dropped("too_many_peers") - before == n


async def test_damaged_datagrams_are_counted_once_and_the_stream_is_intact(
    pair: tuple[insane.Session, insane.Session],
) -> None:
    """Garbage that looks like it opens with a POSITION frame is one drop, not two; a
    truncated copy of a real datagram of a reliable stream is ``truncated``, and the real one,
    arriving after it, is still delivered (the copy did not take its sequence number)."""
    a, b = pair
    sub = await b.subscribe("data")
    await a.flush()
    garbage = bytearray(random.randbytes(64))
    garbage[16] = wire.POSITION
    before = {r: dropped(r) for r in ("foreign", "truncated", "malformed", "duplicate")}
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        raw.sendto(bytes(garbage), b.address)
        # The next datagram a sends b, built as the session would, and its truncated copy
        # sent first from a's own address (a copy cut short on the way).
        peer = next(p for p in a._discovery.peers.values())
        q = a._node._dest_queue(peer, a._channels.get("data"))
        stream = q.stream
        assert stream is not None
        msg = wire.encode_msg_body(b"data", b"", b"", (), b"real" * 100)
        q.add(wire.frame(wire.MSG, msg))
        [datagram] = q.take()
        a._driver.udp.socket.sendto(datagram[:-50], b.address)
        await asyncio.sleep(0.05)
        a._driver.udp.socket.sendto(datagram, b.address)
    finally:
        raw.close()
    got = await sub.next_msg(timeout=2)
    assert got.data == b"real" * 100
    after = {r: dropped(r) for r in before}
    assert after["foreign"] - before["foreign"] == 1  # the garbage, once
    assert after["truncated"] - before["truncated"] == 1
    assert after["malformed"] == before["malformed"]
