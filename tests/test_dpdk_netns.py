"""The DPDK transport between network namespaces joined by veth, through DPDK's net_af_packet
virtual device: pub/sub both ways, to and from kernel-UDP and AF_XDP peers, the route of a
`fast` + `poll` channel, what doctor says, clean shutdown on close and SIGTERM, and reliable
ordered delivery through the fault injector."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agentctl import AgentProcess
from faults import Injector
from netns import Host, Lan, output_of, strict_skip, wait_exit, wait_for_line
from peer_checks import exchange, metric

pytestmark = pytest.mark.privileged

REPO = Path(__file__).resolve().parent.parent
Pair = Callable[..., tuple[Host, Host, Injector]]
CHANNELS = {
    "fast.>": {"qos": ["fast", "reliable", "ordered", "poll"]},
    "burst.>": {"qos": ["fast", "best_effort", "poll"]},
    "plain.>": {},
}
VOLUME = int(os.environ.get("INSANE_FAULT_MESSAGES", "100000")) // 4


@pytest.fixture(autouse=True)
def _dpdk_built() -> None:
    try:
        import insane._dpdk  # type: ignore[import-not-found]  # noqa: F401
    except ImportError as exc:
        strict_skip(f"insane._dpdk is not built ({exc}): install dpdk-dev")


def config(host: Host, domain: int, via: str = "dpdk") -> dict[str, Any]:
    transports: dict[str, Any] = {"udp": {"bind": host.ip}}
    if via == "dpdk":
        transports["dpdk"] = {"eal_args": [f"--vdev=net_af_packet0,iface={host.ifname}"]}
    elif via == "xdp":
        transports["xdp"] = {"interface": host.ifname}
    return {
        "domain": domain,
        "transports": transports,
        "discovery": {"host_registry": False},
        "channels": CHANNELS,
    }


def start(
    agents: list[AgentProcess], host: Host, name: str, domain: int, via: str = "dpdk"
) -> AgentProcess:
    p = AgentProcess(cmd_prefix=host.wrap([]))
    agents.append(p)
    p.ok("connect", config=config(host, domain, via), name=name, timeout=60)
    return p


def pair(
    agents: list[AgentProcess], a: Host, b: Host, via_b: str = "dpdk", domain: int = 0
) -> tuple[AgentProcess, AgentProcess]:
    domain = domain or random.randrange(1, 2**32)
    left = start(agents, a, "left", domain)
    right = start(agents, b, "right", domain, via_b)
    left.ok("wait_peers", names=["right"], timeout=30)
    right.ok("wait_peers", names=["left"], timeout=30)
    return left, right




def test_pubsub_both_ways_over_dpdk(netns_pair: Lan, agents: list[AgentProcess]) -> None:
    """Both hosts on DPDK (net_af_packet): a `fast` + `poll` channel goes over DPDK, 64 B to
    1 MiB, whole and in order, both ways, counted with transport="dpdk"; on a best-effort
    channel the kernel's copies of the same frames (af_packet shows the kernel every frame
    too) are not delivered a second time."""
    a, b = netns_pair
    left, right = pair(agents, a, b)
    assert left.ok("route", subject="fast.x")["transport"] == "dpdk"
    exchange(left, right, "fast.ab", 3000)
    exchange(right, left, "fast.ba", 3000)
    for agent in (left, right):
        assert metric(agent, "insane_messages_sent", transport="dpdk", channel="fast.>") >= 3000
        assert metric(agent, "insane_messages_received", transport="dpdk") >= 3000
        assert agent.ok("errors")["errors"] == []
    right.ok("stream_sub", subject="burst.x", id="once")
    left.ok("pub", subject="burst.x", count=500, size=100)
    got = right.ok("stream_wait", id="once", count=501, wait=2, timeout=10)
    assert got["count"] == 500, got  # each exactly once (a 501st would be a copy)
    exchange(left, right, "plain.x", 300)  # no `fast`: kernel UDP, still whole


@pytest.mark.parametrize("via", ["udp", "xdp"])
def test_dpdk_to_kernel_udp_or_xdp_and_back(
    netns_pair: Lan, agents: list[AgentProcess], via: str
) -> None:
    """DPDK on one host, kernel UDP (or AF_XDP) on the other: the same wire both ways."""
    a, b = netns_pair
    if via == "udp":
        b.disable_tx_offload()
    left, right = pair(agents, a, b, via_b=via)
    exchange(left, right, "fast.ab", 2000)
    exchange(right, left, "fast.ba", 2000)
    assert metric(left, "insane_messages_sent", transport="dpdk") >= 2000
    assert metric(left, "insane_messages_received", transport="dpdk") >= 2000
    assert metric(right, "insane_messages_received", transport=via) >= 2000


def test_route_and_doctor_in_the_namespace(netns_pair: Lan, tmp_path: Path) -> None:
    """`insane qos explain` routes `fast` + `poll` over dpdk; `insane doctor` reports the
    port, and for a device the EAL cannot start, the EAL's own message."""
    a, _b = netns_pair
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cli = [sys.executable, "-m", "insane.cli"]
    good = tmp_path / "good.yaml"
    good.write_text(json.dumps(config(a, 1)))
    out = a.run([*cli, "qos", "explain", "-c", str(good), "fast.orders"], env=env, timeout=60)
    assert "route:      dpdk" in out.stdout, out.stdout + out.stderr
    doctor = json.loads(a.run([*cli, "doctor", "--json", "-c", str(good)], env=env).stdout)
    assert doctor["transports"]["dpdk"]["available"] is True, doctor["transports"]["dpdk"]
    bad = tmp_path / "bad.yaml"
    cfg = config(a, 1)
    cfg["transports"]["dpdk"]["eal_args"] = ["--vdev=net_af_packet0,iface=nosuchif0"]
    bad.write_text(json.dumps(cfg))
    doctor = json.loads(a.run([*cli, "doctor", "--json", "-c", str(bad)], env=env).stdout)
    reason = doctor["transports"]["dpdk"]["reason"]
    assert "the EAL found 0; the EAL said:" in reason, reason
    assert "net_af_packet0: ioctl failed (SIOCGIFINDEX):No such device" in reason, reason


SIGTERM_PEER = """
import asyncio, json, logging, sys
import insane
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
async def main():
    s = await insane.connect(json.loads(sys.argv[1]), name="term")
    print("ready", [t.name for t in s._driver.bypass], flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


def test_clean_shutdown_on_close_and_sigterm(
    netns_pair: Lan, agents: list[AgentProcess]
) -> None:
    """SIGTERM stops the ports and cleans the EAL up before the process ends; after it, and
    after a close, a new process takes the same device at once and traffic flows."""
    a, b = netns_pair
    domain = random.randrange(1, 2**32)
    proc = b.python(SIGTERM_PEER, json.dumps(config(b, domain)))
    assert wait_for_line(proc, "ready ['dpdk']", timeout=60)
    os.killpg(proc.pid, signal.SIGTERM)
    assert wait_exit(proc, timeout=10, check=False) == -signal.SIGTERM

    assert "EAL: ports stopped, cleaned up" in output_of(proc).stderr
    left, right = pair(agents, a, b, domain=domain)
    exchange(right, left, "fast.one", 200)
    right.ok("close")
    right.kill()
    again = start(agents, b, "again", domain)
    again.ok("wait_peers", names=["left"], timeout=30)
    exchange(again, left, "fast.two", 200)
    assert metric(again, "insane_messages_sent", transport="dpdk") >= 200


def test_ordered_stream_over_dpdk_through_a_faulty_wire(
    faulty_pair: Pair, agents: list[AgentProcess]
) -> None:
    """Issue 4's test over DPDK: 10% loss, 5% duplication, 25% reordering, 1 ms delay; a
    reliable ordered `fast` stream arrives whole and in order."""
    a, b, injector = faulty_pair(loss=0.1, dup=0.05, reorder=0.25, delay_ms=1.0, seed=31)
    left, right = pair(agents, a, b)
    assert left.ok("route", subject="fast.x")["transport"] == "dpdk"
    right.ok("stream_sub", subject="fast.data", id="s")
    sent = left.ok("stream_pub", subject="fast.data", count=VOLUME, timeout=600)
    got = right.ok("stream_wait", id="s", count=VOLUME, wait=300, timeout=330)
    assert got["count"] == VOLUME and got["in_order"] and got["sha"] == sent["sha"], got
    wire = injector.stats()["ab"]
    assert wire["dropped"] > 0 and wire["reordered"] > 0
    assert metric(left, "insane_messages_sent", transport="dpdk") >= VOLUME
    assert metric(left, "insane_retransmissions") > 0
    assert right.ok("errors")["errors"] == []
