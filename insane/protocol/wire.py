"""The versioned wire format: datagram header, frames, and their codec (see docs/wire-format.md).

Every datagram starts with a 16-byte header (magic ``IN``, version, flags, domain, sender peer
id) followed by one or more frames, each ``type:u8 flags:u8 length:u16`` and a body. Frames too
large for one datagram travel as FRAG frames and are reassembled by ``protocol.fragments``.
All integers are big-endian. Decoding never trusts a length: anything that does not add up
raises :class:`WireError` with a short reason used as a metric label.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

MAGIC = b"IN"
VERSION = 2

HEADER = struct.Struct("!2sBBIQ")  # magic, version, flags, domain, sender
_HEADER_FAST = struct.Struct("!3sBIQ")  # magic and version as one field, flags, domain, sender
PREFIX = MAGIC + bytes((VERSION,))
FRAME_HEADER = struct.Struct("!BBH")  # type, flags, body length
HEADER_SIZE = HEADER.size
FRAME_HEADER_SIZE = FRAME_HEADER.size
MAX_FRAME_BODY = 0xFFFF

# Frame types.
ANNOUNCE = 1
HEARTBEAT = 2
INTEREST = 3
INTEREST_ACK = 4
MSG = 5
FRAG = 6
BYE = 7
INTEREST_REQ = 8
POSITION = 9
WINDOW = 10
SEQ = 11
ACK = 12
NACK = 13
TAIL = 14
GAP = 15
RDMA_SETUP = 16

FRAME_NAMES = {
    ANNOUNCE: "announce",
    HEARTBEAT: "heartbeat",
    INTEREST: "interest",
    INTEREST_ACK: "interest_ack",
    MSG: "msg",
    FRAG: "frag",
    BYE: "bye",
    INTEREST_REQ: "interest_req",
    POSITION: "position",
    WINDOW: "window",
    SEQ: "seq",
    ACK: "ack",
    NACK: "nack",
    TAIL: "tail",
    GAP: "gap",
    RDMA_SETUP: "rdma_setup",
}

_HEARTBEAT = struct.Struct("!IQQQ")  # interest version, sent ns, echoed ns, hold ns
_U32 = struct.Struct("!I")
_INTEREST_HEAD = struct.Struct("!IH")  # version, entry count
_INTEREST_ENTRY = struct.Struct("!IHB")  # sid, pattern length, queue length
_MSG_HEAD = struct.Struct("!HHIB")  # subject len, reply len, headers len, queue count
_FRAG_HEAD = struct.Struct("!IIIB")  # message id, total length, offset, inner frame type
_HDR_COUNT = struct.Struct("!H")
_HDR_ITEM = struct.Struct("!HH")

MSG_HEAD_SIZE = _MSG_HEAD.size
_POSITION = struct.Struct("!BBHQ")  # a whole POSITION frame: header and position
POSITION_FRAME_SIZE = _POSITION.size
_WINDOW = struct.Struct("!QI")  # acknowledged position, window
#: Frame header and MSG head in one: type, flags, body length, subject/reply/headers lengths,
#: queue count.  For the fast paths that write or read a plain message in one step.
MSG_FRAME_HEAD = struct.Struct("!BBHHHIB")
FRAG_HEAD_SIZE = _FRAG_HEAD.size
MAX_ANNOUNCE = 8192


class WireError(ValueError):
    """A datagram or frame that is malformed; ``reason`` is a short metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class DatagramHeader(NamedTuple):
    version: int
    flags: int
    domain: int
    sender: int


@dataclass(frozen=True, slots=True)
class InterestEntry:
    sid: int
    pattern: str
    queue: str


class Message(NamedTuple):
    """A decoded MSG frame."""

    subject: str
    reply: str
    headers: dict[str, str] | None
    queues: tuple[str, ...]
    payload: bytes


# ---------------------------------------------------------------------------------------------
# Datagram level


def encode_header(domain: int, sender: int, flags: int = 0) -> bytes:
    return HEADER.pack(MAGIC, VERSION, flags, domain, sender)


_new_header = tuple.__new__


def decode_header(data: bytes | memoryview) -> DatagramHeader:
    if len(data) < HEADER_SIZE:
        raise WireError("truncated", "shorter than the datagram header")
    prefix, flags, domain, sender = _HEADER_FAST.unpack_from(data, 0)
    if prefix != PREFIX:
        if prefix[:2] != MAGIC:
            raise WireError("foreign", "bad magic")
        raise WireError("bad_version", f"version {prefix[2]}")
    return _new_header(DatagramHeader, (VERSION, flags, domain, sender))


def frame_spans(
    data: bytes | memoryview, start: int = HEADER_SIZE
) -> list[tuple[int, int, int, int]]:
    """Split a datagram into frames as (type, flags, body start, body end) offsets into
    ``data``, without copying; raise if any length is wrong."""
    end = len(data)
    pos = start
    spans: list[tuple[int, int, int, int]] = []
    unpack = FRAME_HEADER.unpack_from
    while pos < end:
        if end - pos < FRAME_HEADER_SIZE:
            raise WireError("truncated", "partial frame header")
        ftype, fflags, length = unpack(data, pos)
        pos += FRAME_HEADER_SIZE
        if pos + length > end:
            raise WireError("truncated", "frame longer than datagram")
        spans.append((ftype, fflags, pos, pos + length))
        pos += length
    if not spans:
        raise WireError("empty", "datagram without frames")
    return spans


def iter_frames(
    data: bytes | memoryview, start: int = HEADER_SIZE
) -> list[tuple[int, int, memoryview]]:
    """Split a datagram body into (type, flags, body) triples; raise if any length is wrong."""
    view = memoryview(data)
    return [(t, f, view[a:b]) for t, f, a, b in frame_spans(data, start)]


def frame(ftype: int, body: bytes, flags: int = 0) -> bytes:
    if len(body) > MAX_FRAME_BODY:
        raise ValueError("frame body exceeds 65535 bytes; fragment it")
    return FRAME_HEADER.pack(ftype, flags, len(body)) + body


def pack_datagrams(header: bytes, frames: list[bytes], max_size: int) -> list[bytes]:
    """Coalesce encoded frames into as few datagrams as fit ``max_size`` (frames stay whole)."""
    out: list[bytes] = []
    batch: list[bytes] = [header]
    size = len(header)
    for f in frames:
        if size + len(f) > max_size and len(batch) > 1:
            out.append(b"".join(batch))
            batch = [header]
            size = len(header)
        batch.append(f)
        size += len(f)
    if len(batch) > 1:
        out.append(b"".join(batch))
    return out


# ---------------------------------------------------------------------------------------------
# Control frames


def announce_body(info: dict[str, Any]) -> bytes:
    body = json.dumps(info, separators=(",", ":")).encode()
    if len(body) > MAX_ANNOUNCE:
        raise ValueError("announce too large")
    return body


def decode_announce(body: memoryview) -> dict[str, Any]:
    if len(body) > MAX_ANNOUNCE:
        raise WireError("malformed", "announce too large")
    try:
        info = json.loads(bytes(body))
    except (ValueError, RecursionError) as exc:
        raise WireError("malformed", f"announce is not JSON: {exc}") from None
    if not isinstance(info, dict):
        raise WireError("malformed", "announce is not an object")
    return info


def heartbeat_body(interest_version: int, sent_ns: int, echo_ns: int, hold_ns: int) -> bytes:
    return _HEARTBEAT.pack(interest_version, sent_ns, echo_ns, hold_ns)


def decode_heartbeat(body: memoryview) -> tuple[int, int, int, int]:
    if len(body) != _HEARTBEAT.size:
        raise WireError("malformed", "heartbeat size")
    return _HEARTBEAT.unpack_from(body)


def u32_body(value: int) -> bytes:
    return _U32.pack(value)


def decode_u32(body: memoryview) -> int:
    if len(body) != 4:
        raise WireError("malformed", "expected a 32-bit value")
    return int(_U32.unpack_from(body)[0])


def encode_interest_body(version: int, entries: list[InterestEntry]) -> bytes:
    """The whole interest, sent again at every change: each entry is encoded once and kept
    (a session with thousands of subscriptions re-encodes none of them per subscribe)."""
    cache = _interest_entries
    if len(cache) > 4 * len(entries) + 1024:
        cache.clear()
    parts = [_INTEREST_HEAD.pack(version, len(entries))]
    for e in entries:
        kept = cache.get(e.sid)
        if kept is None or kept[0] is not e:
            p = e.pattern.encode()
            q = e.queue.encode()
            kept = cache[e.sid] = (e, _INTEREST_ENTRY.pack(e.sid, len(p), len(q)) + p + q)
        parts.append(kept[1])
    return b"".join(parts)


#: sid -> (the entry, its encoding); an entry is kept as one object while it lasts (Router).
_interest_entries: dict[int, tuple[InterestEntry, bytes]] = {}


def decode_interest(body: memoryview | bytes) -> tuple[int, list[InterestEntry]]:
    view = memoryview(body)
    if len(view) < _INTEREST_HEAD.size:
        raise WireError("truncated", "interest header")
    version, count = _INTEREST_HEAD.unpack_from(view, 0)
    pos = _INTEREST_HEAD.size
    entries: list[InterestEntry] = []
    for _ in range(count):
        if len(view) - pos < _INTEREST_ENTRY.size:
            raise WireError("truncated", "interest entry")
        sid, plen, qlen = _INTEREST_ENTRY.unpack_from(view, pos)
        pos += _INTEREST_ENTRY.size
        if pos + plen + qlen > len(view):
            raise WireError("truncated", "interest entry text")
        try:
            pattern = bytes(view[pos : pos + plen]).decode()
            queue = bytes(view[pos + plen : pos + plen + qlen]).decode()
        except UnicodeDecodeError:
            raise WireError("malformed", "interest text is not UTF-8") from None
        pos += plen + qlen
        entries.append(InterestEntry(sid, pattern, queue))
    if pos != len(view):
        raise WireError("malformed", "trailing bytes after interest")
    return version, entries


# ---------------------------------------------------------------------------------------------
# Messages


def encode_headers(headers: dict[str, str] | None) -> bytes:
    if not headers:
        return b""
    parts = [_HDR_COUNT.pack(len(headers))]
    for k, v in headers.items():
        kb = str(k).encode()
        vb = str(v).encode()
        parts.append(_HDR_ITEM.pack(len(kb), len(vb)))
        parts.append(kb)
        parts.append(vb)
    return b"".join(parts)


def decode_headers(view: memoryview) -> dict[str, str]:
    if len(view) < 2:
        raise WireError("truncated", "headers")
    (count,) = _HDR_COUNT.unpack_from(view, 0)
    pos = 2
    out: dict[str, str] = {}
    for _ in range(count):
        if len(view) - pos < 4:
            raise WireError("truncated", "header item")
        kl, vl = _HDR_ITEM.unpack_from(view, pos)
        pos += 4
        if pos + kl + vl > len(view):
            raise WireError("truncated", "header text")
        try:
            out[bytes(view[pos : pos + kl]).decode()] = bytes(
                view[pos + kl : pos + kl + vl]
            ).decode()
        except UnicodeDecodeError:
            raise WireError("malformed", "header is not UTF-8") from None
        pos += kl + vl
    if pos != len(view):
        raise WireError("malformed", "trailing bytes after headers")
    return out


def encode_msg_body(
    subject: bytes,
    reply: bytes,
    headers: bytes,
    queues: tuple[bytes, ...],
    payload: bytes | bytearray | memoryview,
) -> bytes:
    """A MSG body (without frame header); ``headers`` is :func:`encode_headers` output."""
    head = _MSG_HEAD.pack(len(subject), len(reply), len(headers), len(queues))
    if not queues:
        return b"".join((head, subject, reply, headers, payload))
    qparts = b"".join(bytes((len(q),)) + q for q in queues)
    return b"".join((head, subject, reply, headers, qparts, payload))


_new_message = tuple.__new__  # builds the NamedTuple without its Python-level __new__


def decode_msg(buf: bytes | memoryview, start: int = 0, end: int = -1) -> Message:
    """Decode the MSG body ``buf[start:end]`` (``end`` -1: to the end of ``buf``)."""
    if end < 0:
        end = len(buf)
    pos = start + MSG_HEAD_SIZE
    if pos > end:
        raise WireError("truncated", "msg header")
    slen, rlen, hlen, qcount = _MSG_HEAD.unpack_from(buf, start)
    if slen == 0 or pos + slen + rlen + hlen > end:
        raise WireError("truncated", "msg fields")
    try:
        subject = str(buf[pos : pos + slen], "utf-8")
        pos += slen
        reply = str(buf[pos : pos + rlen], "utf-8") if rlen else ""
        pos += rlen
    except UnicodeDecodeError:
        raise WireError("malformed", "subject is not UTF-8") from None
    headers = decode_headers(memoryview(buf)[pos : pos + hlen]) if hlen else None
    pos += hlen
    queues: tuple[str, ...] = ()
    if qcount:
        qs = []
        for _ in range(qcount):
            if pos >= end:
                raise WireError("truncated", "queue name")
            ql = buf[pos]
            pos += 1
            if pos + ql > end:
                raise WireError("truncated", "queue name")
            try:
                qs.append(str(buf[pos : pos + ql], "utf-8"))
            except UnicodeDecodeError:
                raise WireError("malformed", "queue is not UTF-8") from None
            pos += ql
        queues = tuple(qs)
    return _new_message(Message, (subject, reply, headers, queues, bytes(buf[pos:end])))


# ---------------------------------------------------------------------------------------------
# Fragments


def encode_frag(
    msg_id: int, total: int, offset: int, inner_type: int, chunk: bytes | memoryview
) -> bytes:
    body_len = FRAG_HEAD_SIZE + len(chunk)
    return b"".join(
        (
            FRAME_HEADER.pack(FRAG, 0, body_len),
            _FRAG_HEAD.pack(msg_id, total, offset, inner_type),
            chunk,
        )
    )


def decode_frag(body: memoryview) -> tuple[int, int, int, int, memoryview]:
    if len(body) < FRAG_HEAD_SIZE:
        raise WireError("truncated", "frag header")
    msg_id, total, offset, inner = _FRAG_HEAD.unpack_from(body, 0)
    chunk = body[FRAG_HEAD_SIZE:]
    if not chunk or offset + len(chunk) > total:
        raise WireError("malformed", "fragment outside its message")
    return msg_id, total, offset, inner, chunk


# ---------------------------------------------------------------------------------------------
# Flow control (see protocol/flow.py)


def position_frame(position: int, flags: int = 0) -> bytes:
    """A whole POSITION frame (it opens every datagram sent to a peer)."""
    return _POSITION.pack(POSITION, flags, 8, position)


def write_position(buf: bytearray, offset: int, position: int, flags: int = 0) -> None:
    """Fill in the POSITION frame at ``offset`` of a datagram being built."""
    _POSITION.pack_into(buf, offset, POSITION, flags, 8, position)


def read_position(data: bytes, offset: int) -> tuple[int, int]:
    """(flags, position) of the POSITION frame at ``offset``; the caller checked the type."""
    if len(data) < offset + POSITION_FRAME_SIZE:
        raise WireError("truncated", "position frame")
    _t, flags, length, position = _POSITION.unpack_from(data, offset)
    if length != 8:
        raise WireError("malformed", "position frame length")
    return flags, position


def window_body(acked: int, window: int) -> bytes:
    return _WINDOW.pack(acked, min(window, 0xFFFFFFFF))


def decode_window(body: memoryview | bytes) -> tuple[int, int]:
    if len(body) != _WINDOW.size:
        raise WireError("malformed", "window frame length")
    acked, window = _WINDOW.unpack(body)
    return acked, window


# ---------------------------------------------------------------------------------------------
# Reliable streams (see protocol/reliability.py)

#: A whole SEQ frame: header, then stream kind, epoch (the stream's incarnation), sequence
#: number, and the length of the whole datagram it opens (a truncated copy is told apart).
_SEQ = struct.Struct("!BBHBIQI")
SEQ_FRAME_SIZE = _SEQ.size
_SEQ_BODY = SEQ_FRAME_SIZE - 4
_STREAM_NUMBER = struct.Struct("!BIQ")  # ACK and TAIL bodies: stream kind, epoch, a number
_NACK_HEAD = struct.Struct("!BIH")  # stream kind, epoch, range count
_RANGE = struct.Struct("!QQ")  # start, end (exclusive)
_GAP = struct.Struct("!BIQQI")  # stream kind, epoch, start, end, messages in them
#: GAP ``messages`` when the sender cannot say how many messages the datagrams held.
UNKNOWN_MESSAGES = 0xFFFFFFFF
#: Most ranges one NACK carries, so that it fits one datagram on a 1500-byte MTU (the oldest
#: first; later ones are asked for next time).
MAX_NACK_RANGES = 64


class SeqFrame(NamedTuple):
    kind: int
    epoch: int
    seq: int


def seq_frame(kind: int, epoch: int, seq: int, length: int = 0) -> bytes:
    return _SEQ.pack(SEQ, 0, _SEQ_BODY, kind, epoch, seq, length)


def write_seq(buf: bytearray, offset: int, kind: int, epoch: int, seq: int) -> None:
    """Fill in the SEQ frame at ``offset`` of a datagram being built (``buf`` is the whole
    datagram: its length goes in the frame)."""
    _SEQ.pack_into(buf, offset, SEQ, 0, _SEQ_BODY, kind, epoch, seq, len(buf))


def read_seq(data: bytes, offset: int) -> SeqFrame:
    """(kind, epoch, seq) of the SEQ frame at ``offset`` of ``data``; the caller checked the
    type. A datagram whose length is not the one its SEQ frame declares is ``truncated`` (or
    padded: ``malformed``)."""
    if len(data) < offset + SEQ_FRAME_SIZE:
        raise WireError("truncated", "seq frame")
    _t, _f, length, kind, epoch, seq, total = _SEQ.unpack_from(data, offset)
    if length != _SEQ_BODY or seq == 0 or epoch == 0:
        raise WireError("malformed", "seq frame")
    if total != len(data):
        raise WireError("truncated" if total > len(data) else "malformed", "datagram length")
    return SeqFrame(kind, epoch, seq)


def stream_number_body(kind: int, epoch: int, number: int) -> bytes:
    """Body of an ACK (next expected number) or TAIL (last number sent) frame."""
    return _STREAM_NUMBER.pack(kind, epoch, number)


def decode_stream_number(body: memoryview | bytes) -> tuple[int, int, int]:
    """(kind, epoch, number) of an ACK or TAIL frame."""
    if len(body) != _STREAM_NUMBER.size:
        raise WireError("malformed", "ack/tail frame length")
    kind, epoch, number = _STREAM_NUMBER.unpack(body)
    return kind, epoch, number


def nack_body(kind: int, epoch: int, ranges: list[tuple[int, int]]) -> bytes:
    ranges = ranges[:MAX_NACK_RANGES]
    head = _NACK_HEAD.pack(kind, epoch, len(ranges))
    return head + b"".join(_RANGE.pack(a, b) for a, b in ranges)


def decode_nack(body: memoryview | bytes) -> tuple[int, int, list[tuple[int, int]]]:
    """(kind, epoch, ranges) of a NACK frame."""
    if len(body) < _NACK_HEAD.size:
        raise WireError("truncated", "nack frame")
    kind, epoch, count = _NACK_HEAD.unpack_from(body, 0)
    if count > MAX_NACK_RANGES or len(body) != _NACK_HEAD.size + count * _RANGE.size:
        raise WireError("malformed", "nack frame length")
    ranges = []
    for i in range(count):
        a, b = _RANGE.unpack_from(body, _NACK_HEAD.size + i * _RANGE.size)
        if not 0 < a < b:
            raise WireError("malformed", "nack range")
        ranges.append((a, b))
    return kind, epoch, ranges


def gap_body(kind: int, epoch: int, start: int, end: int, messages: int | None) -> bytes:
    held = UNKNOWN_MESSAGES if messages is None else min(messages, UNKNOWN_MESSAGES - 1)
    return _GAP.pack(kind, epoch, start, end, held)


def decode_gap(body: memoryview | bytes) -> tuple[int, int, int, int, int | None]:
    """(kind, epoch, start, end, messages or None) of a GAP frame."""
    if len(body) != _GAP.size:
        raise WireError("malformed", "gap frame length")
    kind, epoch, start, end, messages = _GAP.unpack(body)
    if not 0 < start < end:
        raise WireError("malformed", "gap range")
    return kind, epoch, start, end, None if messages == UNKNOWN_MESSAGES else messages


def count_messages(datagram: bytes | memoryview) -> int:
    """The messages a (well-formed) datagram carries: its MSG frames, and the fragmented
    messages whose last fragment it holds (a message in fragments counts where it ends)."""
    pos = HEADER_SIZE
    end = len(datagram)
    unpack = FRAME_HEADER.unpack_from
    n = 0
    while end - pos >= FRAME_HEADER_SIZE:
        ftype, _flags, length = unpack(datagram, pos)
        body = pos + FRAME_HEADER_SIZE
        pos = body + length
        if pos > end:
            break
        if ftype == MSG:
            n += 1
        elif ftype == FRAG and length >= _FRAG_HEAD.size:
            _id, total, offset, inner = _FRAG_HEAD.unpack_from(datagram, body)
            if inner == MSG and offset + length - _FRAG_HEAD.size >= total:
                n += 1
    return n


def check_seq_body(body: memoryview | bytes) -> None:
    """Check a SEQ frame's body on its own (the datagram length it declares is checked where
    the frame opens a datagram: `read_seq`)."""
    if len(body) != _SEQ_BODY:
        raise WireError("malformed", "seq frame length")
    _kind, epoch, seq, _total = struct.unpack("!BIQI", body)
    if seq == 0 or epoch == 0:
        raise WireError("malformed", "seq frame")
