"""INSANE for Python: broker-less publish/subscribe with declarative QoS.

import insane
async with insane.connect() as s:
    sub = await s.subscribe("orders.>")
    await s.publish("orders.eu.new", b"hello")
    msg = await sub.next_msg(timeout=1)

The public names are loaded when first used, so that importing the package (or the NATS
facade, ``insane.nats``) does not pay for the session, the configuration models and the
metrics before ``connect()`` needs them.

The library is quiet: it logs to the ``insane`` logger (session life at INFO, trouble at
WARNING), which has only a ``NullHandler``, and it never configures logging or writes to
stdout or stderr itself.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from insane.version import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

#: Public name -> the module that defines it.
_LAZY = {
    "Config": "insane.qos",
    "ConfigError": "insane.qos",
    "load_config": "insane.qos",
    "Msg": "insane.api.message",
    "Session": "insane.api.session",
    "connect": "insane.api.connect",
    "SubjectError": "insane.subjects",
    "matches": "insane.subjects",
    "validate_pattern": "insane.subjects",
    "validate_subject": "insane.subjects",
    "Subscription": "insane.api.subscription",
}

if TYPE_CHECKING:
    from insane import errors
    from insane.api.connect import connect
    from insane.api.message import Msg
    from insane.api.session import Session
    from insane.api.subscription import Subscription
    from insane.qos import Config, ConfigError, load_config
    from insane.subjects import SubjectError, matches, validate_pattern, validate_subject

__all__ = [
    "Config",
    "ConfigError",
    "Msg",
    "Session",
    "SubjectError",
    "Subscription",
    "__version__",
    "connect",
    "errors",
    "load_config",
    "matches",
    "validate_pattern",
    "validate_subject",
]


if not TYPE_CHECKING:  # type checkers see the imports above, and check every name

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'insane' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))
