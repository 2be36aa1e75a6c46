"""The floor of an asyncio app's per-message cost: a loop that awaits a no-op coroutine per
message (what a subscriber callback costs with nothing in it and no I/O at all). The issue's
throughput target for the NATS facade is a fraction of this rate, measured in the same run.

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


def await_noop_rate(count: int = 2_000_000, repeat: int = 5) -> float:
    """Awaits of a no-op coroutine per second (median of ``repeat`` loops)."""
    return statistics.median(asyncio.run(_loop(count)) for _ in range(repeat))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="the await-no-op floor, in awaits per second")
    ap.add_argument("--count", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    print(f"await-no-op floor: {await_noop_rate(args.count, args.repeat):,.0f} msg/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
