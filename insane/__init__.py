"""INSANE for Python: broker-less publish/subscribe with declarative QoS.

import insane
async with insane.connect() as s:
    sub = await s.subscribe("orders.>")
    await s.publish("orders.eu.new", b"hello")
    msg = await sub.next_msg(timeout=1)
"""

from insane import errors
from insane.message import Msg
from insane.qos import Config, ConfigError, load_config
from insane.session import Session, connect
from insane.subjects import SubjectError, matches, validate_pattern, validate_subject
from insane.subscription import Subscription

__all__ = [
    "Config",
    "ConfigError",
    "Msg",
    "Session",
    "SubjectError",
    "Subscription",
    "connect",
    "errors",
    "load_config",
    "matches",
    "validate_pattern",
    "validate_subject",
]
__version__ = "0.1.0"
