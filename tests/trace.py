"""Recorded traces: a scripted scenario between two sessions, every datagram and every
delivery written down, so that two versions of the data plane can be held to the same bytes.

    python tests/trace.py record tests/traces/scenario.trace     # write the trace
    python tests/trace.py compare tests/traces/scenario.trace    # exit 1 at the first change

Nothing is left to chance: the sessions run in one process on an event loop whose clock is
virtual (it jumps to the next timer instead of waiting), over an in-memory network instead of
sockets (each datagram arrives 100 us after it is sent; the loss is drawn from a seeded
generator), with fixed peer ids, epochs and cookie secrets (seeded generators), a fixed host
name and fixed session names. The scenario: pub/sub on wildcards, headers, request/reply, a
fragmented 1 MiB message, and a reliable ordered stream through 10% loss.

The sessions build their node with the engine ``INSANE_ENGINE`` chooses (insane/qos/engine.py),
so every data plane is held to the same recorded bytes.

A line per event: ``time src>dst hex`` for a datagram (``LOST`` when the network dropped it;
a long one as its first bytes, length and SHA-256)
and ``time deliver subject sha256[:16]`` for a message a subscription got.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import selectors
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

Address = tuple[str, int]
DELAY = 0.0001  # one way, every datagram


class VirtualSelector(selectors.BaseSelector):
    """A selector with no file to watch: ``select(timeout)`` moves the loop's clock forward by
    ``timeout`` (the time to the next timer) instead of sleeping."""

    def __init__(self) -> None:
        self.loop: VirtualLoop | None = None
        self._map: dict[Any, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._map[fileobj] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._map.pop(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        assert self.loop is not None
        if timeout is None:
            raise RuntimeError("trace: the scenario waits for something that never comes")
        self.loop.advance(timeout)
        return []

    def get_map(self) -> Any:
        return self._map

    def close(self) -> None:
        self._map.clear()


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        selector = VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self._now = 0.0

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self._now += seconds


def show(data: bytes) -> str:
    """A datagram in the trace: its bytes in hex, or for a long one its first 48 bytes, its
    length and its SHA-256 (as strict, and the file stays small)."""
    if len(data) <= 160:
        return data.hex()
    return f"{data[:48].hex()}... {len(data)} bytes sha256 {hashlib.sha256(data).hexdigest()}"


class MemoryNetwork:
    """Datagrams between in-memory transports, each written to the trace."""

    def __init__(self, loop: VirtualLoop, seed: int) -> None:
        self.loop = loop
        self.rng = random.Random(seed)
        self.loss = 0.0
        self.endpoints: dict[Address, MemoryTransport] = {}
        self.lines: list[str] = []

    def stamp(self) -> str:
        return f"{self.loop.time():.6f}"

    def send(self, src: Address, dst: Address, data: bytes) -> None:
        lost = self.loss and self.rng.random() < self.loss
        flag = " LOST" if lost else ""
        route = f"{src[0]}:{src[1]}>{dst[0]}:{dst[1]}"
        self.lines.append(f"{self.stamp()} {route}{flag} {show(data)}")
        target = self.endpoints.get(dst)
        if target is not None and not lost:
            self.loop.call_later(DELAY, target.deliver, data, src)


class MemoryTransport:
    """The kernel UDP transport's surface, on a `MemoryNetwork`."""

    name = "udp"
    network: MemoryNetwork

    def __init__(self, bind: str = "127.0.0.1", port: int = 0, **_kw: Any) -> None:
        self._addr = (bind, port)
        self._on_receive: Callable[[list[tuple[bytes, Address]]], None] | None = None
        self.poll_idle = 0.0
        self.spin_until: Callable[[], bool] | None = None
        self.on_unreachable: Callable[[Address], None] | None = None
        self.spinning = False
        self.send_errors = 0

    @property
    def local_address(self) -> Address:
        return self._addr

    @property
    def max_datagram(self) -> int:
        return 1472  # an Ethernet MTU: messages share datagrams, large ones fragment

    @property
    def backlog_bytes(self) -> int:
        return 0

    @property
    def socket(self) -> socket.socket:
        raise RuntimeError("trace: no socket in memory")

    async def start(self, on_receive: Callable[[list[tuple[bytes, Address]]], None]) -> None:
        self._on_receive = on_receive
        self.network.endpoints[self._addr] = self

    def deliver(self, data: bytes, src: Address) -> None:
        if self._on_receive is not None:
            self._on_receive([(data, src)])

    def send_batch(self, datagrams: Sequence[tuple[Any, Address]]) -> int:
        for data, addr in datagrams:
            self.network.send(self._addr, addr, bytes(data))
        return len(datagrams)

    def spin(self, *_a: Any) -> bool:
        return False

    def kernel_drops(self) -> int:
        return 0

    async def wait_drained(self) -> None:
        return None

    async def close(self) -> None:
        self.network.endpoints.pop(self._addr, None)
        self._on_receive = None


@contextlib.contextmanager
def deterministic(network: MemoryNetwork) -> Iterator[None]:
    """Seeded ids, epochs and secrets, a fixed host name, and the in-memory transport, put
    where the version under test builds its kernel UDP transport."""
    import importlib

    MemoryTransport.network = network
    saved: list[tuple[Any, str, Any]] = []

    def patch(obj: Any, name: str, value: Any) -> None:
        saved.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    secrets = random.Random(7)
    patch(os, "urandom", lambda n: secrets.randbytes(n))
    patch(socket, "gethostname", lambda: "trace-host")
    for module, attr in (("insane.api.session", "UdpTransport"), ("insane.driver", "UdpTransport")):
        try:
            patch(importlib.import_module(module), attr, MemoryTransport)
        except (ImportError, AttributeError):
            continue
    random.seed(42)
    try:
        yield
    finally:
        for obj, name, value in reversed(saved):
            setattr(obj, name, value)


def config(port: int, other: int) -> dict[str, Any]:
    return {
        "domain": 77,
        "channels": {"bulk": {"qos": ["reliable", "ordered"]}, "stream.>": {"qos": ["reliable"]}},
        "transports": {"udp": {"bind": "127.0.0.1", "port": port}},
        "discovery": {
            "host_registry": False,
            "multicast": {"enabled": False},
            "peers": [f"127.0.0.1:{other}"],
        },
    }


async def scenario(network: MemoryNetwork) -> None:
    import insane

    loop = asyncio.get_running_loop()
    a = await insane.connect(config(7101, 7102), name="alpha")
    b = await insane.connect(config(7102, 7101), name="beta")

    def deliver(msg: insane.Msg) -> None:
        digest = hashlib.sha256(msg.data).hexdigest()[:16]
        network.lines.append(f"{network.stamp()} deliver {msg.subject} {digest} {msg.headers}")

    async def record(msg: insane.Msg) -> None:
        deliver(msg)

    async def echo(msg: insane.Msg) -> None:
        await msg.respond(msg.data[::-1])

    await b.subscribe("orders.>", cb=record)
    await b.subscribe("bulk", cb=record)
    await b.subscribe("stream.>", cb=record)
    await b.subscribe("svc.echo", cb=echo)
    await a.flush()
    await b.flush()
    for i in range(20):
        headers = {"n": str(i)} if i % 3 else None
        await a.publish(f"orders.eu.{i}", f"order {i}".encode(), headers=headers)
    for i in range(3):
        reply = await a.request("svc.echo", f"ping {i}".encode(), timeout=1.0)
        deliver(reply)
    await a.publish("bulk", random.Random(1).randbytes(1 << 20))
    await a.flush()
    await asyncio.sleep(0.5)
    network.loss = 0.1
    for i in range(300):
        await a.publish(f"stream.{i % 4}", i.to_bytes(4, "big") * 50)
    await a.flush()
    await asyncio.sleep(3.0)
    network.loss = 0.0
    await asyncio.sleep(1.0)
    await a.close()
    await b.close()
    del loop


def run() -> list[str]:
    loop = VirtualLoop()
    network = MemoryNetwork(loop, seed=3)
    with deterministic(network):
        try:
            loop.run_until_complete(scenario(network))
        finally:
            loop.close()
    return network.lines


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("record", "compare"):
        print("usage: python tests/trace.py record|compare FILE", file=sys.stderr)
        return 2
    if os.environ.get("PYTHONHASHSEED") != "0":  # set iteration orders fixed too
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        os.execve(sys.executable, [sys.executable, __file__, *argv], env)
    lines = run()
    path = Path(argv[1])
    if argv[0] == "record":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        print(f"trace: {len(lines)} lines written to {path}")
        return 0
    want = path.read_text().splitlines()
    for i, (got, exp) in enumerate(zip(lines, want, strict=False)):
        if got != exp:
            print(f"trace: line {i + 1} differs:\n  recorded {exp[:160]}\n  now      {got[:160]}")
            return 1
    if len(lines) != len(want):
        print(f"trace: {len(lines)} lines now, {len(want)} recorded")
        return 1
    print(f"trace: {len(lines)} lines, identical")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
