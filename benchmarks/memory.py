"""Memory of the data plane: per session, per 1,000 subscriptions, and RSS over a soak.

    .venv/bin/python -m benchmarks.memory                    # sizes, then a 10-minute soak
    .venv/bin/python -m benchmarks.memory --soak 60          # a shorter soak
    .venv/bin/python -m benchmarks.memory --engine python    # the Python data plane

Every figure is the process's resident set (``/proc/self/statm``), after a collection:

- per session: the growth of 10 sessions opened in one process (each with its socket, node,
  discovery and metrics), divided by 10; the RSS (which a warm process's free memory can hide,
  and which holds no kernel socket buffers) and what Python allocated for them (tracemalloc:
  the objects a session holds, C parts of the engine not included);
- per 1,000 subscriptions: 3,000 subscriptions on distinct subjects in one session, the growth
  divided by 3 (the router's tables, the interest a peer is told of);
- soak: a publisher and a subscriber session in this process, a reliable ordered channel, 64 B
  messages as fast as the window allows, for ``--soak`` seconds; the RSS sampled every 10 s.
  Flat means the last sample within 5% (or 2 MiB) of the one taken after the first 30 s.

Prints a table; ``--json FILE`` writes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import sys
import time
import tracemalloc
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def config(domain: int) -> dict[str, Any]:
    return {
        "domain": domain,
        "channels": {"soak.>": {"qos": ["reliable", "ordered"]}},
    }


async def per_session(insane: Any, domain: int, n: int = 10) -> tuple[float, float]:
    """(RSS growth, Python allocations) per session."""
    warm = await insane.connect(config(domain))  # (first-use allocations out of the figure)
    before = rss()
    tracemalloc.start()
    traced = tracemalloc.get_traced_memory()[0]
    sessions = [await insane.connect(config(domain)) for _ in range(n)]
    gc.collect()
    allocated = tracemalloc.get_traced_memory()[0] - traced
    tracemalloc.stop()
    grown = rss() - before
    for s in [*sessions, warm]:
        await s.close()
    return grown / n, allocated / n


async def per_thousand_subscriptions(insane: Any, domain: int, n: int = 3_000) -> float:
    async with await insane.connect(config(domain)) as s:

        async def cb(_msg: Any) -> None:
            return None

        await s.subscribe("warm.up", cb=cb)
        before = rss()
        for i in range(n):
            await s.subscribe(f"subs.{i}.x", cb=cb)
        return (rss() - before) / (n / 1000)


async def soak(insane: Any, domain: int, seconds: float) -> dict[str, Any]:
    got = 0

    async def cb(_msg: Any) -> None:
        nonlocal got
        got += 1

    samples: list[tuple[float, int]] = []
    async with await insane.connect(config(domain)) as sub, await insane.connect(
        config(domain)
    ) as pub:
        await sub.subscribe("soak.x", cb=cb)
        deadline = time.monotonic() + 10
        while not pub.has_subscribers("soak.x"):
            if time.monotonic() > deadline:
                raise SystemExit("memory: the subscriber was not discovered in 10 s")
            await asyncio.sleep(0.05)
        start = time.monotonic()
        next_sample = start
        sent = 0
        payload = b"x" * 64
        while (now := time.monotonic()) < start + seconds:
            if now >= next_sample:
                samples.append((now - start, rss()))
                next_sample += 10
            for _ in range(200):
                await pub.publish("soak.x", payload)
            sent += 200
            await asyncio.sleep(0)
        await pub.flush()
        settle = time.monotonic() + 5
        while got < sent and time.monotonic() < settle:
            await asyncio.sleep(0.01)
        samples.append((time.monotonic() - start, rss()))
    ref = next((r for t, r in samples if t >= 30), samples[0][1])
    last = samples[-1][1]
    flat = abs(last - ref) <= max(0.05 * ref, 2 << 20)
    return {
        "seconds": seconds,
        "sent": sent,
        "delivered": got,
        "rss_start": samples[0][1],
        "rss_ref": ref,
        "rss_max": max(r for _, r in samples),
        "rss_last": last,
        "flat": flat,
        "samples": samples,
    }


def mib(n: float) -> str:
    return f"{n / (1 << 20):.2f} MiB"


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    import insane

    domain = random.randrange(1, 2**32)
    out: dict[str, Any] = {"engine": args.engine or os.environ.get("INSANE_ENGINE", "default")}
    out["per_session"], out["per_session_python"] = await per_session(insane, domain)
    out["per_1000_subscriptions"] = await per_thousand_subscriptions(insane, domain)
    if args.soak > 0:
        out["soak"] = await soak(insane, domain, args.soak)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="memory per session, per 1,000 subscriptions, soak")
    ap.add_argument("--soak", type=float, default=600.0, help="soak seconds (0: none)")
    ap.add_argument("--engine", choices=["native", "python"], help="INSANE_ENGINE for this run")
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args(argv)
    if args.engine:
        os.environ["INSANE_ENGINE"] = args.engine
    out = asyncio.run(main_async(args))
    from insane.qos.engine import engine_name

    print(f"engine {engine_name()}")
    print(
        f"per session               {mib(out['per_session'])} RSS, "
        f"{mib(out['per_session_python'])} allocated by Python"
    )
    print(f"per 1,000 subscriptions   {mib(out['per_1000_subscriptions'])}")
    if "soak" in out:
        s = out["soak"]
        print(
            f"soak {s['seconds']:.0f} s: {s['sent']:,} sent, {s['delivered']:,} delivered; RSS "
            f"{mib(s['rss_start'])} at start, {mib(s['rss_ref'])} at 30 s, max "
            f"{mib(s['rss_max'])}, {mib(s['rss_last'])} at the end: "
            f"{'flat' if s['flat'] else 'GROWING'}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0 if out.get("soak", {}).get("flat", True) else 1


if __name__ == "__main__":
    sys.exit(main())
