"""The public API's semantics, with sessions in one process (they still talk over UDP)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

import insane
from insane import errors


@pytest.fixture
async def pair() -> AsyncIterator[tuple[insane.Session, insane.Session]]:
    cfg = {"domain": random.randrange(1, 2**32)}
    a = await insane.connect(cfg, name="a")
    b = await insane.connect(cfg, name="b")
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_sessions_in_one_process_find_each_other(
    pair: tuple[insane.Session, insane.Session],
) -> None:
    a, b = pair
    assert [p.name for p in a.peers] == ["b"]
    assert [p.name for p in b.peers] == ["a"]
    assert a.peer_id != b.peer_id


async def test_async_iteration_and_next_msg_timeout(
    pair: tuple[insane.Session, insane.Session],
) -> None:
    a, b = pair
    sub = await b.subscribe("x.*")
    with pytest.raises(errors.TimeoutError):
        await sub.next_msg(timeout=0.05)
    for i in range(3):
        await a.publish(f"x.{i}", str(i).encode())
    got = []
    async for msg in sub.messages:
        got.append((msg.subject, msg.data))
        if len(got) == 3:
            break
    assert got == [("x.0", b"0"), ("x.1", b"1"), ("x.2", b"2")]


async def test_local_delivery_within_one_session(
    pair: tuple[insane.Session, insane.Session],
) -> None:
    a, _ = pair
    sub = await a.subscribe("self")
    await a.publish("self", b"me")
    assert (await sub.next_msg(1)).data == b"me"


async def test_unsubscribe_with_limit(pair: tuple[insane.Session, insane.Session]) -> None:
    a, b = pair
    sub = await b.subscribe("lim")
    await sub.unsubscribe(limit=2)
    for i in range(5):
        await a.publish("lim", bytes([i]))
    assert (await sub.next_msg(1)).data == b"\x00"
    assert (await sub.next_msg(1)).data == b"\x01"
    with pytest.raises(errors.TimeoutError):  # as nats-py: nothing more comes, it times out
        await sub.next_msg(0.2)
    assert sub.delivered == 2
    await a.flush()
    assert a._node.router.plan("lim").empty  # the peer has withdrawn its interest


async def test_callback_subscription_and_respond(
    pair: tuple[insane.Session, insane.Session],
) -> None:
    a, b = pair

    async def double(msg: insane.Msg) -> None:
        await msg.respond(msg.data * 2)

    await b.subscribe("svc.double", cb=double)
    reply = await a.request("svc.double", b"ab", timeout=1)
    assert reply.data == b"abab"
    with pytest.raises(errors.NoRespondersError):
        await a.request("svc.none", b"")


async def test_request_times_out_when_responder_is_silent(
    pair: tuple[insane.Session, insane.Session],
) -> None:
    a, b = pair
    await b.subscribe("svc.silent")
    with pytest.raises(errors.TimeoutError):
        await a.request("svc.silent", b"", timeout=0.1)


async def test_bad_subjects_raise(pair: tuple[insane.Session, insane.Session]) -> None:
    a, _ = pair
    with pytest.raises(errors.BadSubjectError):
        await a.publish("a.*", b"")
    with pytest.raises(errors.BadSubjectError):
        await a.publish("", b"")
    with pytest.raises(errors.BadSubjectError):
        await a.subscribe("a..b")
    with pytest.raises(insane.SubjectError):  # BadSubjectError is a SubjectError too
        await a.subscribe("a.>.b")


async def test_drain_delivers_pending_then_closes(
    pair: tuple[insane.Session, insane.Session],
) -> None:
    a, b = pair
    seen: list[bytes] = []

    async def slow(msg: insane.Msg) -> None:
        await asyncio.sleep(0.001)
        seen.append(msg.data)

    await b.subscribe("d", cb=slow)
    for i in range(50):
        await a.publish("d", str(i).encode())
    await a.flush()
    await asyncio.sleep(0.05)
    await b.drain()
    assert seen == [str(i).encode() for i in range(50)]
    assert b.is_closed
    with pytest.raises(errors.ConnectionClosedError):
        await b.publish("d", b"")


async def test_closed_session_refuses_work(pair: tuple[insane.Session, insane.Session]) -> None:
    a, b = pair
    sub = await b.subscribe("c")
    await b.close()
    with pytest.raises(errors.ConnectionClosedError):
        await b.publish("c", b"")
    with pytest.raises(errors.ConnectionClosedError):
        await b.subscribe("c")
    with pytest.raises(errors.ConnectionClosedError):
        await sub.next_msg(0.1)
    await asyncio.sleep(0.05)
    assert b.peer_id not in {p.peer_id for p in a.peers}  # BYE took it out at once


async def test_max_payload_enforced(pair: tuple[insane.Session, insane.Session]) -> None:
    a, _ = pair
    with pytest.raises(errors.MaxPayloadError):
        await a.publish("big", b"x" * (a.max_payload + 1))


async def test_slow_consumer_is_reported(pair: tuple[insane.Session, insane.Session]) -> None:
    a, b = pair
    reported: list[Exception] = []
    b.error_cb = reported.append
    sub = await b.subscribe("slow", pending_msgs_limit=5)
    for i in range(20):
        await a.publish("slow", bytes([i]))
    await a.flush()
    await asyncio.sleep(0.1)
    assert sub.pending_msgs == 5
    assert sub.dropped == 15
    assert isinstance(reported[0], errors.SlowConsumerError)


async def test_an_engine_there_is_not_fails_connect_before_anything_opens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    opened: list[object] = []
    real = socket.socket
    monkeypatch.setattr(socket, "socket", lambda *a, **k: opened.append(a) or real(*a, **k))
    monkeypatch.setenv("INSANE_ENGINE", "warp")
    with pytest.raises(insane.ConfigError, match=r"INSANE_ENGINE \(environment\): expected one of"):
        await insane.connect({"domain": random.randrange(1, 2**32)})
    assert opened == []
    monkeypatch.setenv("INSANE_ENGINE", "python")
    async with await insane.connect({"domain": random.randrange(1, 2**32)}) as s:
        assert s.engine == "python"


async def test_without_the_native_engine_built_python_stands_in_and_native_fails_fast(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import insane.engine

    monkeypatch.setattr(insane.engine, "_module", None)
    monkeypatch.setattr(insane.engine, "_error", ImportError("the native engine was not built (x)"))
    monkeypatch.setenv("INSANE_ENGINE", "")
    async with await insane.connect({"domain": random.randrange(1, 2**32)}) as s:
        assert s.engine == "python"
    monkeypatch.setenv("INSANE_ENGINE", "native")
    with pytest.raises(
        insane.ConfigError,
        match=r"^INSANE_ENGINE \(environment\): native, but the native engine was not built \(x\)$",
    ):
        await insane.connect({"domain": random.randrange(1, 2**32)})


async def test_connect_as_context_manager() -> None:
    async with insane.connect({"domain": random.randrange(1, 2**32)}) as s:
        assert not s.is_closed
    assert s.is_closed


async def test_malformed_datagrams_are_counted_and_dropped(
    pair: tuple[insane.Session, insane.Session],
) -> None:
    import socket

    from insane.ops.metrics import STORE
    from insane.protocol import wire

    a, b = pair
    sub = await b.subscribe("ok")
    before = {
        r: STORE.value("insane_dropped", "udp", r)
        for r in ("foreign", "truncated", "foreign_domain", "unknown_peer")
    }
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(b"garbage!" * 4, b.address)
        s.sendto(wire.encode_header(b.domain, a.peer_id) + b"\x05\x00\xff\xff", b.address)
        s.sendto(wire.encode_header(b.domain, 42) + wire.frame(wire.HEARTBEAT, b""), b.address)
        s.sendto(wire.encode_header(b.domain ^ 1, 42) + wire.frame(wire.BYE, b""), b.address)
    finally:
        s.close()
    await a.publish("ok", b"still fine")
    assert (await sub.next_msg(1)).data == b"still fine"
    after = {r: STORE.value("insane_dropped", "udp", r) for r in before}
    assert all(after[r] == before[r] + 1 for r in before), (before, after)
