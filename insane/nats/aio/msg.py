"""nats-py's ``nats.aio.msg``: ``Msg`` is INSANE's own message class (no wrapping)."""

from insane.api.message import Msg

__all__ = ["Msg"]
