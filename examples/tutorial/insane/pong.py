"""Pong: answers every request on the ping subject with its own payload, until stopped.

python pong.py [--servers URL] [--subject S]        # Ctrl-C (or SIGTERM) stops it
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import compat.nats as nats


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="nats://127.0.0.1:4222")
    parser.add_argument("--subject", default="tutorial.ping")
    args = parser.parse_args()

    nc = await nats.connect(servers=args.servers, name="tutorial-pong")
    served = 0

    async def answer(msg: nats.aio.msg.Msg) -> None:
        nonlocal served
        served += 1
        await msg.respond(msg.data)

    await nc.subscribe(args.subject, cb=answer)
    await nc.flush()
    print(f"pong: ready on {args.subject}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await nc.drain()
    print(f"pong: answered {served} requests", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
