"""Runs roles of the NATS scenarios (tests/nats_scenarios.py) on one implementation.

    python tests/nats_runner.py --impl real      # import nats        (needs a nats-server)
    python tests/nats_runner.py --impl facade    # import compat.nats (no server; INSANE_CONFIG)

Commands on stdin, one JSON object a line:
    {"op": "start", "id": N, "scenario": NAME, "role": "sub"|"pub", "servers": URL,
     "prefix": P, "peer": DATA}
    {"op": "release", "id": N}      lets a role waiting in ``ctx.released()`` go on
    {"op": "quit"}
Events on stdout: {"ready": true} once, then {"id": N, "event": "ready"|"result"|"error",
"data": ...} for each role.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
import threading
import traceback
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nats_scenarios


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def run_role(rid: int, ctx: nats_scenarios.Ctx, scenario: str, role: str) -> None:
    try:
        fn = getattr(nats_scenarios.SCENARIOS[scenario], role)
        data = await fn(ctx)
        emit({"id": rid, "event": "result", "data": data})
    except BaseException:
        emit({"id": rid, "event": "error", "error": traceback.format_exc()})
    finally:
        await ctx.close_all()


async def main(impl: str) -> None:
    module = importlib.import_module("nats" if impl == "real" else "compat.nats")
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, daemon=True).start()
    ctxs: dict[int, nats_scenarios.Ctx] = {}
    tasks: set[asyncio.Task[None]] = set()
    emit({"ready": True, "impl": impl, "pid": os.getpid()})
    while True:
        line = await lines.get()
        if line is None:
            break
        if not line.strip():
            continue
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "quit":
            break
        rid = cmd["id"]
        if op == "start":
            ctx = nats_scenarios.Ctx(
                module,
                impl,
                cmd["servers"],
                cmd["prefix"],
                cmd.get("peer"),
                on_ready=lambda data, rid=rid: emit({"id": rid, "event": "ready", "data": data}),
            )
            ctxs[rid] = ctx
            task = loop.create_task(run_role(rid, ctx, cmd["scenario"], cmd["role"]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elif op == "release":
            ctxs.pop(rid).release()
    for task in list(tasks):
        task.cancel()
    for ctx in ctxs.values():
        await ctx.close_all()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", choices=("real", "facade"), required=True)
    asyncio.run(main(parser.parse_args().impl))
