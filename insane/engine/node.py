"""`NativeNode`: the `PeerNode` contract with the engine's native parts behind it.

Each part replaces its Python reference one for one, with the same interface and the same
results (tests/test_engine_*.py hold them together on random and hostile input); the node's
logic around them is the reference's. Which parts are native is ``NATIVE_PARTS``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from insane.engine import native
from insane.protocol import security
from insane.protocol.node import PeerNode
from insane.protocol.node_base import Datagrams, FastSend
from insane.protocol.reliability import ReceiveStream, SendStream
from insane.protocol.reliable_links import ReliableLinks

#: The parts the node runs in C. (The datagram walk, src/walk.c, is the fuzzer's receive path
#: for now, and the base of the receive loop that moves to C next.)
NATIVE_PARTS: tuple[str, ...] = ("aead", "txstream", "rxstream", "publish", "spin")


def _part(name: str, reference: Any) -> Any:
    """The engine's class ``name``; the reference where the engine was not built (this module
    still imports then, and insane/qos/engine.py never chooses the node)."""
    try:
        return getattr(native(), name)
    except ImportError:
        return reference


class NativeLinks(ReliableLinks):
    """The reliable links, on the engine's streams."""

    send_stream_class = _part("SendStream", SendStream)
    receive_stream_class = _part("ReceiveStream", ReceiveStream)


class NativeNode(PeerNode):
    """The data plane of one session, on the native engine (see the module docstring)."""

    links_class = NativeLinks
    # (C types with security.Sealer's and security.Opener's interface: _engine.Sealer/Opener)
    sealer_class = _part("Sealer", security.Sealer)
    fast_send_class = _part("FastSend", FastSend)
    # (a builtin function: no binding to the instance; the Python loop where unbuilt)
    udp_spin = _part("spin_udp", None)
    opener_class = _part("Opener", security.Opener)

    def publisher(self, reference: Callable[..., Awaitable[None]]) -> Any:
        """`Session.publish`'s common path in C (`_engine.Publisher`, src/py_publish.c): a
        plain message to a subject with a fast path returns a finished awaitable, anything
        else is ``reference``'s."""
        try:
            return native().Publisher(self, reference)
        except ImportError:
            return None

    def _open(self, batch: Datagrams) -> Datagrams:
        """`Inbound._open` in one native call (`Opener.open_batch`): the same drops by reason,
        the same permissions learnt from the key each sender sealed with."""
        opener: Any = self._opener
        assert opener is not None
        open_batch = getattr(opener, "open_batch", None)
        if open_batch is None:  # (a Python opener)
            return super()._open(batch)
        opened, drops = open_batch(batch, self._wall_clock(), self.domain)
        for reason in drops:
            self._drop(reason)
        ids = self._identities
        if ids is not None and opened:
            by_key, perms, grants = ids.by_key, self._sender_perms, ids.permissions
            for (data, _addr), kid in zip(opened, opener.batch_kids, strict=True):
                who = by_key.get(kid)
                if who is not None:
                    perms[int.from_bytes(data[8:16], "big")] = grants[who]
        opened_batch: Datagrams = opened
        return opened_batch


def check() -> None:
    """Raise ImportError if the engine was not built."""
    native()
