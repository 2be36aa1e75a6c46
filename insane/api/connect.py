"""``insane.connect()``: load the configuration, make and start a session."""

from __future__ import annotations

import gc
import os
from types import TracebackType
from typing import Any

from insane.api.session import Session
from insane.qos import load_config

_frozen = False


def _freeze_startup_objects() -> None:
    """Once per process, after the first session is up: move everything alive (modules,
    classes, configuration: objects that live as long as the process) out of the cyclic
    garbage collector's generations (``gc.freeze()``).

    Messaging allocates many short-lived objects; each collection would otherwise walk those
    long-lived ones again, which measurably costs round-trip time.  Nothing is switched off:
    new objects are collected as before.  ``INSANE_GC_FREEZE=0`` leaves the collector alone.
    """
    global _frozen
    if not _frozen and os.environ.get("INSANE_GC_FREEZE", "1") != "0":
        _frozen = True
        gc.collect()
        gc.freeze()


class _Connecting:
    """What :func:`connect` returns: await it for a session, or use it with ``async with``."""

    def __init__(self, config: Any, name: str | None) -> None:
        self._config = config
        self._name = name
        self._session: Session | None = None

    async def _open(self) -> Session:
        cfg = load_config(self._config)
        session = Session(cfg, self._name)
        try:
            await session._start()
        except BaseException:
            await session.close()
            raise
        self._session = session
        _freeze_startup_objects()
        return session

    def __await__(self) -> Any:
        return self._open().__await__()

    async def __aenter__(self) -> Session:
        return await self._open()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()


def connect(config: Any = None, name: str | None = None) -> _Connecting:
    """Join the bus. ``config``: a YAML path, a mapping, a Config, or None (``INSANE_CONFIG``,
    then ``./insane.yaml``, then the embedded default: kernel UDP on loopback)."""
    return _Connecting(config, name)
