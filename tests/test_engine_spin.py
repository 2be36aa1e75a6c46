"""Poll mode's spin in C (`_engine.spin_udp`, src/py_spin.c) against its reference, the Python
loop of `UdpTransport.spin`: the same transport on a real loopback socket, once with the
engine's loop (``native_spin``) and once without, fed the same datagrams. Both must deliver the
same batches (one datagram each, with the sender's address), stop at the same point for the
same reason (``until()`` held, nothing came for ``idle``, ``limit`` passed, the socket failed),
and let a failing delivery's exception through."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from netns import engine_built

from insane.transports.udp import UdpTransport


def spin_udp() -> Any:
    engine_built()
    from insane.engine import native

    return native().spin_udp


def run(
    native: bool,
    datagrams: list[bytes],
    *,
    stop_after: int | None = None,
    idle: float = 0.02,
    limit: float = 5.0,
    before: Callable[[UdpTransport], None] | None = None,
    deliver_error: int | None = None,
) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        got: list[list[tuple[bytes, Any]]] = []

        def deliver(batch: list[tuple[bytes, Any]]) -> None:
            got.append(list(batch))
            if deliver_error is not None and len(got) == deliver_error:
                raise RuntimeError("the delivery failed")

        t = UdpTransport("127.0.0.1")
        await t.start(deliver)
        loop = asyncio.get_running_loop()
        loop.remove_reader(t.socket.fileno())  # (only the spin reads here)
        t.native_spin = spin_udp() if native else None
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.bind(("127.0.0.1", 0))
        try:
            for d in datagrams:
                sender.sendto(d, t.local_address)
            time.sleep(0.05)  # (on loopback they are in the socket buffer now)
            if before is not None:
                before(t)
            until = (lambda: len(got) >= stop_after) if stop_after is not None else None
            t0 = time.perf_counter()
            error = None
            try:
                result: bool | None = t.spin(until, idle, limit)
            except RuntimeError as exc:
                result, error = None, str(exc)
            return {
                "result": result,
                "error": error,
                "got": got,
                "sender": sender.getsockname(),
                "elapsed": time.perf_counter() - t0,
                "spinning_after": t.spinning,
            }
        finally:
            sender.close()
            await t.close()

    return asyncio.run(main())


def both(datagrams: list[bytes], **kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    python, native = run(False, datagrams, **kw), run(True, datagrams, **kw)
    for out in (python, native):
        assert not out["spinning_after"]
        for batch in out["got"]:
            assert len(batch) == 1 and batch[0][1] == out["sender"]
    strip = [[d for d, _ in b] for b in python["got"]]
    assert [[d for d, _ in b] for b in native["got"]] == strip
    assert native["result"] == python["result"]
    assert native["error"] == python["error"]
    return python, native


def test_until_ends_the_spin_after_the_delivery_it_waited_for() -> None:
    sent = [bytes([i]) * (i * 97 % 1400 + 1) for i in range(8)]
    python, native = both(sent, stop_after=3)
    assert python["result"] is True
    assert [b[0][0] for b in native["got"]] == sent[:3]


def test_idle_ends_the_spin_when_nothing_comes() -> None:
    python, native = both([], idle=0.03)
    assert python["result"] is False and native["got"] == []
    assert native["elapsed"] >= 0.03 and python["elapsed"] >= 0.03


def test_everything_waiting_is_delivered_one_by_one_then_idle_ends_it() -> None:
    sent = [i.to_bytes(2, "big") * 30 for i in range(40)] + [b"z" * 65000]
    python, native = both(sent, idle=0.02)
    assert python["result"] is False
    assert [b[0][0] for b in native["got"]] == sent


def test_limit_ends_the_spin_after_a_delivery() -> None:
    python, native = both([b"a", b"b", b"c"], limit=0.0)
    assert python["result"] is False and len(native["got"]) == 1


def test_a_socket_error_ends_the_spin_without_a_delivery() -> None:
    """An ICMP port unreachable (IP_RECVERR makes it the socket's pending error) stops both
    loops at once; the event loop's reader reports it afterwards."""

    def provoke(t: UdpTransport) -> None:
        closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        closed.close()
        t.socket.sendto(b"nobody", ("127.0.0.1", port))
        time.sleep(0.05)

    python, native = both([], before=provoke, idle=1.0)
    assert python["result"] is False and native["got"] == []
    assert native["elapsed"] < 1.0  # (ended by the error, not by idle)


def test_a_failing_delivery_raises_through_the_spin() -> None:
    python, native = both([b"1", b"2", b"3"], deliver_error=2)
    assert python["error"] == "the delivery failed"
    assert len(native["got"]) == 2


def test_bad_arguments() -> None:
    spin = spin_udp()
    with pytest.raises(TypeError):
        spin(0, print, None, 0.1)
    with pytest.raises(ValueError):
        spin(-1, print, None, 0.1, 0.1)
