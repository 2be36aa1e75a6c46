"""Two sessions with RDMA on both ends, over a simulated fabric (tests/verbs_sim.py): everything
of the RDMA transport but pyverbs itself. The set-up goes over the real control plane (kernel
UDP on loopback); the datagrams of `fast` channels go through the transport's queue pairs,
credits and buffers; the fabric checks that no message ever finds no receive buffer or a queue
pair that is not ready. tests/test_rdma_hardware.py runs the same on a real device."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from verbs_sim import Fabric

import insane
from insane import errors
from insane.ops.metrics import STORE
from insane.transports import registry
from insane.transports.base import TransportCapability
from insane.transports.rdma import verbs as rdma_verbs

CHANNELS = {
    "orders.>": {"qos": ["fast", "reliable", "ordered"]},
    "ticks.>": {"qos": ["fast"]},
    "polled.>": {"qos": ["fast", "reliable"], "consumption": "poll"},
}


@pytest.fixture
def fabric(monkeypatch: pytest.MonkeyPatch) -> Fabric:
    f = Fabric()
    monkeypatch.setattr(rdma_verbs, "open_device", f.opener)

    def probe(config: Any) -> TransportCapability:
        on = config.transports.rdma.enabled
        return TransportCapability(
            name="rdma",
            available=on,
            reason="simulated fabric (tests/verbs_sim.py)" if on else "disabled",
            kernel_bypass=True,
            hardware_reliable=True,
            consumption=frozenset({"poll", "low"}),
        )

    monkeypatch.setattr(registry, "_probe_rdma", probe)
    return f


def config(domain: int, **rdma: Any) -> dict[str, Any]:
    return {"domain": domain, "channels": CHANNELS, "transports": {"rdma": rdma}}


@pytest.fixture
async def pair(fabric: Fabric) -> AsyncIterator[tuple[insane.Session, insane.Session]]:
    domain = random.randrange(1, 2**32)
    a = await insane.connect(config(domain), name="a")
    b = await insane.connect(config(domain), name="b")
    try:
        await connected(a, b)
        yield a, b
    finally:
        await a.close()
        await b.close()


async def connected(a: insane.Session, b: insane.Session, timeout: float = 3.0) -> None:
    """Until each session has the other as a peer with an RDMA connection to it."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        links = [s._driver.rdma for s in (a, b)]
        if all(s.peers for s in (a, b)) and all(
            link is not None and link.connected(s.peers[0].peer_id)
            for link, s in zip(links, (a, b), strict=True)
        ):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the RDMA connection was not made")


def rdma_received(channel: str) -> float:
    return STORE.total("insane_messages_received", transport="rdma", channel=channel)


async def test_both_advertise_rdma_and_fast_channels_route_over_it(
    pair: tuple[insane.Session, insane.Session], fabric: Fabric
) -> None:
    a, _b = pair
    (peer,) = a.peers
    assert "rdma" in peer.transports
    route = a.route_for("orders.eu", peer)
    assert (route.transport, route.fallback) == ("rdma", False)
    assert route.reasons[-1].startswith("chose rdma")
    assert a.route_for("ticks.x", peer).transport == "rdma"  # best effort: no other bypass here
    assert a.route_for("plain", peer).transport == "udp"  # datapath: default
    assert len(fabric.qps) == 2  # one queue pair per side


async def test_pub_sub_both_ways_whole_and_in_order(
    pair: tuple[insane.Session, insane.Session], fabric: Fabric
) -> None:
    a, b = pair
    rng = random.Random(9)
    sizes = [rng.choice((0, 1, 64, 1000, 1400, 9000, 70_000)) for _ in range(1500)]
    before = rdma_received("orders.>")
    results = {}
    for src, dst, subject in ((a, b, "orders.ab"), (b, a, "orders.ba")):
        sub = await dst.subscribe(subject)
        sent = [rng.randbytes(n) for n in sizes]
        for data in sent:
            await src.publish(subject, data)
        got = [(await sub.next_msg(5)).data for _ in sent]
        results[subject] = (sent, got)
    for sent, got in results.values():
        assert [hashlib.sha256(d).digest() for d in got] == [
            hashlib.sha256(d).digest() for d in sent
        ]
    assert rdma_received("orders.>") - before >= 2 * len(sizes)
    # the transport never overran a receiver, nor sent before the other side was ready
    assert (fabric.rnr, fabric.not_ready) == (0, 0)
    # reliable channels on RDMA carry no sequence numbers of ours: the adapter's RC does it
    assert STORE.total("insane_nacks", transport="rdma") == 0
    # no reliable stream of ours was opened
    assert a._node.links.tx == {} and b._node.links.tx == {}


async def test_request_reply(pair: tuple[insane.Session, insane.Session], fabric: Fabric) -> None:
    a, b = pair

    async def echo(msg: insane.Msg) -> None:
        await msg.respond(b"re:" + msg.data)

    await b.subscribe("orders.echo", cb=echo)
    for i in range(50):
        reply = await a.request("orders.echo", str(i).encode(), timeout=2)
        assert reply.data == f"re:{i}".encode()
    # poll consumption: the completion queue is busy-polled
    await b.subscribe("polled.echo", cb=echo)
    for i in range(20):
        assert (await a.request("polled.echo", b"%d" % i, timeout=2)).data == b"re:%d" % i
    assert fabric.messages > 0 and (fabric.rnr, fabric.not_ready) == (0, 0)


async def test_an_8_mib_message(
    pair: tuple[insane.Session, insane.Session], fabric: Fabric
) -> None:
    a, b = pair
    sub = await b.subscribe("orders.big")
    big = random.Random(8).randbytes(8 * 1024 * 1024)
    before = fabric.bytes
    await a.publish("orders.big", big)
    msg = await sub.next_msg(10)
    assert hashlib.sha256(msg.data).digest() == hashlib.sha256(big).digest()
    assert fabric.bytes - before >= len(big)  # it went over the fabric, fragmented
    assert (fabric.rnr, fabric.not_ready) == (0, 0)


async def test_a_broken_connection_moves_the_peer_to_kernel_udp(
    pair: tuple[insane.Session, insane.Session], fabric: Fabric
) -> None:
    a, b = pair
    lost: list[Exception] = []
    a.error_cb = lost.append
    sub = await b.subscribe("orders.x")
    for i in range(100):
        await a.publish("orders.x", b"before %d" % i)
    for _ in range(100):
        await sub.next_msg(2)
    fabric.break_connection(next(iter(fabric.qps.values())))
    for i in range(200):  # some of these meet the broken connection
        await a.publish("orders.x", b"after %d" % i)
        if i % 20 == 0:
            await asyncio.sleep(0.01)
    got = []
    with pytest.raises(errors.TimeoutError):
        while True:
            got.append((await sub.next_msg(0.5)).data)
    (peer,) = a.peers
    route = a.route_for("orders.x", peer)
    assert route.transport == "udp" and route.fallback
    assert route.reasons[0].startswith("rdma skipped: the RDMA connection to the peer failed: ")
    # what was handed to the adapter and not confirmed is reported, never silently lost
    reported = sum(e.count for e in lost if isinstance(e, errors.MessagesLostError) and e.sent)
    after = [int(d.split()[1]) for d in got]
    assert after == sorted(set(after))  # in order, none twice
    assert len(after) + reported >= 200
    assert after[-1] == 199  # and the channel goes on, now over kernel UDP
    assert STORE.total("insane_messages_received", transport="udp", channel="orders.>") > 0
    # both sides know: b was told (a REFUSE) and routes a's channels off RDMA too
    (b_peer,) = b.peers
    assert b._driver.rdma is not None and b._driver.rdma.unusable(b_peer)


async def test_a_peer_that_cannot_make_a_queue_pair_refuses_and_both_use_udp(
    fabric: Fabric,
) -> None:
    domain = random.randrange(1, 2**32)
    a = await insane.connect(config(domain), name="a")
    fabric.refuse_queue_pairs = "out of queue pairs (simulated)"
    b = await insane.connect(config(domain), name="b")
    try:
        sub = await b.subscribe("orders.y")
        loop = asyncio.get_running_loop()
        end = loop.time() + 3
        while loop.time() < end and not (a.peers and a._driver.rdma and a._driver.rdma.failed):
            await asyncio.sleep(0.01)
        (peer,) = a.peers
        route = a.route_for("orders.y", peer)
        assert route.transport == "udp"
        assert "cannot make a queue pair: out of queue pairs (simulated)" in route.reasons[0]
        await a.publish("orders.y", b"still delivered")
        assert (await sub.next_msg(2)).data == b"still delivered"
    finally:
        await a.close()
        await b.close()


async def test_a_peer_without_rdma_is_reached_over_udp_at_once(fabric: Fabric) -> None:
    domain = random.randrange(1, 2**32)
    a = await insane.connect(config(domain), name="a")
    b = await insane.connect(config(domain, enabled=False), name="b")
    try:
        sub = await b.subscribe("orders.z")
        (peer,) = a.peers
        assert "rdma" not in peer.transports
        route = a.route_for("orders.z", peer)
        assert route.transport == "udp"
        assert route.reasons[0] == "rdma skipped: peer has no RDMA device"
        await a.publish("orders.z", b"hello")
        assert (await sub.next_msg(2)).data == b"hello"
        assert fabric.qps == {}  # no queue pair was made for it
    finally:
        await a.close()
        await b.close()
