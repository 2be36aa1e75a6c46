"""Several peer processes on one host, over kernel UDP on loopback, with no configuration
beyond a domain of their own (so concurrent runs never see each other)."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Iterator

import pytest
from agent import payload
from agentctl import AgentProcess


@pytest.fixture
def domain() -> int:
    return random.randrange(1, 2**32)


@pytest.fixture
def spawn(domain: int) -> Iterator[Callable[[str], AgentProcess]]:
    started: list[AgentProcess] = []

    def make(name: str) -> AgentProcess:
        a = AgentProcess()
        started.append(a)
        a.ok("connect", config={"domain": domain}, name=name)
        return a

    yield make
    for a in started:
        a.stop()


def test_wildcards_and_order_across_processes(spawn: Callable[[str], AgentProcess]) -> None:
    sub = spawn("sub")
    sub.ok("sub", subject="orders.*.new", id="star")
    sub.ok("sub", subject="orders.>", id="tail")
    sub.ok("sub", subject="orders.eu.new", id="literal")
    pub = spawn("pub")
    subjects = ["orders.eu.new", "orders.us.new", "orders.eu.cancel", "other.eu.new", "orders"]
    pub.ok("pub", subject="", subjects=subjects, count=500)
    star = sub.ok("wait_received", id="star", count=200)
    tail = sub.ok("wait_received", id="tail", count=300)
    lit = sub.ok("wait_received", id="literal", count=100)
    assert star["count"] == 200
    assert tail["count"] == 300
    assert lit["count"] == 100
    assert {m["subject"] for m in star["msgs"]} == {"orders.eu.new", "orders.us.new"}
    assert {m["subject"] for m in tail["msgs"]} == {
        "orders.eu.new",
        "orders.us.new",
        "orders.eu.cancel",
    }
    # Per-publisher order: the sequence numbers arrive increasing.
    seq = [int(m["head"][1:]) for m in tail["msgs"]]
    assert seq == sorted(seq)


def test_both_directions_and_headers(spawn: Callable[[str], AgentProcess]) -> None:
    a, b = spawn("a"), spawn("b")
    a.ok("sub", subject="to.a", id="in")
    b.ok("sub", subject="to.b", id="in")
    a.ok("pub", subject="to.b", count=50, headers={"trace": "t-1", "Note": "ümlaut ok"})
    b.ok("pub", subject="to.a", count=50)
    got_b = b.ok("wait_received", id="in", count=50)
    got_a = a.ok("wait_received", id="in", count=50)
    assert got_a["count"] == got_b["count"] == 50
    assert got_b["msgs"][0]["headers"] == {"trace": "t-1", "Note": "ümlaut ok"}
    assert got_a["msgs"][0]["headers"] is None


def test_queue_group_delivers_each_message_exactly_once(
    spawn: Callable[[str], AgentProcess],
) -> None:
    workers = [spawn(f"w{i}") for i in range(3)]
    for w in workers:
        w.ok("sub", subject="jobs.*", id="q", queue="workers")
    audit = spawn("audit")
    audit.ok("sub", subject="jobs.>", id="all")
    pub = spawn("pub")
    n = 600
    pub.ok("pub", subject="jobs.new", count=n)
    assert audit.ok("wait_received", id="all", count=n)["count"] == n
    deadline = time.monotonic() + 10
    per_worker: list[list[str]] = []
    while time.monotonic() < deadline:
        per_worker = [
            [m["head"] for m in w.ok("received", id="q", full=True)["msgs"]] for w in workers
        ]
        if sum(map(len, per_worker)) >= n:
            break
        time.sleep(0.05)
    time.sleep(0.2)  # a duplicate, if any, would show up now
    per_worker = [[m["head"] for m in w.ok("received", id="q", full=True)["msgs"]] for w in workers]
    everything = [h for heads in per_worker for h in heads]
    assert len(everything) == n, [len(h) for h in per_worker]
    assert len(set(everything)) == n
    assert all(len(h) > n / 10 for h in per_worker), [len(h) for h in per_worker]


def test_request_reply_and_no_responders(spawn: Callable[[str], AgentProcess]) -> None:
    server = spawn("server")
    server.ok("reply", subject="svc.echo", id="srv")
    client = spawn("client")
    for i in range(20):
        assert (
            client.ok("request", subject="svc.echo", data=f"hi {i}")["data"]
            == f"hi {i} from server"
        )
    r = client.call("request", subject="svc.nobody", data="x")
    assert r["ok"] is False and r["error"] == "NoRespondersError"


def test_request_spreads_over_a_queue_group(spawn: Callable[[str], AgentProcess]) -> None:
    servers = [spawn(f"s{i}") for i in range(2)]
    for s in servers:
        s.ok("reply", subject="svc.work", id="srv", queue="pool")
    client = spawn("client")
    answers = [client.ok("request", subject="svc.work", data="job")["data"] for _ in range(40)]
    assert {a.rsplit(" ", 1)[1] for a in answers} == {"s0", "s1"}
    handled = sum(s.ok("received", id="srv")["count"] for s in servers)
    assert handled == 40


def test_eight_mib_message_arrives_byte_identical(spawn: Callable[[str], AgentProcess]) -> None:
    sub = spawn("sub")
    sub.ok("sub", subject="blob", id="b")
    pub = spawn("pub")
    size = 8 * 1024 * 1024
    sent = pub.ok("pub", subject="blob", count=3, size=size, timeout=60)
    got = sub.ok("wait_received", id="b", count=3, timeout=30)
    assert got["count"] == 3
    assert [m["size"] for m in got["msgs"]] == [size] * 3
    assert got["msgs"][-1]["sha"] == sent["sha_last"]
    assert got["msgs"][0]["sha"] == hashlib.sha256(payload("m", 0, size)).hexdigest()[:16]


def test_killed_peer_is_detected_within_three_seconds(spawn: Callable[[str], AgentProcess]) -> None:
    watcher = spawn("watcher")
    victim = spawn("victim")
    assert "victim" in watcher.ok("wait_peers", names=["victim"])["peers"]
    victim.kill()
    gone = watcher.ok("wait_gone", name="victim", timeout=6)
    assert gone["gone"], gone
    assert gone["after"] <= 3.0, gone


def test_publisher_sends_only_to_interested_peers(spawn: Callable[[str], AgentProcess]) -> None:
    interested = spawn("interested")
    bystander = spawn("bystander")
    interested.ok("sub", subject="news.>", id="n")
    bystander.ok("sub", subject="weather.>", id="w")
    pub = spawn("pub")
    before = bystander.ok("metric", name="insane_messages_received")["value"]
    pub.ok("pub", subject="news.today", count=100)
    assert interested.ok("wait_received", id="n", count=100)["count"] == 100
    assert bystander.ok("metric", name="insane_messages_received")["value"] == before
    assert pub.ok("metric", name="insane_messages_sent", channel="default")["value"] == 100
