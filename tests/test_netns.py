"""Hosts in separate network namespaces joined by veth (or a bridge): discovery by multicast
and by static peers, and pub/sub in both directions."""

from __future__ import annotations

import random
from typing import Any

import pytest
from agentctl import AgentProcess
from netns import Host, Lan

pytestmark = pytest.mark.privileged


def start(
    agents: list[AgentProcess], host: Host, name: str, config: dict[str, Any]
) -> AgentProcess:
    a = AgentProcess(cmd_prefix=host.wrap([]))
    agents.append(a)
    a.ok("connect", config=config, name=name)
    return a


def lan_config(host: Host, domain: int, **discovery: Any) -> dict[str, Any]:
    return {
        "domain": domain,
        "transports": {"udp": {"bind": host.ip}},
        "discovery": {"host_registry": False, **discovery},
    }


def exchange_both_ways(a: AgentProcess, b: AgentProcess) -> None:
    a.ok("sub", subject="to.a.*", id="in")
    b.ok("sub", subject="to.b.>", id="in")
    a.ok("pub", subject="to.b.x.y", count=200, size=100)
    b.ok("pub", subject="to.a.z", count=200, size=3000)  # larger than the veth MTU: fragmented
    got_b = b.ok("wait_received", id="in", count=200)
    got_a = a.ok("wait_received", id="in", count=200)
    assert got_b["count"] == 200 and got_a["count"] == 200
    assert [int(m["head"][1:]) for m in got_a["msgs"]] == list(range(200))
    assert {m["size"] for m in got_a["msgs"]} == {3000}


def test_multicast_discovery_and_pubsub_both_ways(
    netns_pair: Lan, agents: list[AgentProcess]
) -> None:
    ha, hb = netns_pair
    domain = random.randrange(1, 2**32)
    a = start(agents, ha, "a", lan_config(ha, domain))
    b = start(agents, hb, "b", lan_config(hb, domain))
    assert b.ok("peers")["peers"] == ["a"], "b found a while connecting"
    assert a.ok("wait_peers", names=["b"])["peers"] == ["b"]
    exchange_both_ways(a, b)


def test_static_peers_without_multicast(netns_pair: Lan, agents: list[AgentProcess]) -> None:
    ha, hb = netns_pair
    domain = random.randrange(1, 2**32)
    no_mc = {"multicast": {"enabled": False}}
    cfg_a = lan_config(ha, domain, **no_mc)
    cfg_a["transports"]["udp"]["port"] = 7447
    a = start(agents, ha, "a", cfg_a)
    b = start(agents, hb, "b", lan_config(hb, domain, peers=[f"{ha.ip}:7447"], **no_mc))
    assert b.ok("peers")["peers"] == ["a"]
    assert a.ok("wait_peers", names=["b"])["peers"] == ["b"]
    exchange_both_ways(a, b)


def test_static_peer_started_later_is_found(netns_pair: Lan, agents: list[AgentProcess]) -> None:
    ha, hb = netns_pair
    domain = random.randrange(1, 2**32)
    no_mc = {"multicast": {"enabled": False}}
    b = start(agents, hb, "b", lan_config(hb, domain, peers=[f"{ha.ip}:7447"], **no_mc))
    assert b.ok("peers")["peers"] == []
    cfg_a = lan_config(ha, domain, **no_mc)
    cfg_a["transports"]["udp"]["port"] = 7447
    start(agents, ha, "a", cfg_a)
    assert b.ok("wait_peers", names=["a"])["peers"] == ["a"]


def test_queue_group_across_three_hosts(netns_lan3: Lan, agents: list[AgentProcess]) -> None:
    domain = random.randrange(1, 2**32)
    ha, hb, hc = netns_lan3
    a = start(agents, ha, "a", lan_config(ha, domain))
    b = start(agents, hb, "b", lan_config(hb, domain))
    c = start(agents, hc, "c", lan_config(hc, domain))
    assert c.ok("wait_peers", names=["a", "b"])["peers"] == ["a", "b"]
    a.ok("sub", subject="work", id="q", queue="g")
    b.ok("sub", subject="work", id="q", queue="g")
    c.ok("pub", subject="work", count=300)
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        counts = [x.ok("received", id="q")["count"] for x in (a, b)]
        if sum(counts) >= 300:
            break
        time.sleep(0.05)
    time.sleep(0.2)
    heads = [m["head"] for x in (a, b) for m in x.ok("received", id="q", full=True)["msgs"]]
    assert len(heads) == 300 and len(set(heads)) == 300
    assert all(x.ok("received", id="q")["count"] > 50 for x in (a, b))
