"""nats-py's ``nats.aio.subscription``: ``Subscription`` is INSANE's own (no wrapping)."""

from insane.api.subscription import (
    DEFAULT_PENDING_BYTES_LIMIT as DEFAULT_SUB_PENDING_BYTES_LIMIT,
)
from insane.api.subscription import (
    DEFAULT_PENDING_MSGS_LIMIT as DEFAULT_SUB_PENDING_MSGS_LIMIT,
)
from insane.api.subscription import Subscription

__all__ = ["DEFAULT_SUB_PENDING_BYTES_LIMIT", "DEFAULT_SUB_PENDING_MSGS_LIMIT", "Subscription"]
