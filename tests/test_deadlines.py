"""One loop timer serving many timeouts (insane/api/deadlines.py)."""

from __future__ import annotations

import asyncio

from insane.api.deadlines import Deadlines


async def test_expired_futures_get_none_and_finished_ones_are_left_alone() -> None:
    loop = asyncio.get_running_loop()
    d = Deadlines(loop)
    slow, quick, answered = (loop.create_future() for _ in range(3))
    d.add(0.2, slow)
    d.add(0.02, quick)
    d.add(0.01, answered)
    answered.set_result("reply")
    d.finished()
    assert await asyncio.wait_for(quick, 1) is None
    assert not slow.done()
    assert await asyncio.wait_for(slow, 1) is None
    assert answered.result() == "reply"
    assert len(d) == 0
    d.close()


async def test_an_earlier_deadline_rearms_the_timer() -> None:
    loop = asyncio.get_running_loop()
    d = Deadlines(loop)
    late, early = loop.create_future(), loop.create_future()
    d.add(5.0, late)
    t0 = loop.time()
    d.add(0.01, early)
    await asyncio.wait_for(early, 1)
    assert loop.time() - t0 < 1.0
    assert not late.done()
    d.close()


async def test_stale_entries_do_not_pile_up() -> None:
    loop = asyncio.get_running_loop()
    d = Deadlines(loop)
    for _ in range(5000):  # long timeouts, all answered early (requests in a loop)
        fut = loop.create_future()
        d.add(3600.0, fut)
        fut.set_result(1)
        d.finished()
    assert len(d) < 2048
    d.close()
