"""nats-py's API on INSANE: change ``import nats`` to ``import compat.nats as nats``, nothing else.

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
and object stores: broker features), is in :mod:`compat.nats.aio.client`.
"""

from __future__ import annotations

from typing import Any

from compat.nats import errors
from compat.nats.aio.client import Client
from compat.nats.aio.client import Client as NATS
from compat.nats.aio.msg import Msg
from compat.nats.aio.subscription import Subscription

__all__ = ["NATS", "Client", "Msg", "Subscription", "connect", "errors"]


async def connect(servers: str | list[str] = "nats://localhost:4222", **options: Any) -> Client:
    """Connect a :class:`Client` (nats-py's ``nats.connect``); see ``Client.connect``."""
    nc = Client()
    await nc.connect(servers, **options)
    return nc
