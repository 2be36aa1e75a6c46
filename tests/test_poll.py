"""consumption: poll over kernel UDP: busy-polling for replies and after deliveries, and the
pause when polling does not pay (the transport's spin, the session's use of it)."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import pytest

import insane

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def record_spins(session: insane.Session) -> list[bool]:
    """Make the session's transport record what each poll (spin) returned."""
    spins: list[bool] = []
    real_spin = session._driver.udp.spin

    def spin(*args: Any, **kw: Any) -> bool:
        spins.append(real_spin(*args, **kw))
        return spins[-1]

    session._driver.udp.spin = spin  # type: ignore[method-assign]
    return spins


@pytest.fixture
async def polling_pair() -> AsyncIterator[tuple[insane.Session, insane.Session]]:
    cfg = {
        "domain": random.randrange(1, 2**32),
        "channels": {"fast.>": {"qos": ["reliable", "poll"]}},
    }
    a = await insane.connect(cfg, name="a")
    b = await insane.connect(cfg, name="b")
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_poll_subscription_switches_the_socket_to_polling(
    polling_pair: tuple[insane.Session, insane.Session],
) -> None:
    _a, b = polling_pair
    plain = await b.subscribe("slow.x")
    assert b._driver.udp.poll_idle == 0  # consumption: low (the default) never polls
    polled = await b.subscribe("fast.x")
    assert b._driver.udp.poll_idle > 0
    await polled.unsubscribe()
    assert b._driver.udp.poll_idle == 0
    await plain.unsubscribe()


_RESPONDER = textwrap.dedent(
    """
    import asyncio, sys
    import insane

    async def main():
        cfg = {"domain": int(sys.argv[1]), "channels": {"fast.>": {"qos": ["poll"]}}}
        async with insane.connect(cfg, name="responder") as s:
            async def echo(msg):
                await msg.respond(msg.data)
            await s.subscribe("fast.echo", cb=echo)
            await s.flush()
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())
    """
)


async def test_requests_on_a_poll_channel_are_answered_by_polling_across_processes() -> None:
    domain = random.randrange(1, 2**32)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _RESPONDER,
        str(domain),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=REPO),
    )
    try:
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 20)).strip() == b"ready"
        cfg = {"domain": domain, "channels": {"fast.>": {"qos": ["poll"]}}}
        async with insane.connect(cfg, name="requester") as a:
            spins = record_spins(a)
            for i in range(200):
                reply = await a.request("fast.echo", str(i).encode(), timeout=2)
                assert reply.data == str(i).encode()
            # Polling caught replies (on one shared CPU it may pause, and the loop takes over).
            assert any(spins)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        await asyncio.wait_for(proc.wait(), 10)


async def test_in_one_process_polling_cannot_pay_and_pauses(
    polling_pair: tuple[insane.Session, insane.Session],
) -> None:
    """The responder shares the requester's event loop: it cannot answer while the requester
    polls, so polling pauses after eight empty polls, and every request is still answered."""
    a, b = polling_pair

    async def echo(msg: insane.Msg) -> None:
        await msg.respond(msg.data)

    await b.subscribe("fast.echo", cb=echo)
    await a.flush()
    spins = record_spins(a)
    for i in range(20):
        assert (await a.request("fast.echo", str(i).encode(), timeout=1)).data == str(i).encode()
    assert spins == [False] * 8


async def test_polling_pauses_when_replies_take_longer_than_its_budget(
    polling_pair: tuple[insane.Session, insane.Session],
) -> None:
    a, b = polling_pair

    async def slow(msg: insane.Msg) -> None:
        await asyncio.sleep(0.01)  # far beyond the 2 ms a request polls for
        await msg.respond(b"late")

    await b.subscribe("fast.slow", cb=slow)
    await a.flush()
    for _ in range(8):
        assert (await a.request("fast.slow", b"", timeout=1)).data == b"late"
    assert a._poll_paused_until > asyncio.get_running_loop().time()  # eight misses: paused
    assert (await a.request("fast.slow", b"", timeout=1)).data == b"late"  # still answered
