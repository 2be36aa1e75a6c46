"""``compat.nats`` is :mod:`insane.nats` under the name the import swap uses.

    import compat.nats as nats          # was: import nats
    import insane.nats as nats          # the same module, for apps with a ``compat`` of their own

Every module of the package is registered under both names, so ``compat.nats.errors`` *is*
``insane.nats.errors`` (an ``except compat.nats.errors.TimeoutError`` catches what
``insane.nats`` raises), and ``from compat.nats.aio.client import Client`` works as it does
with nats-py.
"""

from __future__ import annotations

import sys

import insane.nats
import insane.nats.aio
import insane.nats.aio.client
import insane.nats.aio.errors
import insane.nats.aio.msg
import insane.nats.aio.subscription
import insane.nats.errors

for _name, _module in list(sys.modules.items()):
    if _name == "insane.nats" or _name.startswith("insane.nats."):
        sys.modules["compat" + _name.removeprefix("insane")] = _module
sys.modules[__name__] = insane.nats
