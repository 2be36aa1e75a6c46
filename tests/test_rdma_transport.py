"""The RDMA transport on its own (insane/transports/rdma/transport.py), two of them on a
simulated fabric (tests/verbs_sim.py): credits with the fewest buffers allowed, the readiness
rule, the peer's buffer size, bad messages, and what a dropped connection gives back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest
from verbs_sim import Fabric

from insane.ops.metrics import STORE
from insane.transports.base import Address, Datagram, ReceiveCallback, Transport
from insane.transports.rdma.transport import HEADER_SIZE, RdmaTransport

A, B = ("10.0.0.1", 4000), ("10.0.0.2", 4000)


class Recorder(Transport):
    """Stands in for the kernel socket: what the RDMA transport hands it is kept."""

    name = "udp"

    def __init__(self) -> None:
        self.sent: list[Datagram] = []

    async def start(self, on_receive: ReceiveCallback) -> None:
        pass

    def send_batch(self, datagrams: Sequence[Datagram]) -> int:
        self.sent += datagrams
        return len(datagrams)

    @property
    def local_address(self) -> Address:
        return A

    @property
    def max_datagram(self) -> int:
        return 1472

    async def close(self) -> None:
        pass


class Side:
    def __init__(self, fabric: Fabric, addr: Address, **kw: int) -> None:
        self.fallback = Recorder()
        self.t = RdmaTransport(addr, fallback=self.fallback, opener=fabric.opener, **kw)
        self.got: list[tuple[bytes, Address]] = []

    async def start(self, limit: int = 1472) -> None:
        await self.t.start(self.got.extend)
        self.t.set_datagram_limit(limit)


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("timed out")
        await asyncio.sleep(0.001)


async def connect(a: Side, b: Side) -> None:
    """As RdmaLinks does it: a offers, b connects on the offer and answers, a connects and
    learns b is ready."""
    ep_a = a.t.prepare(B)
    ep_b = b.t.prepare(A)
    b.t.connect(A, ep_a)
    a.t.connect(B, ep_b)
    a.t.peer_ready(B)


@pytest.fixture
def fabric() -> Fabric:
    return Fabric()


async def test_fewest_buffers_many_datagrams_no_overrun(fabric: Fabric) -> None:
    a, b = Side(fabric, A, recv_depth=3, send_depth=2), Side(fabric, B, recv_depth=3)
    await a.start()
    await b.start()
    await connect(a, b)
    sent = [b"d%05d" % i * (1 + i % 200) for i in range(3000)]
    for i in range(0, len(sent), 50):
        a.t.send_batch([(d, B) for d in sent[i : i + 50]])
    await until(lambda: len(b.got) == len(sent))
    assert [d for d, _ in b.got] == sent and {src for _, src in b.got} == {A}
    assert (fabric.rnr, fabric.not_ready) == (0, 0)
    # b sends nothing back, so its credits went back in updates of their own
    conn = b.t._conns[A]
    assert conn.credits is not None and conn.credits.sent_updates > 0
    await until(lambda: a.t.backlog_bytes == 0)
    await a.t.close()
    await b.t.close()


async def test_the_answering_side_waits_for_a_first_message(fabric: Fabric) -> None:
    a, b = Side(fabric, A), Side(fabric, B)
    await a.start()
    await b.start()
    ep_a = a.t.prepare(B)
    ep_b = b.t.prepare(A)
    b.t.connect(A, ep_a)  # b answers a's offer: a's queue pair is not connected yet
    b.t.send_batch([(b"early", A)])
    assert b.t.backlog_bytes == 5  # held: sending now would hit a queue pair in INIT
    a.t.connect(B, ep_b)
    await asyncio.sleep(0.01)
    assert a.got == []
    a.t.peer_ready(B)  # a got the answer: it says hello, and b lets its datagram go
    await until(lambda: a.got == [(b"early", B)])
    assert fabric.not_ready == 0
    await a.t.close()
    await b.t.close()


async def test_a_peer_with_smaller_buffers_is_refused(fabric: Fabric) -> None:
    a, b = Side(fabric, A), Side(fabric, B)
    await a.start(limit=9000)
    await b.start(limit=1472)
    ep_b = b.t.prepare(A)
    a.t.prepare(B)
    with pytest.raises(ValueError, match="receive buffers hold 1476 bytes, ours 9004"):
        a.t.connect(B, ep_b)
    await a.t.close()
    await b.t.close()


async def test_a_truncated_message_is_counted_and_the_connection_goes_on(fabric: Fabric) -> None:
    a, b = Side(fabric, A), Side(fabric, B)
    await a.start()
    await b.start()
    await connect(a, b)
    before = STORE.value("insane_dropped", "rdma", "truncated")
    qp = a.t._conns[B].qp
    region = a.t._send_region
    assert region is not None
    region.write(0, (b"\x00\x01",))  # shorter than the header: from a broken or hostile peer
    qp.post_send(region, 0, 2, 1 << 62 | 0x7FFF_0000_0000)  # (a wr_id no slot has: stale)
    a.t.send_batch([(b"after", B)])
    await until(lambda: b.got == [(b"after", A)])
    assert STORE.value("insane_dropped", "rdma", "truncated") - before == 1
    assert HEADER_SIZE == 4
    await a.t.close()
    await b.t.close()


async def test_drop_gives_back_what_did_not_leave_and_counts_what_was_in_flight(
    fabric: Fabric,
) -> None:
    a, b = Side(fabric, A, recv_depth=4), Side(fabric, B, recv_depth=4)
    await a.start()
    await b.start()
    await connect(a, b)
    # 4 credits: one went on the hello, one is the reserve, so two datagrams leave; a has not
    # seen their completions yet when it drops the connection
    a.t.send_batch([(b"x%d" % i, B) for i in range(10)])
    unsent, lost = a.t.drop(B)
    assert lost == 2 and unsent == [b"x%d" % i for i in range(2, 10)]
    assert not a.t.connected(B)
    a.t.send_batch([(b"later", B)])  # no connection: the kernel's way
    assert a.fallback.sent == [(b"later", B)]
    await asyncio.sleep(0.01)  # completions of the dropped connection are stale: ignored
    await a.t.close()
    await b.t.close()


async def test_a_broken_connection_is_reported_once(fabric: Fabric) -> None:
    a, b = Side(fabric, A), Side(fabric, B)
    failures: list[tuple[Address, str]] = []
    a.t.on_failure = lambda addr, why: failures.append((addr, why))
    await a.start()
    await b.start()
    await connect(a, b)
    fabric.break_connection(a.t._conns[B].qp)  # type: ignore[arg-type]
    a.t.send_batch([(b"y", B)])
    await until(lambda: bool(failures))
    await asyncio.sleep(0.01)
    assert len(failures) == 1 and failures[0][0] == B
    before = STORE.value("insane_dropped", "rdma", "rdma_error")
    assert before >= 1
    await a.t.close()
    await b.t.close()


async def test_connections_beyond_what_the_completion_queue_holds_are_refused(
    fabric: Fabric, monkeypatch: pytest.MonkeyPatch
) -> None:
    from insane.transports.rdma import transport as rdma

    monkeypatch.setattr(rdma, "MAX_CONNECTIONS", 2)
    a = Side(fabric, A)
    await a.start()
    a.t.prepare(("10.0.0.2", 1))
    a.t.prepare(("10.0.0.3", 1))
    with pytest.raises(OSError, match="already 2 RDMA connections"):
        a.t.prepare(("10.0.0.4", 1))
    a.t.prepare(("10.0.0.3", 1))  # the same peer again replaces its connection
    await a.t.close()


async def test_a_hello_waits_for_a_free_send_slot_rather_than_being_skipped(
    fabric: Fabric,
) -> None:
    """a's one send slot is busy when b answers: the HELLO goes once the slot is free, so b,
    which waits for a first message before it sends, is not left waiting for ever."""
    C = ("10.0.0.3", 4000)
    a = Side(fabric, A, send_depth=1)
    b, c = Side(fabric, B), Side(fabric, C)
    for s in (a, b, c):
        await s.start()
    for peer, addr in ((b, B), (c, C)):
        ep_a = a.t.prepare(addr)
        ep_peer = peer.t.prepare(A)
        peer.t.connect(A, ep_a)
        a.t.connect(addr, ep_peer)
    a.t.peer_ready(C)  # a's HELLO to c takes the one slot until its completion is read
    b.t.send_batch([(b"from b", A)])
    a.t.peer_ready(B)  # no free slot now
    await until(lambda: a.got == [(b"from b", B)])
    assert fabric.not_ready == 0
    for s in (a, b, c):
        await s.t.close()
