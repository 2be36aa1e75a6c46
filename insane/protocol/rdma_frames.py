"""The RDMA_SETUP frame's body (docs/wire-format.md, RDMA): one side of a connection, or a
refusal with its reason.

``flags:u8 to:u64 qpn:u32 psn:u32 lid:u16 mtu:u16 gid:16 credits:u16 buffer:u32 [reason]``
"""

from __future__ import annotations

import struct

from insane.protocol import wire
from insane.transports.rdma.endpoint import Endpoint

ANSWER = 0x01
REFUSE = 0x02
_BODY = struct.Struct("!BQIIHH16sHI")
BODY_SIZE = _BODY.size
MAX_REASON = 256


def encode(flags: int, to: int, ep: Endpoint | None, reason: str = "") -> bytes:
    """An RDMA_SETUP body; a REFUSE carries no endpoint (zeros) and a reason."""
    if ep is None:
        head = _BODY.pack(flags, to, 0, 0, 0, 0, bytes(16), 0, 0)
    else:
        head = _BODY.pack(flags, to, ep.qpn, ep.psn, ep.lid, ep.mtu, ep.gid, ep.credits, ep.buffer)
    return head + reason.encode()[:MAX_REASON]


def decode(body: memoryview | bytes) -> tuple[int, int, Endpoint | None, str]:
    """(flags, to, endpoint or None for a REFUSE, reason); WireError when malformed."""
    if len(body) < BODY_SIZE:
        raise wire.WireError("truncated", "rdma setup")
    flags, to, qpn, psn, lid, mtu, gid, credits, buffer = _BODY.unpack_from(body)
    if flags & ~(ANSWER | REFUSE):
        raise wire.WireError("malformed", f"rdma setup flags {flags:#x}")
    rest = bytes(body[BODY_SIZE:])
    if len(rest) > MAX_REASON:
        raise wire.WireError("malformed", "rdma setup reason too long")
    reason = rest.decode(errors="replace")
    if flags & REFUSE:
        return flags, to, None, reason
    if rest:
        raise wire.WireError("malformed", "rdma setup: trailing bytes")
    try:
        ep = Endpoint(qpn, psn, lid, gid, mtu, credits, buffer)
    except ValueError as exc:
        raise wire.WireError("malformed", f"rdma setup: {exc}") from None
    return flags, to, ep, reason
