"""Reliable and ordered delivery between two hosts whose wire loses, duplicates, reorders and
delays (the fault injector of tests/faults.py between two network namespaces); best effort
on the same wire; a subscriber killed mid-stream; a slow subscriber."""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from typing import Any

import pytest
from agentctl import AgentProcess
from faults import Injector
from netns import Host

pytestmark = pytest.mark.privileged

Pair = Callable[..., tuple[Host, Host, Injector]]

#: Messages of the volume test (mixed sizes from 64 B to 1 MiB; see agent.stream_size).
VOLUME = int(os.environ.get("INSANE_FAULT_MESSAGES", "100000"))

CHANNELS = {
    "data.ordered": {"qos": ["reliable", "ordered"]},
    "data.be": {"qos": ["best_effort"]},
}


def start(agents: list[AgentProcess], host: Host, name: str, domain: int) -> AgentProcess:
    a = AgentProcess(cmd_prefix=host.wrap([]))
    agents.append(a)
    config: dict[str, Any] = {
        "domain": domain,
        "transports": {"udp": {"bind": host.ip}},
        "discovery": {"host_registry": False},
        "channels": CHANNELS,
    }
    a.ok("connect", config=config, name=name, timeout=30)
    return a


def connected(agents: list[AgentProcess], a: Host, b: Host) -> tuple[AgentProcess, AgentProcess]:
    domain = random.randrange(1, 2**32)
    pub = start(agents, a, "pub", domain)
    sub = start(agents, b, "sub", domain)
    pub.ok("wait_peers", names=["sub"], timeout=30)
    sub.ok("wait_peers", names=["pub"], timeout=30)
    return pub, sub


def test_ordered_stream_arrives_whole_through_a_faulty_wire(
    faulty_pair: Pair, agents: list[AgentProcess]
) -> None:
    a, b, injector = faulty_pair(loss=0.1, dup=0.05, reorder=0.25, delay_ms=1.0, seed=11)
    pub, sub = connected(agents, a, b)
    sub.ok("stream_sub", subject="data.ordered", id="s")
    sent = pub.ok("stream_pub", subject="data.ordered", count=VOLUME, timeout=600)
    got = sub.ok("stream_wait", id="s", count=VOLUME, wait=300, timeout=330)
    assert got["count"] == VOLUME
    assert got["in_order"]
    assert got["sha"] == sent["sha"]  # byte-identical, every one
    wire = injector.stats()["ab"]
    assert wire["dropped"] > 0 and wire["duplicated"] > 0 and wire["reordered"] > 0
    assert pub.ok("metric", name="insane_retransmissions")["value"] > 0
    assert sub.ok("metric", name="insane_nacks", direction="sent")["value"] > 0
    assert sub.ok("metric", name="insane_duplicates")["value"] > 0
    assert sub.ok("errors")["errors"] == []


def test_best_effort_on_the_same_wire_loses_and_says_so(
    faulty_pair: Pair, agents: list[AgentProcess]
) -> None:
    a, b, _injector = faulty_pair(loss=0.1, dup=0.05, reorder=0.25, delay_ms=1.0, seed=12)
    pub, sub = connected(agents, a, b)
    sub.ok("stream_sub", subject="data.be", id="s")
    count = 3000
    pub.ok("stream_pub", subject="data.be", count=count, timeout=120)
    got = sub.ok("stream_wait", id="s", count=count, wait=3, timeout=30)
    assert got["count"] < count
    sent = pub.ok("metric", name="insane_messages_sent", channel="data.be")["value"]
    received = sub.ok("metric", name="insane_messages_received", channel="data.be")["value"]
    assert received < sent  # the loss shows in the metrics
    assert pub.ok("metric", name="insane_retransmissions")["value"] == 0


def test_killing_a_subscriber_stalls_neither_the_publisher_nor_the_others(
    faulty_pair: Pair, agents: list[AgentProcess]
) -> None:
    a, b, _injector = faulty_pair(loss=0.02, delay_ms=1.0, seed=13)
    domain = random.randrange(1, 2**32)
    pub = start(agents, a, "pub", domain)
    keep = start(agents, b, "keep", domain)
    victim = start(agents, b, "victim", domain)
    pub.ok("wait_peers", names=["keep", "victim"], timeout=30)
    keep.ok("stream_sub", subject="data.ordered", id="s")
    victim.ok("stream_sub", subject="data.ordered", id="s")
    count = 20000
    pub.ok("stream_pub", subject="data.ordered", count=count, background=True)
    victim.ok("stream_wait", id="s", count=2000, wait=60, timeout=90)
    os.killpg(victim.proc.pid, signal.SIGKILL)  # mid-stream, without a goodbye
    sent = pub.ok("stream_pub_result", wait=120, timeout=150)
    got = keep.ok("stream_wait", id="s", count=count, wait=120, timeout=150)
    assert got["count"] == count and got["in_order"] and got["sha"] == sent["sha"]
    # The publisher noticed the dead destination and went on (stall_timeout, then discovery).
    pub.ok("wait_gone", name="victim", timeout=10)


def test_a_slow_subscriber_engages_flow_control_not_memory(
    faulty_pair: Pair, agents: list[AgentProcess]
) -> None:
    a, b, _injector = faulty_pair(loss=0.0, delay_ms=1.0, seed=14)
    pub, sub = connected(agents, a, b)
    sub.ok("stream_sub", subject="data.ordered", id="s", delay=0.0005)
    count = 4000
    sent = pub.ok("stream_pub", subject="data.ordered", count=count, timeout=300)
    got = sub.ok("stream_wait", id="s", count=count, wait=120, timeout=150)
    assert got["count"] == count and got["sha"] == sent["sha"]
    assert pub.ok("metric", name="insane_window_stalls")["value"] > 0
    assert sub.ok("metric", name="insane_dropped", reason="slow_consumer")["value"] == 0
    assert got["max_rss_mb"] < 600
