"""nats-py's API on INSANE: change ``import nats`` to ``import compat.nats as nats`` (or
``import insane.nats as nats``: the same module), nothing else.

    import compat.nats as nats

    nc = await nats.connect("nats://localhost:4222", name="app")   # no server is contacted
    sub = await nc.subscribe("orders.>")
    await nc.publish("orders.eu.new", b"hello")
    msg = await sub.next_msg(timeout=1)
    reply = await nc.request("svc.ping", b"ping", timeout=0.5)
    await nc.drain()

The messages, subscriptions and errors are INSANE's own objects (``insane.Msg``,
``insane.Subscription``, ``insane.errors``), which carry nats-py's names, attributes and
exception hierarchy, so nothing is wrapped per message. Channel QoS comes from the YAML file
named by ``INSANE_CONFIG`` (else ``./insane.yaml``, else the defaults: reliable, ordered, kernel
UDP on loopback). Which connect options matter, and what is not provided (JetStream, key-value
and object stores: broker features), is in :mod:`insane.nats.aio.client`.

``compat.nats`` is this package under a second name (``compat/nats/__init__.py``); apps that
have a ``compat`` module of their own import ``insane.nats`` instead.
"""

from __future__ import annotations

from typing import Any

from insane.nats import errors
from insane.nats.aio.client import Client
from insane.nats.aio.client import Client as NATS
from insane.nats.aio.msg import Msg
from insane.nats.aio.subscription import Subscription

__all__ = ["NATS", "Client", "Msg", "Subscription", "connect", "errors"]


async def connect(servers: str | list[str] = "nats://localhost:4222", **options: Any) -> Client:
    """Connect a :class:`Client` (nats-py's ``nats.connect``); see ``Client.connect``."""
    nc = Client()
    await nc.connect(servers, **options)
    return nc
