"""A peer process that tests drive over stdin/stdout, one JSON object per line each way.

    python tests/agent.py            # then send {"op": "connect", "config": {...}} ...

Each command gets exactly one JSON reply (``{"ok": true, ...}`` or ``{"ok": false, "error":
"ClassName", "message": ...}``). Received messages are recorded per subscription id, so a test
can ask what arrived, in which order, and compare payload digests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import resource
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import insane
from insane.ops.metrics import STORE


def stream_size(i: int) -> int:
    """Mixed sizes from 64 B to 1 MiB: mostly small, every 100th 64 KiB, every 1000th 1 MiB."""
    if i % 1000 == 999:
        return 1 << 20
    if i % 100 == 50:
        return 64 << 10
    return 64 + (i * 7919) % 2000


def stream_payload(i: int, seed: int = 0) -> bytes:
    """Message ``i`` of a numbered stream: its number, then bytes that depend on it."""
    return i.to_bytes(4, "big") + random.Random(i * 1_000_003 + seed).randbytes(stream_size(i) - 4)


def payload(prefix: str, i: int, size: int) -> bytes:
    head = f"{prefix}{i}|".encode()
    if size <= len(head):
        return head
    return head + bytes((i + k) % 251 for k in range(size - len(head)))


class Agent:
    def __init__(self) -> None:
        self.session: insane.Session | None = None
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.subs: dict[str, insane.Subscription] = {}
        self.errors: list[str] = []
        self.streams: dict[str, dict[str, Any]] = {}
        self.pacers: list[asyncio.Future[None]] = []
        self.stream_task: asyncio.Future[dict[str, Any]] | None = None

    def _record(self, sid: str, msg: insane.Msg) -> None:
        self.received.setdefault(sid, []).append(
            {
                "subject": msg.subject,
                "size": len(msg.data),
                "head": msg.data[:48].decode(errors="replace").split("|")[0],
                "sha": hashlib.sha256(msg.data).hexdigest()[:16] if len(msg.data) > 48 else "",
                "headers": msg.headers,
                "reply": msg.reply,
            }
        )

    async def op_connect(self, config: Any = None, name: str | None = None) -> dict[str, Any]:
        self.session = await insane.connect(config, name=name)

        def on_error(exc: Exception) -> None:
            self.errors.append(f"{type(exc).__name__}: {exc}")

        self.session.error_cb = on_error
        return {
            "peer_id": f"{self.session.peer_id:016x}",
            "addr": list(self.session.address),
            "engine": self.session.engine,
        }

    def _s(self) -> insane.Session:
        assert self.session is not None, "connect first"
        return self.session

    async def op_sub(self, subject: str, id: str, queue: str | None = None) -> dict[str, Any]:
        self.received.setdefault(id, [])

        async def cb(msg: insane.Msg) -> None:
            self._record(id, msg)

        self.subs[id] = await self._s().subscribe(subject, queue=queue, cb=cb)
        return {}

    async def op_unsub(self, id: str) -> dict[str, Any]:
        await self.subs.pop(id).unsubscribe()
        return {}

    async def op_reply(self, subject: str, id: str, queue: str | None = None) -> dict[str, Any]:
        me = self._s().name

        async def cb(msg: insane.Msg) -> None:
            self._record(id, msg)
            await msg.respond(msg.data + b" from " + me.encode())

        self.subs[id] = await self._s().subscribe(subject, queue=queue, cb=cb)
        return {}

    async def op_pub(
        self,
        subject: str,
        count: int = 1,
        size: int = 0,
        prefix: str = "m",
        headers: dict[str, str] | None = None,
        subjects: list[str] | None = None,
    ) -> dict[str, Any]:
        s = self._s()
        for i in range(count):
            subj = subjects[i % len(subjects)] if subjects else subject
            await s.publish(subj, payload(prefix, i, size), headers=headers)
        await s.flush()
        return {
            "sent": count,
            "sha_last": hashlib.sha256(payload(prefix, count - 1, size)).hexdigest()[:16],
        }

    # ---------------------------------------------------------------- long numbered streams
    # For volume tests: messages carry their number; the subscriber checks the order and
    # keeps a running digest instead of recording each message.

    async def op_stream_pub(
        self, subject: str, count: int, seed: int = 0, background: bool = False
    ) -> dict[str, Any]:
        async def run() -> dict[str, Any]:
            s = self._s()
            digest = hashlib.sha256()
            t0 = time.monotonic()
            for i in range(count):
                data = stream_payload(i, seed)
                digest.update(data)
                await s.publish(subject, data)
            await s.flush()
            return {"sent": count, "sha": digest.hexdigest(), "seconds": time.monotonic() - t0}

        if background:
            self.stream_task = asyncio.ensure_future(run())
            return {}
        return await run()

    async def op_paced_pub(
        self, subject: str, count: int, rate: float, size: int = 1024
    ) -> dict[str, Any]:
        """Publish ``count`` numbered messages of ``size`` bytes at ``rate`` a second, in the
        background (``stream_pub_result`` waits for the end): what a sensor or a feed does."""

        async def run() -> dict[str, Any]:
            s = self._s()
            loop = asyncio.get_running_loop()
            digest = hashlib.sha256()
            filler = bytes(size - 4)
            t0 = loop.time()
            for i in range(count):
                data = i.to_bytes(4, "big") + filler
                digest.update(data)
                await s.publish(subject, data)
                ahead = t0 + (i + 1) / rate - loop.time()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await s.flush()
            return {"sent": count, "sha": digest.hexdigest(), "seconds": loop.time() - t0}

        self.stream_task = asyncio.ensure_future(run())
        return {}

    async def op_stream_pub_result(self, wait: float = 60.0) -> dict[str, Any]:
        assert self.stream_task is not None
        return await asyncio.wait_for(self.stream_task, wait)

    async def op_stream_sub(self, subject: str, id: str, delay: float = 0.0) -> dict[str, Any]:
        """``delay``: seconds of CPU each message costs this consumer (a slow subscriber)."""
        state = self.streams[id] = {
            "count": 0, "in_order": True, "digest": hashlib.sha256(), "last": 0.0, "max_gap": 0.0,
            "first_wrong": None, "last_number": -1,
        }  # fmt: skip

        async def cb(msg: insane.Msg) -> None:
            number = int.from_bytes(msg.data[:4], "big")
            if number != state["count"] and state["in_order"]:
                state["in_order"] = False
                state["first_wrong"] = [state["count"], number]
            now = time.monotonic()
            if state["count"]:
                state["max_gap"] = max(state["max_gap"], now - state["last"])
            state["last"] = now
            state["last_number"] = number
            state["digest"].update(msg.data)
            state["count"] += 1
            if delay:
                time.sleep(delay)

        self.subs[id] = await self._s().subscribe(subject, cb=cb)
        return {}

    async def op_stream_wait(self, id: str, count: int, wait: float = 60.0) -> dict[str, Any]:
        state = self.streams[id]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while state["count"] < count and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return {
            "count": state["count"],
            "in_order": state["in_order"],
            "first_wrong": state["first_wrong"],
            "last_number": state["last_number"],
            "max_gap": state["max_gap"],
            "sha": state["digest"].hexdigest(),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }

    async def op_request(self, subject: str, data: str = "", wait: float = 2.0) -> dict[str, Any]:
        """A request, answered within ``wait`` seconds (or TimeoutError)."""
        msg = await self._s().request(subject, data.encode(), timeout=wait)
        return {"data": msg.data.decode(errors="replace")}

    async def op_received(self, id: str, full: bool = False) -> dict[str, Any]:
        msgs = self.received.get(id, [])
        return {"count": len(msgs), "msgs": msgs if full else msgs[-3:]}

    async def op_wait_received(self, id: str, count: int, timeout: float = 10.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.received.get(id, [])) < count and loop.time() < deadline:
            await asyncio.sleep(0.01)
        return await self.op_received(id, full=True)

    async def op_peers(self) -> dict[str, Any]:
        return {"peers": sorted(p.name for p in self._s().peers)}

    async def op_suspects(self) -> dict[str, Any]:
        return {"suspects": sorted(p.name for p in self._s().suspect_peers)}

    async def op_wait_peers(self, names: list[str], timeout: float = 5.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            have = {p.name for p in self._s().peers}
            if set(names) <= have:
                break
            await asyncio.sleep(0.02)
        return await self.op_peers()

    async def op_wait_gone(self, name: str, timeout: float = 5.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while loop.time() - start < timeout:
            if name not in {p.name for p in self._s().peers}:
                return {"gone": True, "after": loop.time() - start}
            await asyncio.sleep(0.02)
        return {"gone": False, "after": loop.time() - start}

    async def op_streams(self) -> dict[str, Any]:
        """The session's reliable streams, for diagnosis."""
        links = self._s()._node.links
        return {
            "rx": [
                [f"{k[0]:016x}", k[1], r.next_expected, r.highest, r.held, r.missing()[:8],
                 str(r.stats)] for k, r in links.rx.items()
            ],
            "tx": [
                [f"{k[0]:016x}", k[1], s.next_seq, s.acked, s.kept, str(s.stats)]
                for k, s in links.tx.items()
            ],
        }

    async def op_pace(self, subject: str, rate: float, size: int = 64) -> dict[str, Any]:
        """Publish ``rate`` messages a second in the background, until ``pace_stop``."""

        async def run() -> None:
            s = self._s()
            data = b"p" * size
            while True:
                await s.publish(subject, data)
                await asyncio.sleep(1 / rate)

        self.pacers.append(asyncio.ensure_future(run()))
        return {}

    async def op_pace_stop(self) -> dict[str, Any]:
        for t in self.pacers:
            t.cancel()
        self.pacers.clear()
        return {}

    async def op_metrics_port(self) -> dict[str, Any]:
        return {"port": self._s().metrics_port}

    async def op_metric(self, name: str, **labels: str) -> dict[str, Any]:
        return {"value": STORE.total(name, **labels)}

    async def op_route(self, subject: str) -> dict[str, Any]:
        r = self._s().route_for(subject)
        return {"transport": r.transport, "wanted": r.wanted, "fallback": r.fallback}

    async def op_errors(self) -> dict[str, Any]:
        return {"errors": self.errors}

    async def op_flush(self) -> dict[str, Any]:
        await self._s().flush()
        return {}

    async def op_close(self) -> dict[str, Any]:
        """Close; the errors reported up to the end of it (the agent exits after this)."""
        t0 = time.monotonic()
        if self.session is not None:
            await self.session.close()
            await asyncio.sleep(0)  # (error_cb calls close scheduled)
        return {"errors": self.errors, "seconds": time.monotonic() - t0}


async def main() -> None:
    agent = Agent()
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, daemon=True).start()
    print(json.dumps({"ok": True, "ready": True, "pid": os.getpid()}), flush=True)
    while True:
        line = await lines.get()
        if line is None:
            break
        if not line.strip():
            continue
        cmd = json.loads(line)
        op = cmd.pop("op")
        try:
            result = await getattr(agent, f"op_{op}")(**cmd)
            reply = {"ok": True, **result}
        except Exception as exc:
            reply = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
        print(json.dumps(reply), flush=True)
        if op == "close":
            break


if __name__ == "__main__":
    asyncio.run(main())
