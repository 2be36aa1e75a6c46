"""Ping: measures request/reply round trips to pong.py and prints p50/p99/mean in microseconds.

python ping.py [--servers URL] [--size BYTES] [--count N] [--warmup N] [--subject S]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

import compat.nats as nats


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="nats://127.0.0.1:4222")
    parser.add_argument("--size", type=int, default=64, help="payload bytes (default 64)")
    parser.add_argument("--count", type=int, default=10000, help="measured round trips")
    parser.add_argument("--warmup", type=int, default=1000, help="round trips not measured")
    parser.add_argument("--subject", default="tutorial.ping")
    parser.add_argument("--wait", type=float, default=5.0, help="seconds to wait for a pong")
    args = parser.parse_args()

    nc = await nats.connect(servers=args.servers, name="tutorial-ping")
    payload = b"x" * args.size
    deadline = time.monotonic() + args.wait
    while True:  # until a pong answers
        try:
            await nc.request(args.subject, payload, timeout=1.0)
            break
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            if time.monotonic() > deadline:
                print(f"ping: nobody answers on {args.subject}", file=sys.stderr)
                await nc.close()
                return 1
            await asyncio.sleep(0.1)
    for _ in range(args.warmup):
        await nc.request(args.subject, payload, timeout=2.0)
    rtts = []
    clock = time.perf_counter_ns
    for _ in range(args.count):
        t0 = clock()
        reply = await nc.request(args.subject, payload, timeout=2.0)
        rtts.append(clock() - t0)
        if len(reply.data) != args.size:
            print("ping: reply of the wrong size", file=sys.stderr)
            return 1
    await nc.close()
    rtts.sort()
    us = [r / 1000 for r in rtts]
    p50 = us[len(us) // 2]
    p99 = us[min(len(us) - 1, int(len(us) * 0.99))]
    print(
        f"ping: {args.count} round trips of {args.size} B: "
        f"p50 {p50:.1f} us, p99 {p99:.1f} us, mean {statistics.fmean(us):.1f} us",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
