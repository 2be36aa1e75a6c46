"""The per-message steps the profile points at, native when built and Python otherwise.

``insane/_speedups.c`` is compiled by the package's install (``setup.py``; optional, so an
install without a C compiler still works).  The functions below are the reference versions:
the native ones must give the same results (tests/test_speedups.py checks both on random and
hostile input).  ``NATIVE`` tells which are in use; ``INSANE_PURE_PYTHON=1`` forces these.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from insane.protocol import wire

T = TypeVar("T")

_FRAME_MSG = 5
_HEAD = 4 + 9  # frame header + MSG head


def py_scan_plain(
    data: bytes, pos: int, table: dict[bytes, T]
) -> tuple[list[tuple[T, list[bytes]]], int]:
    """Take the plain MSG frames (no reply, headers or queue groups) with a subject in
    ``table``, from offset ``pos``, as runs of consecutive frames with the same subject:
    ``([(table[subject], [payload, ...]), ...], next offset)``.

    Stops at the first frame that is anything else, including a malformed one, and returns its
    offset: the caller decodes it the general way (where errors are raised and counted).
    """
    runs: list[tuple[T, list[bytes]]] = []
    last_subject = b""
    payloads: list[bytes] = []
    end = len(data)
    pos = max(pos, 0)
    while pos + _HEAD <= end:
        if data[pos] != _FRAME_MSG:
            break
        blen = (data[pos + 2] << 8) | data[pos + 3]
        fend = pos + 4 + blen
        if fend > end or blen < 9:
            break
        slen = (data[pos + 4] << 8) | data[pos + 5]
        if slen == 0 or any(data[pos + 6 : pos + 13]):
            break
        s1 = pos + _HEAD + slen
        if s1 > fend:
            break
        subject = data[pos + _HEAD : s1]
        if not runs or subject != last_subject:
            entry = table.get(subject)
            if entry is None:
                break
            payloads = []
            runs.append((entry, payloads))
            last_subject = subject
        payloads.append(data[s1:fend])
        pos = fend
    return runs, pos


def py_run_callback(
    cb: Callable[[Any], Any], msg: Any
) -> tuple[Coroutine[Any, Any, Any], Any] | None:
    """Run ``cb(msg)`` until it returns (``None``) or suspends (``(coroutine, yielded)``)."""
    coro: Coroutine[Any, Any, Any] = cb(msg)
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    return coro, yielded


class PyMsgBase:
    """The fields of a received message; ``insane.api.message.Msg`` adds the methods."""

    __slots__ = ("_session", "data", "headers", "reply", "sid", "subject")

    def __init__(
        self,
        subject: str,
        data: bytes,
        reply: str = "",
        headers: dict[str, str] | None = None,
        sid: int = 0,
        session: Any = None,
    ) -> None:
        self.subject = subject
        self.data = data
        self.reply = reply
        self.headers = headers
        self.sid = sid
        self._session = session


def py_run_plain(
    cb: Callable[[Any], Any],
    msg_type: Callable[..., Any],
    subject: str,
    payloads: list[bytes],
    start: int,
    sid: int,
    session: Any,
    limit: int,
) -> tuple[int, int, Any]:
    """Deliver ``payloads[start:]`` to an async callback, each as ``msg_type(subject, payload,
    "", None, sid, session)`` run as :func:`py_run_callback` runs it.  Returns ``(index,
    outcome, value)``: 0 all done; 1 ``payloads[index]`` has ``limit`` bytes or more (the
    caller reports it and goes on from index + 1); 2 the callback raised ``value`` (likewise);
    3 it suspended, ``value`` is ``(coroutine, yielded)``."""
    for i in range(max(start, 0), len(payloads)):
        p = payloads[i]
        if len(p) >= limit:
            return i, 1, None
        try:
            coro = cb(msg_type(subject, p, "", None, sid, session))
            yielded = coro.send(None)
        except StopIteration:
            continue
        except Exception as exc:
            return i, 2, exc
        return i, 3, (coro, yielded)
    return len(payloads), 0, None


def py_append_plain(queues: tuple[Any, ...], sb: bytes, rb: bytes, payload: bytes) -> int:
    """Append a MSG frame with no headers or queue groups to each OutQueue's datagram (sealed
    first through ``q.room(n)`` when it would not fit ``q.limit``); returns the frame's size."""
    body = wire.MSG_HEAD_SIZE + len(sb) + len(rb) + len(payload)
    head = wire.MSG_FRAME_HEAD.pack(wire.MSG, 0, body, len(sb), len(rb), 0, 0)
    size = wire.FRAME_HEADER_SIZE + body
    for q in queues:
        buf = q.buf
        if len(buf) + size > q.limit:
            buf = q.room(size)
        buf += head
        buf += sb
        buf += rb
        buf += payload
    return size


scan_plain = py_scan_plain
run_callback = py_run_callback
run_plain = py_run_plain
append_plain = py_append_plain
NATIVE = False

if TYPE_CHECKING:
    MsgBase = PyMsgBase
else:
    MsgBase = PyMsgBase
    if not os.environ.get("INSANE_PURE_PYTHON"):
        try:
            from insane import _speedups
        except ImportError:  # not built (no C compiler at install time): the Python versions
            pass
        else:
            scan_plain = _speedups.scan_plain
            run_callback = _speedups.run_callback
            run_plain = _speedups.run_plain
            append_plain = _speedups.append_plain
            MsgBase = _speedups.MsgBase
            NATIVE = True
