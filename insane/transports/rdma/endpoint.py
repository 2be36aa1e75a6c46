"""One side of an RDMA reliable connection, as the other side needs it to connect (the
RDMA_SETUP frame carries it: protocol/rdma_frames.py)."""

from __future__ import annotations

from dataclasses import dataclass

from insane.transports.rdma.credits import MIN_DEPTH

MTUS = (256, 512, 1024, 2048, 4096)
#: Receive buffers hold at least a datagram header and a frame.
MIN_BUFFER = 64
MAX_BUFFER = 1 << 24


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One side of a reliable connection, as the other side needs it."""

    qpn: int
    psn: int
    lid: int
    gid: bytes
    mtu: int
    #: Receive buffers posted for the peer (its first credits) and the bytes each holds.
    credits: int
    buffer: int

    def __post_init__(self) -> None:
        if not 0 < self.qpn < 1 << 24 or not 0 <= self.psn < 1 << 24:
            raise ValueError("qpn and psn are 24-bit numbers (qpn not 0)")
        if len(self.gid) != 16 or not 0 <= self.lid < 1 << 16:
            raise ValueError("a gid is 16 bytes, a lid 16 bits")
        if self.mtu not in MTUS:
            raise ValueError(f"mtu must be one of {MTUS}")
        if not MIN_DEPTH <= self.credits < 1 << 16:
            raise ValueError(f"credits must be {MIN_DEPTH}..65535")
        if not MIN_BUFFER <= self.buffer <= MAX_BUFFER:
            raise ValueError(f"buffer must be {MIN_BUFFER}..{MAX_BUFFER} bytes")
