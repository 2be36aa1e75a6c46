"""The floor of an asyncio app's per-message cost: a loop that awaits a no-op coroutine per
message (what a subscriber callback costs with nothing in it and no I/O at all). The issue's
throughput target for the NATS facade is a fraction of this rate, measured in the same run.

It also measures the ceiling of benchmarks/nats_tput.py's subscriber: its callback's own body
(kept here verbatim), awaited on messages made beforehand, with no I/O and no middleware at
all (not even making the `Msg`). No data plane can deliver to that program faster.

    .venv/bin/python -m benchmarks.floor                 # 2,000,000 awaits, median of 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time


async def _noop(_data: bytes) -> None:
    return None


async def _loop(count: int) -> float:
    data = b"x" * 64
    t0 = time.perf_counter()
    for _ in range(count):
        await _noop(data)
    return count / (time.perf_counter() - t0)


async def _callback_loop(count: int, batch: int = 100_000) -> float:
    from insane.api.message import Msg

    msgs = [Msg("bench.tput", i.to_bytes(4, "little") + b"x" * 60) for i in range(batch)]
    got = 0
    in_order = True
    first = last = 0.0
    clock = time.perf_counter

    async def on_msg(msg: Msg) -> None:  # (nats_tput.subscriber's, verbatim but done.set())
        nonlocal got, in_order, first, last
        if int.from_bytes(msg.data[:4], "little") != got:
            in_order = False
        got += 1
        if got == 1:
            first = clock()
        if got == count:
            last = clock()

    passes = max(1, count // batch)
    elapsed = 0.0
    for _ in range(passes):
        got = 0
        t0 = time.perf_counter()
        for m in msgs:
            await on_msg(m)
        elapsed += time.perf_counter() - t0
        assert got == batch and in_order
    return passes * batch / elapsed


def callback_rate(count: int = 2_000_000, repeat: int = 5) -> float:
    """Messages per second nats_tput's subscriber callback takes alone (median of ``repeat``)."""
    return statistics.median(asyncio.run(_callback_loop(count)) for _ in range(repeat))


def await_noop_rate(count: int = 2_000_000, repeat: int = 5) -> float:
    """Awaits of a no-op coroutine per second (median of ``repeat`` loops)."""
    return statistics.median(asyncio.run(_loop(count)) for _ in range(repeat))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="the await-no-op floor, in awaits per second")
    ap.add_argument("--count", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    print(f"await-no-op floor: {await_noop_rate(args.count, args.repeat):,.0f} msg/s")
    rate = callback_rate(args.count, args.repeat)
    print(f"nats_tput's subscriber callback alone: {rate:,.0f} msg/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
