"""Which data plane a session runs: the engine behind the `PeerNode` contract.

A setting of the environment, like ``INSANE_CONFIG``, so it lives beside the configuration.

``INSANE_ENGINE`` names it: ``native`` (insane/engine, C parts behind the contract) or
``python`` (insane/protocol/node.py, the reference). Unset: ``native`` where the extension was
built, else ``python``. Every engine implements the contract of
insane/protocol/node.py (publish, receive_datagrams, datagrams_to_send, get_timer /
handle_timer, next_event); the test suite and the recorded trace (tests/trace.py) run against
whichever is chosen, so a second engine is held to the same behaviour and the same bytes.

A value naming no engine, or ``native`` where it was not built, fails fast, before anything
is opened, with the variable, the value and what there is.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from insane.protocol.node import PeerNode

from insane import engine as native_engine
from insane.qos.config import ConfigError

#: engine name -> "module:class" implementing the PeerNode contract
ENGINES: dict[str, str] = {
    "python": "insane.protocol.node:PeerNode",
    "native": "insane.engine.node:NativeNode",
}


def engine_name(environ: dict[str, str] | None = None) -> str:
    """The engine ``INSANE_ENGINE`` chooses (``ConfigError`` for one there is not)."""
    env = os.environ if environ is None else environ
    name = env.get("INSANE_ENGINE", "").strip()
    if not name:
        return "native" if native_engine.available() else "python"
    if name not in ENGINES:
        raise ConfigError(
            f"INSANE_ENGINE (environment): expected one of {', '.join(sorted(ENGINES))}, "
            f"got {name!r}"
        )
    if name == "native" and not native_engine.available():
        raise ConfigError(f"INSANE_ENGINE (environment): native, but {why_not_native()}")
    return name


def why_not_native() -> str:
    """Why the native engine cannot be used ('' when it can)."""
    try:
        native_engine.native()
    except ImportError as exc:
        return str(exc)
    return ""


def node_class(name: str | None = None) -> type[PeerNode]:
    """The node class of engine ``name`` (default: the one ``INSANE_ENGINE`` chooses)."""
    module, _, attr = ENGINES[name or engine_name()].partition(":")
    cls: type[PeerNode] = getattr(importlib.import_module(module), attr)
    return cls
