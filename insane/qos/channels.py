"""What a channel's QoS means to the data plane: the reliable stream its messages take."""

from __future__ import annotations

from insane.protocol.reliability import ORDERED, UNORDERED
from insane.qos.model import ChannelQoS


def stream_kind(qos: ChannelQoS) -> int:
    """The stream a channel's messages travel on: 0 (none: best effort), or a reliable kind."""
    if qos.reliability != "reliable":
        return 0
    return ORDERED if qos.ordering == "ordered" else UNORDERED
