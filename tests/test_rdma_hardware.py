"""RDMA on a real device, through pyverbs: two sessions exchange pub/sub, request/reply and an
8 MiB message over RDMA queue pairs on the first device `ibv_devices` lists (both on its
port, so one host with one RDMA NIC, or a Soft-RoCE rxe device, is enough).

Where `ibv_devices` lists no device these tests skip, saying so, in CI too: no machine of ours
has one (their kernel has no RDMA subsystem). Everything that needs no hardware is tested in
tests/test_rdma_sessions.py (the transport over a simulated fabric), test_rdma_setup.py,
test_credits.py, test_rdma_buffers.py and test_rdma_probe.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import shutil
import subprocess
from collections.abc import AsyncIterator

import pytest

import insane
from insane.ops.metrics import STORE
from insane.transports.registry import probe


def ibv_devices() -> tuple[list[str], str]:
    """The devices `ibv_devices` lists, and what it said."""
    tool = shutil.which("ibv_devices")
    if tool is None:
        return [], "ibv_devices is not installed (Debian: ibverbs-utils)"
    r = subprocess.run([tool], capture_output=True, text=True, timeout=30)
    lines = r.stdout.splitlines()
    names = []
    for i, line in enumerate(lines):
        if line.strip().startswith("------"):
            names = [ln.split()[0] for ln in lines[i + 1 :] if ln.strip()]
            break
    said = " ".join((r.stdout + r.stderr).split()) or f"exit status {r.returncode}"
    return names, said


DEVICES, SAID = ibv_devices()
pytestmark = pytest.mark.skipif(
    not DEVICES, reason=f"no RDMA device: ibv_devices lists none ({SAID})"
)

CHANNELS = {"hw.>": {"qos": ["fast", "reliable", "ordered"]}}


def config(domain: int) -> dict[str, object]:
    return {"domain": domain, "channels": CHANNELS, "transports": {"rdma": {"device": DEVICES[0]}}}


@pytest.fixture
async def pair() -> AsyncIterator[tuple[insane.Session, insane.Session]]:
    cap = probe("rdma", insane.load_config(config(1)))
    assert cap.available, f"ibv_devices lists {DEVICES}, but: {cap.reason}"
    domain = random.randrange(1, 2**32)
    a = await insane.connect(config(domain), name="a")
    b = await insane.connect(config(domain), name="b")
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + 5
        while loop.time() < end:
            rdma = a._driver.rdma
            if a.peers and b.peers and rdma and rdma.connected(a.peers[0].peer_id):
                break
            await asyncio.sleep(0.01)
        assert a.peers and a._driver.rdma is not None, "no RDMA transport in the session"
        assert a._driver.rdma.connected(a.peers[0].peer_id), a._driver.rdma.failed
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_pub_sub_over_rdma(pair: tuple[insane.Session, insane.Session]) -> None:
    a, b = pair
    assert a.route_for("hw.x", a.peers[0]).transport == "rdma"
    sub = await b.subscribe("hw.ps")
    rng = random.Random(1)
    sent = [rng.randbytes(rng.choice((8, 512, 4000, 30_000))) for _ in range(2000)]
    before = STORE.total("insane_messages_received", transport="rdma")
    for data in sent:
        await a.publish("hw.ps", data)
    got = [(await sub.next_msg(5)).data for _ in sent]
    assert got == sent
    assert STORE.total("insane_messages_received", transport="rdma") - before >= len(sent)


async def test_request_reply_over_rdma(pair: tuple[insane.Session, insane.Session]) -> None:
    a, b = pair

    async def echo(msg: insane.Msg) -> None:
        await msg.respond(msg.data[::-1])

    await b.subscribe("hw.echo", cb=echo)
    for i in range(200):
        ping = b"ping%d" % i
        assert (await a.request("hw.echo", ping, timeout=2)).data == ping[::-1]


async def test_8_mib_over_rdma(pair: tuple[insane.Session, insane.Session]) -> None:
    a, b = pair
    sub = await b.subscribe("hw.big")
    big = random.Random(2).randbytes(8 * 1024 * 1024)
    before = STORE.total("insane_bytes_received", transport="rdma")
    await a.publish("hw.big", big)
    msg = await sub.next_msg(20)
    assert hashlib.sha256(msg.data).digest() == hashlib.sha256(big).digest()
    assert STORE.total("insane_bytes_received", transport="rdma") - before == len(big)
