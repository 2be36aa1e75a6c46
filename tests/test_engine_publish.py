"""The engine's publish call (`_engine.Publisher`, src/py_publish.c) against its reference,
`Session.publish`'s logic over the Python node: two memory networks with the same ids and
seeds, one driven through the reference and one through the Publisher, fed the same calls
(hypothesis: known and unknown subjects, replies, headers, payloads too big for one frame or
not bytes, keyword arguments, backpressure on and off, bad arguments). They must take the same
path for every call, and put the same bytes on the wire, deliver the same messages and ask for
the same flushes. Then the awaitable it returns, as asyncio apps use a publish."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from memory_net import MemoryNet
from netns import engine_built
from test_engine_differential import counters

from insane import load_config

CHANNELS = {"channels": {"r.>": {"qos": ["reliable", "ordered"]}, "f.>": {"qos": ["best_effort"]}}}

calls = st.lists(
    st.tuples(
        st.sampled_from(
            ["r.a", "f.b", "f.nobody", "x.unrouted", "_INBOX.x.1", "_INBOX.x.12", "_INBOX.x.",
             "_INBOX.x.1a", "_INBOX.x.y.3", "_INBOX.x.\u00b2", "_INBOX."]
        ),
        st.sampled_from([b"", b"p" * 64, b"q" * 1400, b"z" * 70_000, bytearray(b"ba"), "text"]),
        st.sampled_from([None, "", "_INBOX.r.7"]),
        st.sampled_from([None, {}, {"k": "v"}]),
        st.sampled_from(["positional", "keywords", "payload-keyword"]),
        st.booleans(),  # backpressure on for this call
    ),
    min_size=1,
    max_size=40,
)


class Recorder:
    """The fallback: Session.publish's Python logic, recording which calls reached it."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.calls: list[tuple[Any, ...]] = []

    def __call__(
        self,
        subject: str,
        payload: Any = b"",
        reply: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        self.calls.append((subject, payload, reply, headers))
        if not (reply or headers is not None or self.node.backpressure) and self.node.publish_fast(
            subject, payload
        ):
            return "fast-in-python"
        data = payload if isinstance(payload, str) else bytes(payload)
        try:
            self.node.publish(subject, data, reply or "", headers)
        except Exception as exc:  # (the outcome is compared)
            return type(exc).__name__
        return "general"


def call(fn: Any, args: tuple[Any, ...], style: str) -> Any:
    subject, payload, reply, headers = args
    if style == "keywords":
        return fn(subject=subject, payload=payload, reply=reply, headers=headers)
    if style == "payload-keyword":
        return fn(subject, payload=payload)
    return fn(subject, payload, reply, headers)


def run(native: bool, plan: list[tuple[Any, ...]]) -> dict[str, Any]:
    before = counters()
    net = MemoryNet(7, config=load_config(CHANNELS), engine="native" if native else "python")
    a, b = net.add("a"), net.add("b")
    b.subscribe("r.>")
    b.subscribe("f.b")
    b.subscribe("_INBOX.x.*")
    net.introduce(a, b)
    net.settle(check=lambda: a.node.has_subscribers("f.b"))
    flushes = []
    a.node.on_flush_wanted = lambda: flushes.append(net.now)
    node = a.node
    ref = Recorder(node)
    publish: Any = node.publisher(ref) if native else None
    if native:
        assert publish is not None and publish.fallback is ref
    outcomes = []
    for subject, payload, reply, headers, style, pressure in plan:
        node.set_backpressure(pressure)
        outcomes.append(call(publish if native else ref, (subject, payload, reply, headers), style))
        node.set_backpressure(False)
        node.flush()
        net.after_step()
        net.run_for(0.01)
    net.run_for(2.0)
    after = counters()
    return {
        "counters": {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)},
        "outcomes": outcomes,
        "fallbacks": ref.calls,
        "wire": net.fingerprint(),
        "got": [(d.subject, d.data, d.reply, d.headers) for d in b.got],
        "flushes": flushes,
    }


def normalise(out: dict[str, Any], ready: Any) -> dict[str, Any]:
    """The native run's READY is the reference's "fast-in-python" (its fallback was not
    called for that message): compare the paths as the reference sees them."""
    out = dict(out)
    out["outcomes"] = ["fast-in-python" if o is ready else o for o in out["outcomes"]]
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls)
def test_the_publisher_takes_the_reference_path_and_puts_the_same_bytes_on_the_wire(
    plan: list[tuple[Any, ...]],
) -> None:
    engine_built()
    from insane.engine import native

    python = run(False, plan)
    engine = normalise(run(True, plan), native().READY)
    assert engine["outcomes"] == python["outcomes"]
    assert engine["got"] == python["got"]
    assert engine["wire"] == python["wire"]
    assert engine["flushes"] == python["flushes"]
    assert engine["counters"] == python["counters"]
    fast = sum(o == "fast-in-python" for o in python["outcomes"])
    assert len(engine["fallbacks"]) == len(plan) - fast


def test_the_common_case_never_reaches_the_fallback_and_flushes_past_flush_bytes() -> None:
    """A plain message to a routed subject is the engine's: after the first (which learns the
    fast path), 20,000 of them reach no Python code but the flush, which comes at once every
    FLUSH_BYTES and is asked for once until then."""
    engine_built()
    from insane.engine import native
    from insane.protocol.outbound import FLUSH_BYTES

    net = MemoryNet(3, config=load_config(CHANNELS), engine="native")
    a, b = net.add("a"), net.add("b")
    b.subscribe("f.b")
    net.introduce(a, b)
    net.settle(check=lambda: a.node.has_subscribers("f.b"))
    asked = []
    a.node.on_flush_wanted = lambda: asked.append(1)
    ref = Recorder(a.node)
    publish = a.node.publisher(ref)
    assert publish("f.b", b"first") == "general"  # (learns the fast path)
    flushed = []
    real_flush = a.node._flush

    def counting_flush() -> None:
        flushed.append(a.node._out_bytes)
        real_flush()

    a.node.flush()
    asked.clear()
    a.node._flush = counting_flush
    for i in range(20_000):
        assert publish("f.b", i.to_bytes(4, "little") + b"x" * 60) is native().READY
    assert len(ref.calls) == 1
    assert flushed and all(n >= FLUSH_BYTES for n in flushed)
    assert len(flushed) <= len(asked) <= len(flushed) + 1  # (once per flush, not per message)
    a.node._flush = real_flush
    a.node.flush()
    net.after_step()
    net.run_for(1.0)
    got = b.payloads("f.b")
    assert len(got) == 20_001
    assert [int.from_bytes(p[:4], "little") for p in got[1:]] == list(range(20_000))


def test_bad_arguments_raise_the_references_own_error() -> None:
    engine_built()
    from insane.engine import native

    net = MemoryNet(3, config=load_config(CHANNELS), engine="native")
    a = net.add("a")

    async def reference(
        subject: str, payload: bytes = b"", reply: str | None = None, headers: Any = None
    ) -> None:
        return None

    publish = native().Publisher(a.node, reference)
    for bad in ((), ("s", b"", None, None, "extra")):
        with pytest.raises(TypeError) as want:
            reference(*bad)  # type: ignore[misc]
        with pytest.raises(TypeError) as got:
            publish(*bad)
        assert str(got.value) == str(want.value)
    with pytest.raises(TypeError) as got:
        publish("s", colour="red")
    assert "colour" in str(got.value)
    with pytest.raises(TypeError):
        native().Publisher(a.node, "not callable")


def test_ready_is_a_finished_awaitable_that_asyncio_takes_everywhere() -> None:
    engine_built()
    from insane.engine import native

    ready = native().READY

    async def main() -> list[Any]:
        first = await ready
        task = await asyncio.create_task(ready)
        both = await asyncio.gather(ready, ready)
        return [first, task, both, await asyncio.wait_for(ready, 1.0)]

    assert asyncio.run(main()) == [None, None, [None, None], None]
    with pytest.raises(StopIteration):
        ready.send(None)
    with pytest.raises(ValueError, match="boom"):
        ready.throw(ValueError("boom"))
    assert ready.close() is None
