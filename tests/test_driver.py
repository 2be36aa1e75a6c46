"""The driver's one timer (insane/driver.py): it follows the node's deadlines as they move, so a
TAIL or a delayed acknowledgement leaves when the node says, not at the next control tick."""

from __future__ import annotations

import asyncio
import random

import pytest

import insane


async def test_the_timer_follows_the_node_after_a_publish_outside_the_receive_path() -> None:
    cfg = {"domain": random.randrange(1, 2**32), "channels": {"r.>": {"qos": ["reliable"]}}}
    a = await insane.connect(cfg, name="a")
    b = await insane.connect(cfg, name="b")
    try:
        await b.subscribe("r.x")
        await a.flush()
        await asyncio.sleep(0.2)  # everything acknowledged: the node waits for nothing
        node, driver = a._node, a._driver
        assert node.get_timer() is None
        # b stops reading, so no acknowledgement can move a's deadlines from the receive path
        udp = b._driver.udp
        udp._loop.remove_reader(udp._sock.fileno())
        await a.publish("r.x", b"one")
        await asyncio.sleep(0)  # (the flush at the end of this loop turn)
        at = node.get_timer()
        assert at is not None  # a TAIL is due if nothing acknowledges it
        assert driver._timer is not None
        assert driver._timer.when() == pytest.approx(at, abs=1e-6)  # not the next 50 ms tick
        udp._loop.add_reader(udp._sock.fileno(), udp._readable)
    finally:
        await a.close()
        await b.close()
