"""The native fast paths (insane/_speedups.c) give exactly what their Python reference versions
(insane/protocol/speedups.py) give, on well-formed, random and hostile datagrams."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netns import strict_skip

from insane.protocol import speedups, wire

try:
    from insane import _speedups as native  # type: ignore[attr-defined]
except ImportError:
    native = None


@pytest.fixture(autouse=True)
def _need_native() -> None:
    if native is None:
        strict_skip("insane._speedups is not built (no C compiler when the package installed)")


TABLE = {b"a.b": "AB", b"c": "C", b"long.subject.name": "L"}


def _msg(
    subject: bytes, payload: bytes, reply: bytes = b"", queues: tuple[bytes, ...] = ()
) -> bytes:
    return wire.frame(wire.MSG, wire.encode_msg_body(subject, reply, b"", queues, payload))


def _both(data: bytes, pos: int) -> Any:
    py = speedups.py_scan_plain(data, pos, TABLE)
    c = native.scan_plain(data, pos, TABLE)
    assert c == py
    return py


def test_runs_group_consecutive_frames_by_subject_and_stop_at_anything_else() -> None:
    head = wire.encode_header(1, 2)
    data = head + b"".join(
        [
            _msg(b"a.b", b"1"),
            _msg(b"a.b", b""),
            _msg(b"c", b"3"),
            _msg(b"a.b", b"4"),
            _msg(b"a.b", b"5", reply=b"r"),  # not plain: the scan stops here
            _msg(b"c", b"6"),
        ]
    )
    runs, pos = _both(data, wire.HEADER_SIZE)
    assert runs == [("AB", [b"1", b""]), ("C", [b"3"]), ("AB", [b"4"])]
    ftype, _flags, length = wire.FRAME_HEADER.unpack_from(data, pos)
    assert ftype == wire.MSG and wire.decode_msg(data, pos + 4, pos + 4 + length).reply == "r"
    runs, end = _both(data, pos + 4 + length)
    assert runs == [("C", [b"6"])] and end == len(data)


def test_unknown_subjects_queue_groups_and_other_frames_stop_the_scan() -> None:
    for frame in (
        _msg(b"zzz", b"x"),
        _msg(b"a.b", b"x", queues=(b"q",)),
        wire.frame(wire.BYE, b""),
        wire.position_frame(5),
    ):
        data = wire.encode_header(1, 2) + frame
        assert _both(data, wire.HEADER_SIZE) == ([], wire.HEADER_SIZE)


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=-5, max_value=220))
def test_random_bytes_give_the_same_answer(data: bytes, pos: int) -> None:
    _both(data, pos)


@settings(max_examples=2000, deadline=None)
@given(st.data())
def test_mutated_datagrams_give_the_same_answer(draw: st.DataObject) -> None:
    frames = draw.draw(
        st.lists(
            st.tuples(st.sampled_from(sorted(TABLE) + [b"x.y"]), st.binary(max_size=40)),
            min_size=1,
            max_size=6,
        )
    )
    data = bytearray(wire.encode_header(1, 2) + b"".join(_msg(s, p) for s, p in frames))
    for _ in range(draw.draw(st.integers(0, 4))):
        i = draw.draw(st.integers(0, len(data) - 1))
        data[i] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(wire.HEADER_SIZE, len(data)))
    _both(bytes(data[:cut]), wire.HEADER_SIZE)


def test_run_callback_returns_none_when_done_and_the_coroutine_when_suspended() -> None:
    seen: list[Any] = []

    async def quick(msg: Any) -> None:
        seen.append(msg)

    async def slow(msg: Any) -> None:
        await asyncio.sleep(0)
        seen.append(msg)

    async def failing(msg: Any) -> None:
        raise ValueError(msg)

    for run in (speedups.py_run_callback, native.run_callback):
        assert run(quick, 1) is None
        suspended = run(slow, 2)
        assert suspended is not None
        coro, yielded = suspended
        assert yielded is None  # asyncio.sleep(0) yields None
        with pytest.raises(StopIteration):
            coro.send(None)
        with pytest.raises(ValueError):
            run(failing, 3)
    assert seen == [1, 2, 1, 2]


class _Queue:
    """An OutQueue stand-in with a small limit, recording when it was asked for room."""

    def __init__(self, limit: int) -> None:
        self.buf = bytearray(b"HDR")
        self.limit = limit
        self.sealed: list[bytes] = []

    def room(self, n: int) -> bytearray:
        self.sealed.append(bytes(self.buf))
        self.buf = bytearray(b"HDR")
        return self.buf


@pytest.mark.parametrize("reply", [b"", b"_INBOX.ab.7"])
def test_append_plain_writes_the_same_frames(reply: bytes) -> None:
    results = []
    for append in (speedups.py_append_plain, native.append_plain):
        qs = (_Queue(120), _Queue(1000))
        sizes = [append(qs, b"sub.ject", reply, bytes([i]) * (i * 7)) for i in range(12)]
        results.append((sizes, [(q.sealed, bytes(q.buf)) for q in qs]))
    assert results[0] == results[1]
    sizes, queues = results[0]
    frames = queues[1][1][3:]  # the big queue holds every frame
    spans = wire.frame_spans(frames, 0)
    assert [b - a + 4 for _t, _f, a, b in spans] == sizes
    for i, (_t, _f, a, b) in enumerate(spans):
        m = wire.decode_msg(frames, a, b)
        assert (m.subject, m.reply, m.payload) == ("sub.ject", reply.decode(), bytes([i]) * (i * 7))


def test_msg_base_holds_the_fields_and_defaults() -> None:
    for base in (speedups.PyMsgBase, native.MsgBase):
        m = base("a.b", b"x")
        assert (m.subject, m.data, m.reply, m.headers, m.sid, m._session) == (
            "a.b",
            b"x",
            "",
            None,
            0,
            None,
        )
        m = base("a.b", b"x", "r", {"k": "v"}, 3, "s")
        assert (m.reply, m.headers, m.sid, m._session) == ("r", {"k": "v"}, 3, "s")


def test_run_plain_delivers_reports_and_stops_alike() -> None:
    from insane.api.message import Msg

    for run in (speedups.py_run_plain, native.run_plain):
        seen: list[tuple[str, bytes, int]] = []

        async def cb(msg: Msg, seen: list[tuple[str, bytes, int]] = seen) -> None:
            if msg.data == b"boom":
                raise ValueError("boom")
            if msg.data == b"wait":
                await asyncio.sleep(0)
            seen.append((msg.subject, msg.data, msg.sid))

        payloads = [b"a", b"b", b"toolongtoolong", b"boom", b"c", b"wait", b"d"]
        assert run(cb, Msg, "s", payloads, 0, 9, None, 10) == (2, 1, None)
        i, outcome, exc = run(cb, Msg, "s", payloads, 3, 9, None, 10)
        assert (i, outcome, type(exc)) == (3, 2, ValueError)
        i, outcome, (coro, _yielded) = run(cb, Msg, "s", payloads, 4, 9, None, 10)
        assert (i, outcome) == (5, 3)
        with pytest.raises(StopIteration):
            coro.send(None)
        assert run(cb, Msg, "s", payloads, 6, 9, None, 10) == (7, 0, None)
        assert seen == [
            ("s", b"a", 9),
            ("s", b"b", 9),
            ("s", b"c", 9),
            ("s", b"wait", 9),
            ("s", b"d", 9),
        ]
