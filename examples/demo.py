"""Two processes, no broker, no configuration: a subscriber and a publisher find each other on
this host over kernel UDP (loopback), exchange messages, a request and its reply.

    python examples/demo.py          # runs both sides and prints what happened
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import insane

COUNT = 5


async def subscriber() -> None:
    async with insane.connect(name="demo-subscriber") as s:

        async def answer(msg: insane.Msg) -> None:
            await msg.respond(b"pong from pid-" + str(__import__("os").getpid()).encode())

        await s.subscribe("demo.ping", cb=answer)
        sub = await s.subscribe("demo.orders.>")
        print("subscriber: ready", flush=True)
        for _ in range(COUNT):
            msg = await sub.next_msg(timeout=10)
            print(f"subscriber: got {msg.subject} {msg.data.decode()!r}", flush=True)
        await s.flush()
        await asyncio.sleep(0.5)  # let the publisher's request reach us


async def publisher() -> None:
    async with insane.connect(name="demo-publisher") as s:
        print(f"publisher: peers found: {[p.name for p in s.peers]}")
        t0 = time.perf_counter()
        reply = await s.request("demo.ping", b"ping", timeout=2)
        rtt = (time.perf_counter() - t0) * 1e6
        print(f"publisher: request demo.ping -> {reply.data.decode()!r} in {rtt:.0f} us")
        for i in range(COUNT):
            await s.publish(f"demo.orders.{['eu', 'us'][i % 2]}", f"order {i}".encode())
        await s.flush()
        route = s.route_for("demo.orders.eu")
        print(f"publisher: channel demo.orders.* goes over {route.transport}: {route.reasons[-1]}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--subscriber":
        asyncio.run(subscriber())
        return 0
    child = subprocess.Popen(
        [sys.executable, __file__, "--subscriber"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        print(line, end="")
        if "ready" not in line:
            print("demo: the subscriber did not start", file=sys.stderr)
            return 1
        asyncio.run(publisher())
        out, _ = child.communicate(timeout=15)
        print(out, end="")
        return child.returncode
    finally:
        if child.poll() is None:
            child.kill()


if __name__ == "__main__":
    sys.exit(main())
