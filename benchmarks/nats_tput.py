"""A nats-py throughput app: one publisher, one subscriber, ``--impl`` picks the import.

    python -m benchmarks.nats_tput --impl nats|insane sub --count N [--servers URL]
    python -m benchmarks.nats_tput --impl nats|insane pub --count N [--size B] [--servers URL]

The code is the same for both: ``--impl nats`` imports ``nats`` (nats-py, against a
nats-server), ``--impl insane`` imports ``compat.nats`` (INSANE's facade, no server); nothing
else differs.  The subscriber counts messages in an async callback, checks that each carries
the next sequence number (so loss, duplicates and reordering show), prints ``ready`` once
subscribed, and at the end one JSON line: how many arrived, in order or not, and the rate from
the first to the last.  The publisher publishes as fast as it can, then ``flush()``es.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import time
from typing import Any

SUBJECT = "bench.tput"


async def subscriber(nats: Any, args: argparse.Namespace) -> dict[str, Any]:
    nc = await nats.connect(servers=args.servers, name="tput-sub")
    count = args.count
    got = 0
    in_order = True
    first = last = 0.0
    done = asyncio.Event()
    clock = time.perf_counter

    async def on_msg(msg: Any) -> None:
        nonlocal got, in_order, first, last
        if int.from_bytes(msg.data[:4], "little") != got:
            in_order = False
        got += 1
        if got == 1:
            first = clock()
        if got == count:
            last = clock()
            done.set()

    await nc.subscribe(SUBJECT, cb=on_msg)
    await nc.flush()
    print("ready", flush=True)
    try:
        await asyncio.wait_for(done.wait(), args.timeout)
    except TimeoutError:
        last = clock()
    await nc.close()
    seconds = max(last - first, 1e-9)
    return {
        "received": got,
        "expected": count,
        "in_order": in_order,
        "seconds": seconds,
        "msg_per_s": got / seconds,
    }


async def publisher(nats: Any, args: argparse.Namespace) -> dict[str, Any]:
    nc = await nats.connect(servers=args.servers, name="tput-pub")
    await asyncio.sleep(args.settle)
    filler = b"x" * max(0, args.size - 4)
    publish = nc.publish
    t0 = time.perf_counter()
    for seq in range(args.count):
        await publish(SUBJECT, seq.to_bytes(4, "little") + filler)
    await nc.flush()
    seconds = time.perf_counter() - t0
    await nc.close()
    return {"sent": args.count, "seconds": seconds, "msg_per_s": args.count / seconds}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", choices=["nats", "insane"], required=True)
    p.add_argument("role", choices=["pub", "sub"])
    p.add_argument("--count", type=int, default=300_000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--servers", default="nats://127.0.0.1:4222")
    p.add_argument("--settle", type=float, default=0.5, help="publisher: wait before sending")
    p.add_argument("--timeout", type=float, default=60.0, help="subscriber: give up after")
    args = p.parse_args()
    nats = importlib.import_module("nats" if args.impl == "nats" else "compat.nats")
    role = subscriber if args.role == "sub" else publisher
    print(json.dumps(asyncio.run(role(nats, args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
