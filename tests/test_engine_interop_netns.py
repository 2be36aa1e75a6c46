"""The native and the Python data planes on one wire: host a runs the native engine, host b the
Python one, across two network namespaces, for every security mode. Each side publishes to the
other on a reliable ordered, a reliable and a best-effort channel (a fragmented message too),
and each requests a service of the other: everything arrives, complete, in order where the
channel promises it, byte for byte."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest
from agentctl import AgentProcess
from netns import Host, Lan, engine_built

pytestmark = pytest.mark.privileged

CHANNELS = {
    "r.>": {"qos": ["reliable", "ordered"]},
    "u.>": {"qos": ["reliable"]},
    "f.>": {"qos": ["best_effort"]},
}


def config(host: Host, domain: int, security: dict[str, str]) -> dict[str, Any]:
    return {
        "domain": domain,
        "transports": {"udp": {"bind": host.ip}},
        "discovery": {"host_registry": False},
        "channels": CHANNELS,
        "security": security,
    }


@pytest.mark.parametrize("mode", ["none", "authenticate", "encrypt"])
def test_native_and_python_peers_interoperate_both_ways(
    mode: str, netns_pair: Lan, agents: list[AgentProcess], tmp_path: Path
) -> None:
    engine_built()
    a, b = netns_pair
    security = {"mode": mode}
    if mode != "none":
        key = tmp_path / "key"
        key.write_bytes(os.urandom(32))
        security["key_file"] = str(key)
    domain = random.randrange(1, 2**32)
    peers = {}
    for host, name, engine in ((a, "a", "native"), (b, "b", "python")):
        agent = AgentProcess(cmd_prefix=host.wrap([]), env={"INSANE_ENGINE": engine})
        agents.append(agent)
        info = agent.ok("connect", config=config(host, domain, security), name=name, timeout=30)
        assert info["engine"] == engine
        peers[name] = agent
    for me, other in (("a", "b"), ("b", "a")):
        p = peers[me]
        p.ok("wait_peers", names=[other], timeout=15)
        p.ok("stream_sub", subject=f"r.{me}", id="r")
        p.ok("stream_sub", subject=f"u.{me}", id="u")
        p.ok("sub", subject=f"f.{me}", id="f")
        p.ok("sub", subject=f"r.big.{me}", id="big")
        p.ok("reply", subject=f"svc.{me}", id="svc")
    for me, other in (("a", "b"), ("b", "a")):
        src, dst = peers[me], peers[other]
        ordered = src.ok("stream_pub", subject=f"r.{other}", count=2000, seed=1, timeout=60)
        unordered = src.ok("stream_pub", subject=f"u.{other}", count=2000, seed=2, timeout=60)
        src.ok("pub", subject=f"f.{other}", count=20, size=300)
        big = src.ok("pub", subject=f"r.big.{other}", count=2, size=300_000)
        reply = src.ok("request", subject=f"svc.{other}", data=f"hello from {me}", wait=5.0)
        assert reply["data"] == f"hello from {me} from {other}"
        got = dst.ok("stream_wait", id="r", count=2000, wait=30, timeout=60)
        assert got["count"] == 2000 and got["in_order"], (me, got)
        assert got["sha"] == ordered["sha"], me
        got = dst.ok("stream_wait", id="u", count=2000, wait=30, timeout=60)
        assert got["count"] == 2000, (me, got)
        assert dst.ok("wait_received", id="f", count=20)["count"] == 20
        large = dst.ok("wait_received", id="big", count=2, timeout=20)
        assert large["count"] == 2, me
        assert unordered["sent"] == 2000 and big["sent"] == 2
    for p in peers.values():
        assert p.ok("errors")["errors"] == []
        assert p.ok("metric", name="insane_dropped", reason="bad_auth")["value"] == 0
