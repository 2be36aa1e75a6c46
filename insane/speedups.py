"""The per-message steps the profile points at, native when built and Python otherwise.

``insane/_speedups.c`` is compiled by the package's install (``setup.py``; optional, so an
install without a C compiler still works).  The functions below are the reference versions:
the native ones must give the same results (tests/test_speedups.py checks both on random and
hostile input).  ``NATIVE`` tells which are in use; ``INSANE_PURE_PYTHON=1`` forces these.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

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


scan_plain = py_scan_plain
run_callback = py_run_callback
NATIVE = False

if not os.environ.get("INSANE_PURE_PYTHON"):
    try:
        from insane import _speedups  # type: ignore[attr-defined]
    except ImportError:  # not built (no C compiler at install time): the Python versions
        pass
    else:
        scan_plain = _speedups.scan_plain
        run_callback = _speedups.run_callback
        NATIVE = True
