"""Two (or three) sans-IO nodes wired in memory with a fake clock (tests/memory_net.py): the
discovery, fragmentation, reliability and flow-control scenarios, deterministic, no socket.

Every scenario here runs to the same datagrams whenever it runs (`test_runs_are_identical`),
so a failure reproduces exactly; the times are the fake clock's, so "a partition of 6 s" takes
milliseconds.
"""

from __future__ import annotations

import random

import pytest
from memory_net import MemoryNet, MemoryPeer

from insane import errors, load_config
from insane.ops.metrics import STORE
from insane.protocol import wire
from insane.protocol.inbound import frames_start

CHANNELS = {
    "channels": {"r.>": {"qos": ["reliable", "ordered"]}, "f.>": {"qos": ["best_effort"]}}
}


def pair(
    seed: int = 1, loss: float = 0.0, **cfg: object
) -> tuple[MemoryNet, MemoryPeer, MemoryPeer]:
    net = MemoryNet(seed, loss=loss, config=load_config({**CHANNELS, **cfg}))
    a, b = net.add("a"), net.add("b")
    b.subscribe("r.>")
    b.subscribe("f.>")
    net.introduce(a, b)
    net.settle(check=lambda: a.node.has_subscribers("r.x") and b.peer_events != [])
    return net, a, b


def dropped(reason: str) -> float:
    return STORE.cell("insane_dropped", "udp", reason).value


# ------------------------------------------------------------------------------- discovery


def test_discovery_handshake_learns_peer_and_interest() -> None:
    net, a, b = pair()
    assert a.peer_events == [("up", "b")] and b.peer_events == [("up", "a")]
    assert a.node.has_subscribers("r.anything") and a.node.has_subscribers("f.x")
    assert not a.node.has_subscribers("other")
    # interest changes reach the peer: b subscribes once more, a learns it
    b.subscribe("late")
    net.settle(check=lambda: a.node.has_subscribers("late"))


def test_silent_peer_goes_suspect_then_back_without_loss() -> None:
    net, a, b = pair()
    timeout = net.config.discovery.peer_timeout
    net.cut(a, b)
    net.run_for(timeout + 0.5)
    assert ("suspect", "b") in a.peer_events and ("suspect", "a") in b.peer_events
    net.heal(a, b)
    net.settle(check=lambda: ("back", "b") in a.peer_events)
    assert ("down", "b") not in a.peer_events


def test_peer_silent_past_the_hold_goes_down() -> None:
    net, a, b = pair()
    hold = net.config.discovery.peer_timeout + net.config.reliability.retransmit_age
    b.down = True  # SIGSTOP: nothing in or out
    net.run_for(hold + 0.5)
    assert a.peer_events[-2:] == [("suspect", "b"), ("down", "b")]
    assert not a.node.has_subscribers("r.x")


# ------------------------------------------------------------------------------- fragmentation


def test_fragmented_message_arrives_whole() -> None:
    net, a, b = pair()
    data = random.Random(1).randbytes(1 << 20)
    a.publish("f.big", data)
    net.settle(check=lambda: bool(b.got))
    assert b.payloads() == [data]
    assert not a.errors and not b.errors


def test_best_effort_fragment_lost_drops_only_that_message() -> None:
    net, a, b = pair()
    frags = [0]

    def lose_the_third_fragment(data: bytes, src: object, dst: object) -> bool:
        pos = frames_start(data)
        if pos < len(data) and data[pos] == wire.FRAG:
            frags[0] += 1
            return frags[0] == 3
        return False

    before = dropped("reassembly_timeout")
    net.drop_if = lose_the_third_fragment
    a.publish("f.big", bytes(200_000))
    net.run_for(0.1)
    net.drop_if = None
    a.publish("f.next", b"after")
    net.run_for(a.node._reassembler.timeout + 1.0)
    assert b.payloads() == [b"after"]  # the broken message never surfaces half-built
    assert dropped("reassembly_timeout") == before + 1


# ------------------------------------------------------------------------------- reliability


def test_reliable_stream_through_loss_is_complete_and_in_order() -> None:
    net, a, b = pair(seed=3, loss=0.1)
    sent = [f"m{i}".encode() * 40 for i in range(600)]
    for i, m in enumerate(sent):
        a.publish("r.s", m)
        if i % 50 == 0:
            net.run_for(0.002)
    net.settle(limit=10.0, check=lambda: len(b.got) == len(sent))
    assert b.payloads() == sent
    assert net.dropped > 0  # (the loss happened)
    assert a.losses() == 0 and b.losses() == 0


def test_partition_shorter_than_the_hold_loses_nothing() -> None:
    """Longer than the peer timeout (the peer goes suspect), shorter than the retransmit age:
    what was published meanwhile arrives, in order, once the link is back."""
    net, a, b = pair()
    a.publish("r.s", b"before")
    net.run_for(0.1)
    net.cut(a, b)
    for i in range(20):
        a.publish("r.s", b"during %d" % i)
        net.run_for(0.2)
    assert ("suspect", "b") in a.peer_events
    net.heal(a, b)
    net.settle(limit=10.0, check=lambda: len(b.got) == 21)
    assert b.payloads() == [b"before"] + [b"during %d" % i for i in range(20)]
    assert a.losses() == 0 and b.losses() == 0


def test_partition_past_the_hold_reports_exactly_what_was_lost() -> None:
    net, a, b = pair()
    a.publish("r.s", b"acked")
    net.run_for(0.2)
    net.cut(a, b)
    for i in range(7):
        a.publish("r.s", b"lost %d" % i)
    hold = net.config.discovery.peer_timeout + net.config.reliability.retransmit_age
    net.run_for(hold + 1.0)
    assert ("down", "b") in a.peer_events
    lost = [e for e in a.errors if isinstance(e, errors.MessagesLostError)]
    assert sum(e.count for e in lost) == 7 and all(e.sent for e in lost)
    assert b.payloads() == [b"acked"]


def test_closing_with_messages_unacknowledged_reports_them() -> None:
    """A publisher that closes while its subscriber is cut off: the node says it still waits
    for acknowledgements (the driver's close lingers on that), and its close reports exactly
    the messages never acknowledged; what was acknowledged is not among them."""
    net, a, b = pair()
    a.publish("r.s", b"acked")
    net.run_for(0.2)
    assert not a.node.unacknowledged()
    net.cut(a, b)
    for i in range(5):
        a.publish("r.s", b"unacked %d" % i)
    net.run_for(0.1)
    assert a.node.unacknowledged()
    a.node.set_suspect(b.peer_id, True)
    assert not a.node.unacknowledged()  # (a suspect peer is not waited for)
    a.node.close()
    a.events()
    lost = [e for e in a.errors if isinstance(e, errors.MessagesLostError)]
    assert [(e.count, e.sent, e.peer.startswith("b")) for e in lost] == [(5, True, True)]
    assert "close_linger" in str(lost[0])


# ------------------------------------------------------------------------------- flow control


def test_full_window_blocks_then_a_stalled_receiver_stops_blocking() -> None:
    net, a, b = pair()
    b.down = True  # stopped: it acknowledges nothing
    chunk = bytes(512 * 1024)
    for _ in range(10):  # 5 MiB, past the 4 MiB window
        a.publish("f.bulk", chunk)
    assert a.node.backpressure
    blocked, _streams_full = a.node.blocked()
    assert blocked == [b.addr]
    net.run_for(net.config.reliability.stall_timeout + 0.2)
    a.node.update_stalled(net.now)
    blocked, _ = a.node.blocked()
    assert blocked == []  # silent past stall_timeout: not waited for
    rooms = a.rooms
    b.down = False
    net.settle(check=lambda: a.rooms > rooms or not a.node.blocked()[0])
    a.publish("f.bulk", b"go on")
    net.settle(check=lambda: b"go on" in b.payloads())


def test_window_opens_as_the_receiver_acknowledges() -> None:
    net, a, b = pair()
    chunk = bytes(256 * 1024)
    for _ in range(40):  # 10 MiB through a 4 MiB window
        if a.node.backpressure:
            rooms = a.rooms
            net.settle(check=lambda: a.rooms > rooms)  # noqa: B023 (used at once)
            a.node.set_backpressure(False)
        a.publish("f.bulk", chunk)
    net.settle(check=lambda: len(b.got) == 40)
    assert all(p == chunk for p in b.payloads())


# ------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("seed", [3, 11])
def test_runs_are_identical(seed: int) -> None:
    """The same scenario and seed: the same datagrams, byte for byte, at the same times."""

    def run() -> tuple[str, list[bytes]]:
        net, a, b = pair(seed=seed, loss=0.05)
        for i in range(200):
            a.publish("r.s", b"%d" % i * 30)
            if i % 20 == 0:
                net.run_for(0.001)
        a.publish("f.big", bytes(300_000))
        net.settle(limit=10.0, check=lambda: len(b.got) >= 200)
        net.run_for(1.0)
        return net.fingerprint(), b.payloads("r.s")

    first, second = run(), run()
    assert first == second
    assert first[1] == [b"%d" % i * 30 for i in range(200)]
