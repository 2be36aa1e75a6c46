"""Fragmentation and reassembly of frames larger than one datagram (sans-IO).

The sender splits an oversized frame body into FRAG frames of at most ``chunk`` bytes, each
carrying (message id, total length, offset, inner frame type). The receiver reassembles per
(sender, message id) with bounded memory: a limit on one message, a budget for all partial
messages together, and a timeout after which partial messages are discarded. Overlapping or
inconsistent fragments (hostile or corrupt) discard the message; nothing here raises on input.
"""

from __future__ import annotations

import bisect
import collections
from dataclasses import dataclass, field

from insane.protocol import wire

_COMPLETED_MEMORY = 4096


class Fragmenter:
    """Splits bodies into FRAG frames, numbering messages per sender."""

    def __init__(self) -> None:
        self._next_id = 1

    def split(self, inner_type: int, body: bytes | memoryview, chunk: int) -> list[bytes]:
        if chunk <= 0:
            raise ValueError("chunk must be positive")
        msg_id = self._next_id
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF or 1
        view = memoryview(body)
        total = len(view)
        return [
            wire.encode_frag(msg_id, total, off, inner_type, view[off : off + chunk])
            for off in range(0, total, chunk)
        ]


@dataclass
class _Partial:
    inner_type: int
    total: int
    buf: bytearray
    started: float
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    received: int = 0


@dataclass(frozen=True)
class Reassembled:
    sender: int
    inner_type: int
    body: bytes


class Reassembler:
    """Collects fragments; ``feed`` returns the whole body once the last piece arrives."""

    def __init__(
        self,
        *,
        max_message: int = 64 * 1024 * 1024,
        max_pending_bytes: int = 256 * 1024 * 1024,
        timeout: float = 10.0,
    ) -> None:
        self.max_message = max_message
        self.max_pending_bytes = max_pending_bytes
        self.timeout = timeout
        self._partials: dict[tuple[int, int], _Partial] = {}
        #: Recently completed messages, so a late duplicate fragment does not start them anew.
        self._completed: collections.OrderedDict[tuple[int, int], None] = collections.OrderedDict()
        self._pending_bytes = 0
        #: Reasons for discarded messages since the last ``take_drops`` (metric labels).
        self._drops: list[str] = []

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def take_drops(self) -> list[str]:
        drops, self._drops = self._drops, []
        return drops

    def feed(
        self,
        sender: int,
        msg_id: int,
        total: int,
        offset: int,
        inner_type: int,
        chunk: memoryview | bytes,
        now: float,
    ) -> Reassembled | None:
        key = (sender, msg_id)
        part = self._partials.get(key)
        if part is None:
            if key in self._completed:
                self._drops.append("duplicate")
                return None
            if total > self.max_message:
                self._drops.append("too_large")
                return None
            if self._pending_bytes + total > self.max_pending_bytes:
                self.expire(now)
                if self._pending_bytes + total > self.max_pending_bytes:
                    self._drops.append("reassembly_memory")
                    return None
            part = _Partial(inner_type, total, bytearray(total), now)
            self._partials[key] = part
            self._pending_bytes += total
        elif part.total != total or part.inner_type != inner_type:
            self._discard(key, "inconsistent_fragment")
            return None
        end = offset + len(chunk)
        if end > total:
            self._discard(key, "inconsistent_fragment")
            return None
        i = bisect.bisect_left(part.starts, offset)
        if i < len(part.starts) and part.starts[i] == offset and part.ends[i] == end:
            return None  # exact duplicate
        if (i > 0 and part.ends[i - 1] > offset) or (i < len(part.starts) and part.starts[i] < end):
            self._discard(key, "inconsistent_fragment")
            return None
        part.starts.insert(i, offset)
        part.ends.insert(i, end)
        part.buf[offset:end] = chunk
        part.received += len(chunk)
        if part.received < total:
            return None
        del self._partials[key]
        self._pending_bytes -= total
        self._completed[key] = None
        if len(self._completed) > _COMPLETED_MEMORY:
            self._completed.popitem(last=False)
        return Reassembled(sender, inner_type, bytes(part.buf))

    def _discard(self, key: tuple[int, int], reason: str) -> None:
        part = self._partials.pop(key, None)
        if part is not None:
            self._pending_bytes -= part.total
        self._drops.append(reason)

    def expire(self, now: float) -> int:
        """Drop partial messages older than the timeout; return how many."""
        stale = [k for k, p in self._partials.items() if now - p.started > self.timeout]
        for k in stale:
            self._discard(k, "reassembly_timeout")
        return len(stale)

    def forget_sender(self, sender: int) -> None:
        for k in [k for k in self._partials if k[0] == sender]:
            part = self._partials.pop(k)
            self._pending_bytes -= part.total
