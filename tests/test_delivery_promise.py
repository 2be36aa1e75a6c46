"""The delivery promise, tried the way it breaks: partitions longer than the peer timeout
(nftables, and the link down) between two network namespaces, a subscriber frozen with
SIGSTOP and resumed, a partition longer than the retransmit buffer keeps data, a queue-group
worker killed with SIGKILL (on one host and across namespaces).

Counted on both sides: what arrived, in what order, what each side reported lost.
"""

from __future__ import annotations

import os
import random
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from agentctl import AgentProcess
from netns import Host, Lan

pytestmark = pytest.mark.privileged


def start(
    agents: list[AgentProcess],
    name: str,
    domain: int,
    host: Host | None = None,
    extra: dict[str, Any] | None = None,
) -> AgentProcess:
    a = AgentProcess(cmd_prefix=host.wrap([]) if host is not None else ())
    agents.append(a)
    config: dict[str, Any] = {"domain": domain, **(extra or {})}
    if host is not None:
        config["transports"] = {"udp": {"bind": host.ip}}
        config["discovery"] = {**config.get("discovery", {}), "host_registry": False}
    a.ok("connect", config=config, name=name, timeout=30)
    return a


def stream_pair(
    agents: list[AgentProcess],
    a: Host | None = None,
    b: Host | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[AgentProcess, AgentProcess]:
    """A publisher ``pub`` (on ``a``, with ``extra`` configuration) and a subscriber ``sub``
    (on ``b``) of a numbered stream on ``feed.x`` (id ``s``), in a fresh domain, each knowing
    the other."""
    domain = random.randrange(1, 2**32)
    pub = start(agents, "pub", domain, a, extra)
    sub = start(agents, "sub", domain, b)
    pub.ok("wait_peers", names=["sub"], timeout=30)
    sub.ok("stream_sub", subject="feed.x", id="s")
    pub.ok("flush")
    return pub, sub


@contextmanager
def partition(a: Host, b: Host, how: str) -> Iterator[None]:
    """Nothing crosses between ``a`` and ``b`` (both processes stay alive) until the end."""
    if how == "nftables":
        table = f"insane_cut_{random.randrange(1 << 30)}"
        script = (
            f"table inet {table} {{\n"
            "  chain in { type filter hook input priority 0; policy accept; "
            f"ip saddr {b.ip} drop; }}\n"
            "  chain out { type filter hook output priority 0; policy accept; "
            f"ip daddr {b.ip} drop; }}\n"
            "}\n"
        )
        a.run(["nft", "-f", "-"], input=script, check=True)
        try:
            yield
        finally:
            a.run(["nft", "delete", "table", "inet", table], check=True)
    else:
        a.run(["ip", "link", "set", "dev", a.ifname, "down"], check=True)
        try:
            yield
        finally:
            a.run(["ip", "link", "set", "dev", a.ifname, "up"], check=True)


def lost_counts(errors: list[str], way: str) -> list[int]:
    """The message counts of MessagesLostError reports (``way``: "to" on a publisher, "from"
    on a subscriber)."""
    return [
        int(m.group(1))
        for e in errors
        if (m := re.search(rf"MessagesLostError: insane: (\d+) message\(s\) {way} ", e))
    ]


@pytest.mark.parametrize("how", ["nftables", "link"])
def test_a_partition_longer_than_the_peer_timeout_loses_nothing(
    netns_pair: Lan, agents: list[AgentProcess], how: str
) -> None:
    """5 s cut (the peer timeout is 2.5 s) in the middle of a paced [reliable, ordered] stream
    of 1 KiB messages, both processes alive: every message arrives, in order, once."""
    a, b = netns_pair
    pub, sub = stream_pair(agents, a, b)
    count, rate = 45000, 5000
    pub.ok("paced_pub", subject="feed.x", count=count, rate=rate)
    sub.ok("stream_wait", id="s", count=8000, wait=30, timeout=40)
    with partition(a, b, how):
        time.sleep(5.0)
        suspects = pub.ok("suspects")["suspects"]
    sent = pub.ok("stream_pub_result", wait=60, timeout=70)
    got = sub.ok("stream_wait", id="s", count=count, wait=60, timeout=70)
    assert got["count"] == count and got["in_order"], got
    assert got["sha"] == sent["sha"]
    assert suspects == ["sub"]  # the publisher knew, and kept the stream for it
    assert pub.ok("errors")["errors"] == [] and sub.ok("errors")["errors"] == []
    assert pub.ok("metric", name="insane_retransmissions")["value"] > 0


def test_a_frozen_subscriber_gets_everything_and_holds_nobody_back(
    agents: list[AgentProcess],
) -> None:
    """One of two subscribers SIGSTOPped for 4 s in a 10k msg/s stream, then resumed: it gets
    every message in order; the other's deliveries pause at most 1 s."""
    domain = random.randrange(1, 2**32)
    pub = start(agents, "pub", domain)
    good = start(agents, "good", domain)
    frozen = start(agents, "frozen", domain)
    pub.ok("wait_peers", names=["good", "frozen"], timeout=30)
    for s in (good, frozen):
        s.ok("stream_sub", subject="tick", id="s")
    pub.ok("flush")
    count = 80000
    pub.ok("paced_pub", subject="tick", count=count, rate=10000, size=256)
    frozen.ok("stream_wait", id="s", count=10000, wait=30, timeout=40)
    os.killpg(frozen.proc.pid, signal.SIGSTOP)
    time.sleep(4.0)
    os.killpg(frozen.proc.pid, signal.SIGCONT)
    sent = pub.ok("stream_pub_result", wait=60, timeout=70)
    for s in (good, frozen):
        got = s.ok("stream_wait", id="s", count=count, wait=60, timeout=70)
        assert got["count"] == count and got["in_order"], got
        assert got["sha"] == sent["sha"]
    healthy = good.ok("stream_wait", id="s", count=count)
    assert healthy["max_gap"] <= 1.0, healthy
    for s in (pub, good, frozen):
        assert s.ok("errors")["errors"] == []


def test_past_the_retransmit_age_both_sides_report_the_exact_loss(
    netns_pair: Lan, agents: list[AgentProcess]
) -> None:
    """A cut longer than the publisher keeps data for (retransmit_age 2 s here): what it could
    not keep is reported by both, with the same message count, exactly what is missing; the
    stream goes on after the heal, in order."""
    a, b = netns_pair
    domain = random.randrange(1, 2**32)
    extra = {"reliability": {"retransmit_age": 2.0}, "discovery": {"peer_timeout": 1.0}}
    pub = start(agents, "pub", domain, a, extra)
    sub = start(agents, "sub", domain, b, extra)
    pub.ok("wait_peers", names=["sub"], timeout=30)
    sub.ok("stream_sub", subject="feed.x", id="s")
    pub.ok("flush")
    count = 16000
    pub.ok("paced_pub", subject="feed.x", count=count, rate=2000)
    sub.ok("stream_wait", id="s", count=3000, wait=30, timeout=40)
    with partition(a, b, "nftables"):
        time.sleep(2.7)
    pub.ok("stream_pub_result", wait=60, timeout=70)
    time.sleep(1.0)  # the repair, and its reports
    got = sub.ok("stream_wait", id="s", count=count, wait=5)
    missing = count - got["count"]
    from_pub = lost_counts(pub.ok("errors")["errors"], "to")
    at_sub = lost_counts(sub.ok("errors")["errors"], "from")
    assert missing > 0, got
    assert sum(from_pub) == sum(at_sub) == missing, (from_pub, at_sub, missing)
    # One jump over what is lost, never back; and the stream went on after the heal.
    assert not got["in_order"] and got["first_wrong"][1] > got["first_wrong"][0]
    assert got["last_number"] == count - 1


@pytest.mark.parametrize("where", ["one host", "namespaces"])
def test_a_killed_queue_group_worker_is_skipped(
    netns_lan: Any, agents: list[AgentProcess], where: str
) -> None:
    """SIGKILL of one of two workers of a queue group: at most one of the next 40 requests
    (0.5 s timeout) fails, as with nats-server, which sees the TCP connection close."""
    domain = random.randrange(1, 2**32)
    hosts: tuple[Host | None, Host | None] = (None, None)
    if where == "namespaces":
        lan = netns_lan(2)
        hosts = (lan[0], lan[1])
    client = start(agents, "client", domain, hosts[0])
    workers = [start(agents, f"w{i}", domain, hosts[1]) for i in (1, 2)]
    for w in workers:
        w.ok("reply", subject="svc.work", id="r", queue="workers")
    client.ok("wait_peers", names=["w1", "w2"], timeout=30)
    client.ok("flush")
    for _ in range(10):
        client.ok("request", subject="svc.work", data="warm", timeout=2)
    workers[0].kill()
    failed = 0
    for i in range(40):
        reply = client.call("request", subject="svc.work", data=str(i), wait=0.5, timeout=5)
        failed += not reply["ok"]
    assert failed <= 1, failed


def test_a_publisher_closing_right_after_its_last_message_loses_nothing(
    faulty_pair: Any, agents: list[AgentProcess]
) -> None:
    """A [reliable, ordered] stream as fast as it goes through 20% loss, the publisher closed
    the moment its last publish is handed to the kernel: close waits for the acknowledgements
    (``reliability.close_linger``) while retransmissions go on, so every message arrives, in
    order, and nobody reports a loss."""
    a, b, injector = faulty_pair(loss=0.2, seed=11)
    pub, sub = stream_pair(agents, a, b)
    count = 3000
    sent = pub.ok("stream_pub", subject="feed.x", count=count, timeout=60)
    closed = pub.ok("close", timeout=30)
    got = sub.ok("stream_wait", id="s", count=count, wait=30, timeout=40)
    assert got["count"] == count and got["in_order"], got
    assert got["sha"] == sent["sha"]
    assert closed["errors"] == [] and sub.ok("errors")["errors"] == []
    assert injector.stats()["ab"]["dropped"] > 0


def test_a_publisher_closing_while_its_subscriber_is_frozen_reports_what_was_not_acknowledged(
    agents: list[AgentProcess],
) -> None:
    """The subscriber SIGSTOPped, the publisher publishes 500 messages and closes: close waits
    at most ``close_linger`` (0.5 s here) for acknowledgements that cannot come, then reports
    the 500 as possibly never delivered, to whom, and why."""
    pub, sub = stream_pair(agents, extra={"reliability": {"close_linger": 0.5}})
    pub.ok("stream_pub", subject="feed.x", count=1, timeout=30)
    sub.ok("stream_wait", id="s", count=1, wait=30, timeout=40)
    time.sleep(0.2)  # (that one acknowledged)
    os.killpg(sub.proc.pid, signal.SIGSTOP)
    try:
        pub.ok("stream_pub", subject="feed.x", count=500, seed=1, timeout=30)
        closed = pub.ok("close", timeout=30)
    finally:
        os.killpg(sub.proc.pid, signal.SIGCONT)
    assert lost_counts(closed["errors"], "to") == [500], closed["errors"]
    assert "sub" in closed["errors"][0] and "close_linger" in closed["errors"][0]
    assert 0.5 <= closed["seconds"] < 5.0, closed
