"""Reliable throughput under loss, as a fraction of best-effort throughput without loss.

    .venv/bin/python -m benchmarks.reliable_loss                 # 0 %, 1 %, 10 % loss, 64 B
    .venv/bin/python -m benchmarks.reliable_loss --size 1024 --count 200000 --repeat 3

One publisher process sends ``--count`` messages as fast as it can to one subscriber process
(a CPU each, loopback).  Loss is put on the path by both processes' transports: each datagram
they send (data, acknowledgements, NACKs, retransmissions alike) is dropped with the given
probability, from a seeded generator.  (The namespace tests put loss, duplication, reordering
and delay on a real wire between hosts with tests/fault_relay.py; a Python relay, though,
would measure itself here, not the protocol.)  Rows: best effort without loss (the
reference), then a ``[reliable, ordered]`` channel at each loss rate.  A reliable row must
deliver every message, in order, or it is reported as failed.  Medians of ``--repeat`` runs.

The last row is a partition: a paced ``[reliable, ordered]`` stream (``--rate`` messages a
second of ``--partition-size`` bytes) during which both processes send nothing at all for
``--partition`` seconds (5 by default, twice the peer timeout), both alive. It reports the
time from the heal to full recovery: until the subscriber has every message published before
the heal (in an ordered stream: until the first one published after it is delivered), and
whether everything arrived, in order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any

from benchmarks.common import REPO_ROOT, usable_cpus


def partitioned(session: Any, start: float, end: float) -> None:
    """Make the session send nothing between wall-clock times ``start`` and ``end``."""
    real = session._driver.udp.send_batch

    def send_batch(datagrams: Any) -> int:
        if not start <= time.time() < end:
            real(datagrams)
        return len(datagrams)

    session._driver.udp.send_batch = send_batch


async def partition_peer(role: str, domain: int, args: argparse.Namespace) -> None:
    import insane

    s = await insane.connect({"domain": domain}, name=f"cut-{role}")
    partitioned(s, args.cut_start, args.cut_start + args.partition)
    count = args.count
    if role == "sub":
        got, in_order, recovered = 0, True, None
        done = asyncio.Event()
        lost: list[Any] = []
        s.error_cb = lambda e: lost.append(e)
        heal = args.cut_start + args.partition

        async def on_msg(msg: Any) -> None:
            nonlocal got, in_order, recovered
            if int.from_bytes(msg.data[:4], "little") != got:
                in_order = False
            got += 1
            if recovered is None and float.fromhex(msg.data[4:28].decode().strip()) >= heal:
                recovered = time.time() - heal
            if got == count:
                done.set()

        await s.subscribe("cut.x", cb=on_msg)
        await s.flush()
        print("ready", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), args.partition + count / args.rate + 30)
        print(json.dumps({"received": got, "in_order": in_order, "recovered": recovered,
                          "errors": [str(e) for e in lost]}), flush=True)  # fmt: skip
    else:
        while not s.peers:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        filler = b"x" * max(0, args.partition_size - 28)
        t0 = time.monotonic()
        for i in range(count):
            stamp = time.time().hex().ljust(24).encode()
            await s.publish("cut.x", i.to_bytes(4, "little") + stamp + filler)
            ahead = t0 + (i + 1) / args.rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        await s.flush()
        await asyncio.sleep(2.0)
    await s.close()


def run_partition(args: argparse.Namespace) -> dict[str, Any]:
    domain = random.randrange(1, 2**31)
    cpus = usable_cpus()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env.pop("INSANE_CONFIG", None)
    count = int(args.rate * (args.partition + 6))
    cut_start = time.time() + 4.0  # after both are up and the stream runs
    procs = []
    for role, cpu in (("sub", cpus[0]), ("pub", cpus[-1])):
        argv = [sys.executable, "-m", "benchmarks.reliable_loss", "--peer", role, "--domain",
                str(domain), "--count", str(count), "--rate", str(args.rate), "--partition",
                str(args.partition), "--partition-size", str(args.partition_size),
                "--cut-start", repr(cut_start)]  # fmt: skip
        pin = functools.partial(os.sched_setaffinity, 0, {cpu})
        procs.append(
            subprocess.Popen(
                argv, cwd=REPO_ROOT, env=env, text=True, stdout=subprocess.PIPE, preexec_fn=pin
            )
        )
        if role == "sub":
            assert procs[0].stdout is not None
            if procs[0].stdout.readline().strip() != "ready":
                raise RuntimeError("subscriber did not start")
    sub, pub = procs
    assert sub.stdout is not None
    out = sub.stdout.readline()
    sub.wait(30)
    pub.wait(60)
    r: dict[str, Any] = json.loads(out)
    r["count"] = count
    return r


def lossy(session: Any, loss: float, seed: int) -> None:
    """Make the session's transport drop each datagram it sends with probability ``loss``."""
    if loss <= 0:
        return
    rng = random.Random(seed)
    real = session._driver.udp.send_batch

    def send_batch(datagrams: Any) -> int:
        real([d for d in datagrams if rng.random() >= loss])
        return len(datagrams)

    session._driver.udp.send_batch = send_batch


async def peer(role: str, domain: int, qos: str, loss: float, count: int, size: int) -> None:
    import insane

    cfg = {"domain": domain, "channels": {"bench.>": {"qos": qos.split(",")}}}
    s = await insane.connect(cfg, name=f"loss-{role}")
    lossy(s, loss, seed=domain + (role == "pub"))
    if role == "sub":
        got, in_order, first, last = 0, True, 0.0, 0.0
        done = asyncio.Event()
        lost: list[int] = []
        s.error_cb = lambda e: lost.append(getattr(e, "count", 0))

        async def on_msg(msg: Any) -> None:
            nonlocal got, in_order, first, last
            if int.from_bytes(msg.data[:4], "little") != got:
                in_order = False
            got += 1
            last = time.perf_counter()
            if got == 1:
                first = last
            if got == count:
                done.set()

        await s.subscribe("bench.x", cb=on_msg)
        await s.flush()
        print("ready", flush=True)
        idle_since = time.perf_counter()
        seen = 0
        while not done.is_set():
            await asyncio.sleep(0.2)
            if got != seen:
                seen, idle_since = got, time.perf_counter()
            elif time.perf_counter() - idle_since > 3.0:
                break
        result = {
            "received": got,
            "in_order": in_order,
            "lost_reported": sum(lost),
            "seconds": max(last - first, 1e-9),
        }
        print(json.dumps(result), flush=True)
    else:
        while not s.peers:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        filler = b"x" * max(0, size - 4)
        for i in range(count):
            await s.publish("bench.x", i.to_bytes(4, "little") + filler)
        await s.flush()
        await asyncio.sleep(2.0)  # stay to answer the last NACKs
    await s.close()


def run_once(qos: str, loss: float, count: int, size: int) -> dict[str, Any]:
    domain = random.randrange(1, 2**31)
    cpus = usable_cpus()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env.pop("INSANE_CONFIG", None)

    def start(role: str, cpu: int) -> subprocess.Popen[str]:
        argv = [
            sys.executable,
            "-m",
            "benchmarks.reliable_loss",
            "--peer",
            role,
            "--domain",
            str(domain),
            "--qos",
            qos,
            "--loss",
            str(loss),
            "--count",
            str(count),
            "--size",
            str(size),
        ]
        return subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        )

    sub = start("sub", cpus[0])
    assert sub.stdout is not None
    if sub.stdout.readline().strip() != "ready":
        raise RuntimeError("subscriber did not start")
    pub = start("pub", cpus[-1])
    out = sub.stdout.readline()
    sub.wait(30)
    pub.wait(60)
    r: dict[str, Any] = json.loads(out)
    r["msg_per_s"] = r["received"] / r["seconds"]
    return r


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.reliable_loss", description=__doc__)
    p.add_argument("--count", type=int, default=200_000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--losses", default="0,0.01,0.1", help="loss rates for the reliable rows")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--peer", choices=["pub", "sub"], help=argparse.SUPPRESS)
    p.add_argument("--domain", type=int, help=argparse.SUPPRESS)
    p.add_argument("--qos", default="reliable,ordered", help=argparse.SUPPRESS)
    p.add_argument("--loss", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--partition", type=float, default=5.0, help="seconds (0: no partition row)")
    p.add_argument("--rate", type=float, default=5000, help="partition row: messages a second")
    p.add_argument("--partition-size", type=int, default=1024, help="partition row: bytes")
    p.add_argument("--cut-start", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.peer and args.cut_start is not None:
        asyncio.run(partition_peer(args.peer, args.domain, args))
        return 0
    if args.peer:
        asyncio.run(peer(args.peer, args.domain, args.qos, args.loss, args.count, args.size))
        return 0

    rows = [("best_effort", 0.0)] + [("reliable,ordered", float(x)) for x in args.losses.split(",")]
    results: dict[tuple[str, float], list[dict[str, Any]]] = {row: [] for row in rows}
    failed = False
    for rep in range(args.repeat):
        for qos, loss in rows:
            r = run_once(qos, loss, args.count, args.size)
            ok = qos == "best_effort" or (r["received"] == args.count and r["in_order"])
            failed |= not ok
            results[(qos, loss)].append(r)
            print(
                f"  run {rep + 1}: {qos:17} loss {loss:5.1%}: {r['msg_per_s']:>10,.0f} msg/s,"
                f" {r['received']}/{args.count} received{'' if ok else '  FAILED'}",
                file=sys.stderr,
                flush=True,
            )
    base = statistics.median(r["msg_per_s"] for r in results[rows[0]])
    print(f"\n== {args.size} B, {args.count} messages, medians of {args.repeat} runs ==")
    print(f"{'channel':17} {'loss':>6} {'msg/s':>11} {'of best effort':>15} {'received':>10}")
    for qos, loss in rows:
        rs = results[(qos, loss)]
        rate = statistics.median(r["msg_per_s"] for r in rs)
        recv = min(r["received"] for r in rs)
        print(f"{qos:17} {loss:6.1%} {rate:11,.0f} {rate / base:14.2f}x {recv:>10}")
    if args.partition:
        cuts = [run_partition(args) for _ in range(args.repeat)]
        for c in cuts:
            whole = c["received"] == c["count"] and c["in_order"] and not c["errors"]
            failed |= not whole
            print(f"  partition run: {c}", file=sys.stderr, flush=True)
        recovered = [c["recovered"] for c in cuts if c["recovered"] is not None]
        print(
            f"\n== a {args.partition:g} s partition in a {args.rate:,.0f} msg/s stream of "
            f"{args.partition_size} B, [reliable, ordered], medians of {args.repeat} runs ==\n"
            f"full recovery {statistics.median(recovered):.2f} s after the heal; "
            f"{min(c['received'] for c in cuts)}/{cuts[0]['count']} delivered, in order: "
            f"{all(c['in_order'] for c in cuts)}; errors: {sum(len(c['errors']) for c in cuts)}"
            if recovered else "\npartition: never recovered"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
