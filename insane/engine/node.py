"""`NativeNode`: the `PeerNode` contract with the engine's native parts behind it.

Each part replaces its Python reference one for one, with the same interface and the same
results (tests/test_engine_*.py hold them together on random and hostile input); the node's
logic around them is the reference's. Which parts are native is ``NATIVE_PARTS``.
"""

from __future__ import annotations

from insane.engine import native
from insane.protocol.node import PeerNode
from insane.protocol.reliable_links import ReliableLinks

#: The parts this engine runs in C.
NATIVE_PARTS: tuple[str, ...] = ("rxstream",)


class NativeLinks(ReliableLinks):
    """The reliable links, on the engine's streams."""

    receive_stream_class = native().ReceiveStream


class NativeNode(PeerNode):
    """The data plane of one session, on the native engine (see the module docstring)."""

    links_class = NativeLinks


def check() -> None:
    """Raise ImportError if the engine was not built."""
    native()
