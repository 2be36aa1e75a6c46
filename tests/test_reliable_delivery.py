"""Reliable channels through a lossy path, end to end through two sessions: the sender's
transport drops, duplicates and delays (reorders) datagrams at random, and every message still
arrives once, in order where ordered, byte-identical; a best-effort channel shows its loss."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

import insane
from insane.ops.metrics import STORE


def make_lossy(
    session: insane.Session, rng: random.Random, loss: float, dup: float, reorder: float
) -> dict[str, int]:
    """Wrap a session's transport so that what it sends is dropped, duplicated or delayed."""
    udp = session._driver.udp
    real = udp.send_batch
    loop = asyncio.get_running_loop()
    stats = {"sent": 0, "dropped": 0, "duplicated": 0, "delayed": 0}

    def send_batch(datagrams: Any) -> int:
        now: list[Any] = []
        for d in datagrams:
            stats["sent"] += 1
            if rng.random() < loss:
                stats["dropped"] += 1
                continue
            copies = 2 if rng.random() < dup else 1
            stats["duplicated"] += copies - 1
            for _ in range(copies):
                if rng.random() < reorder:
                    stats["delayed"] += 1
                    loop.call_later(rng.random() * 0.003, real, [d])
                else:
                    now.append(d)
        real(now)
        return len(datagrams)

    udp.send_batch = send_batch  # type: ignore[method-assign]
    return stats


@pytest.fixture
async def pair() -> AsyncIterator[tuple[insane.Session, insane.Session]]:
    cfg = {
        "domain": random.randrange(1, 2**32),
        "channels": {
            "ord.>": {"qos": ["reliable", "ordered"]},
            "rel.>": {"qos": ["reliable", "unordered"]},
            "be.>": {"qos": ["best_effort"]},
        },
    }
    a = await insane.connect(cfg, name="pub")
    b = await insane.connect(cfg, name="sub")
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def payload(i: int) -> bytes:
    size = [64, 300, 1500, 9000, 70_000][i % 5] if i % 50 else 300_000  # fragments too
    return i.to_bytes(4, "big") + bytes((i + k) % 251 for k in range(size - 4))


async def collect(sub: insane.Subscription, n: int, timeout: float) -> list[bytes]:
    got: list[bytes] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(got) < n:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            break
        try:
            got.append((await sub.next_msg(timeout=remaining)).data)
        except insane.errors.TimeoutError:
            break
    return got


@pytest.mark.parametrize("subject", ["ord.x", "rel.x"])
async def test_every_message_arrives_once_through_loss_duplication_and_reordering(
    pair: tuple[insane.Session, insane.Session], subject: str
) -> None:
    a, b = pair
    errors: list[Exception] = []
    b.error_cb = errors.append
    sub = await b.subscribe(subject)
    await a.flush()
    rng = random.Random(1234)
    stats = make_lossy(a, rng, loss=0.1, dup=0.05, reorder=0.25)
    make_lossy(b, rng, loss=0.1, dup=0.05, reorder=0.25)  # NACKs and ACKs suffer too
    sent = [payload(i) for i in range(600)]
    for p in sent:
        await a.publish(subject, p)
    got = await collect(sub, len(sent), timeout=30)
    assert stats["dropped"] > 0 and stats["duplicated"] > 0 and stats["delayed"] > 0
    assert len(got) == len(sent)
    if subject.startswith("ord"):
        assert got == sent  # in order, byte-identical
    else:
        assert sorted(got) == sorted(sent)
        assert (
            hashlib.sha256(b"".join(sorted(got))).digest()
            == hashlib.sha256(b"".join(sorted(sent))).digest()
        )
    assert not errors
    assert STORE.total("insane_retransmissions") > 0


async def test_best_effort_loss_shows_in_the_metrics_and_nothing_is_retransmitted(
    pair: tuple[insane.Session, insane.Session],
) -> None:
    a, b = pair
    sub = await b.subscribe("be.x")
    await a.flush()
    before = STORE.total("insane_retransmissions")
    stats = make_lossy(a, random.Random(5), loss=0.2, dup=0.0, reorder=0.0)
    for i in range(300):
        await a.publish("be.x", i.to_bytes(4, "big"))
        if i % 10 == 0:
            await asyncio.sleep(0)  # one datagram per few messages, so loss is visible
    got = await collect(sub, 300, timeout=1.0)
    assert stats["dropped"] > 0
    assert len(got) < 300  # best effort: what the network lost stays lost
    sent = STORE.total("insane_messages_sent", channel="be.>")
    received = STORE.total("insane_messages_received", channel="be.>")
    assert received < sent  # the loss shows in the metrics
    assert STORE.total("insane_retransmissions") == before


async def test_a_publisher_that_cannot_resend_reports_the_gap() -> None:
    """A retransmit buffer too small for the loss: the subscriber is told what it lost."""
    cfg: dict[str, Any] = {"domain": random.randrange(1, 2**32)}
    a = await insane.connect({**cfg, "reliability": {"retransmit_bytes": 0}}, name="pub")
    b = await insane.connect(cfg, name="sub")
    try:
        await _gap_reported(a, b)
    finally:
        await a.close()
        await b.close()


async def _gap_reported(a: insane.Session, b: insane.Session) -> None:
    errors: list[Exception] = []
    b.error_cb = errors.append
    sub = await b.subscribe("ord.y")
    await a.flush()
    make_lossy(a, random.Random(9), loss=0.3, dup=0.0, reorder=0.0)
    for i in range(200):
        await a.publish("ord.y", i.to_bytes(4, "big"))
        await asyncio.sleep(0)
    got = await collect(sub, 200, timeout=2.0)
    nums = [int.from_bytes(g, "big") for g in got]
    assert nums == sorted(nums) and len(nums) < 200
    lost = [e for e in errors if isinstance(e, insane.errors.MessagesLostError)]
    assert lost and sum(e.count for e in lost) > 0
    assert STORE.total("insane_gaps", result="unrecoverable") > 0
