"""The metrics and the Grafana dashboard against a real Prometheus.

Two peer processes share one YAML (same metrics port range, same file_sd directory) and talk
both ways. A private Prometheus (Debian ``prometheus`` on 127.0.0.1) discovers them through the
target files they write and scrapes them every second. Then every PromQL expression of every
panel of grafana/provisioning/dashboards/insane/insane.json must return at least one series,
and ``promtool check metrics`` must accept what each process exposes.
"""

from __future__ import annotations

import importlib.util
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from agentctl import AgentProcess
from netns import strict_skip
from prometheus_harness import Prometheus, binary

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "grafana" / "provisioning" / "dashboards" / "insane" / "insane.json"


def load_dashboard_module() -> ModuleType:
    path = REPO / "grafana" / "dashboard.py"
    spec = importlib.util.spec_from_file_location("insane_dashboard", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_range(span: int) -> int:
    """A base port with ``span`` free ports above it on 127.0.0.1."""
    for _ in range(200):
        base = random.randrange(20000, 60000)
        socks = []
        try:
            for p in range(base, base + span):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free port range")


class Setup:
    def __init__(self, prom: Prometheus, peers: list[AgentProcess], ports: list[int]) -> None:
        self.prom = prom
        self.peers = peers
        self.ports = ports


@pytest.fixture(scope="module")
def observed() -> Iterator[Setup]:
    """Two peers with traffic both ways, scraped by a private Prometheus through file_sd."""
    for tool in ("prometheus", "promtool"):
        if binary(tool) is None:
            strict_skip(f"{tool} is not installed (Debian: prometheus); ./run test installs it")
    tmp = Path(tempfile.mkdtemp(prefix="insane-obs-"))
    base = free_range(8)
    config = {
        "domain": random.randrange(1, 2**32),
        "channels": {
            "obs.>": {"qos": ["fast", "reliable", "ordered"]},  # fast: a fallback to count
        },
        "metrics": {"port": base, "port_span": 8, "targets_dir": str(tmp / "targets")},
    }
    peers: list[AgentProcess] = []
    prom: Prometheus | None = None
    try:
        for name in ("left", "right"):
            p = AgentProcess()
            peers.append(p)
            p.ok("connect", config=config, name=name)
        left, right = peers
        left.ok("sub", subject="obs.to-left", id="in")
        right.ok("sub", subject="obs.to-right", id="in")
        right.ok("reply", subject="obs.echo", id="echo")
        left.ok("wait_peers", names=["right"], timeout=10)
        right.ok("wait_peers", names=["left"], timeout=10)
        left.ok("pace", subject="obs.to-right", rate=500)
        right.ok("pace", subject="obs.to-left", rate=500)
        left.ok("request", subject="obs.echo", data="ping", timeout=5)
        ports = [p.ok("metrics_port")["port"] for p in peers]
        # The Prometheus `insane monitor` runs: the shipped configuration, on this YAML.
        (tmp / "insane.yaml").write_text(yaml.safe_dump(config))
        prom = Prometheus.monitor(str(tmp / "insane.yaml"), interval="1s")
        yield Setup(prom, peers, ports)
    finally:
        if prom is not None:
            prom.stop()
        for p in peers:
            p.stop()


def wait_for(
    prom: Prometheus, promql: str, timeout: float = 30.0, series: int = 1
) -> list[dict[str, Any]]:
    """The query's result once it has at least ``series`` series (or the last one tried)."""
    deadline = time.monotonic() + timeout
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = prom.query(promql)
        if len(result) >= series:
            return result
        time.sleep(0.5)
    return result


def test_each_process_serves_its_own_port_and_prometheus_finds_both(observed: Setup) -> None:
    """One YAML for both processes: each takes its own port of the range and writes a target
    file; Prometheus discovers and scrapes both."""
    assert len(set(observed.ports)) == 2, observed.ports
    up = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(up) < 2:
        up = observed.prom.query('up{job="insane"} == 1')
        time.sleep(0.5)
    instances = sorted(r["metric"]["instance"] for r in up)
    assert instances == sorted(f"127.0.0.1:{p}" for p in observed.ports), (up, observed.prom.log)


def test_services_are_told_apart_by_name(observed: Setup) -> None:
    """Each process names its session: in insane_session_info, and in the `service` label the
    target files give every series of the process; the dashboard's variables use them."""
    info = wait_for(observed.prom, "insane_session_info == 1", series=2)
    by_name = {r["metric"]["name"]: r["metric"]["instance"] for r in info}
    assert set(by_name) == {"left", "right"}, info
    up = wait_for(observed.prom, 'up{service="left"} == 1')
    assert [r["metric"]["instance"] for r in up] == [by_name["left"]], up
    received = 'rate(insane_messages_received_total{channel="obs.>"}[1m])'
    rates = wait_for(observed.prom, f"sum by (service) ({received})", series=2)
    assert {r["metric"]["service"] for r in rates} == {"left", "right"}, rates


def test_every_dashboard_query_returns_data(observed: Setup) -> None:
    """Every PromQL expression of every panel of the checked-in dashboard returns at least
    one series from a live two-peer session."""
    dashboard = load_dashboard_module()
    queries = dashboard.queries(json.loads(DASHBOARD.read_text()))
    assert len(queries) >= 15, queries
    # rate() needs two samples in its window, histograms a heartbeat or two: wait for them.
    wait_for(observed.prom, "rate(insane_peer_rtt_seconds_count[1m]) > 0")
    empty = []
    for title, expr in queries:
        if not wait_for(observed.prom, expr, timeout=10):
            empty.append((title, expr))
    assert not empty, f"panels without data: {empty}\n{observed.prom.log}"


def test_the_numbers_prometheus_sees_are_the_traffic(observed: Setup) -> None:
    """What the dashboard plots matches what the peers do: messages flow both ways on the
    configured channel pattern, the route and its fallback are visible, RTT is measured."""
    prom = observed.prom
    rates = wait_for(
        prom,
        'sum by (instance) (rate(insane_messages_received_total{channel="obs.>"}[1m])) > 50',
        series=2,
    )
    assert len(rates) == 2, rates
    routes = wait_for(prom, 'insane_route_info{channel="obs.>"}', series=2)
    assert {(r["metric"]["peer"].split("-")[0], r["metric"]["transport"]) for r in routes} == {
        ("left", "udp"),
        ("right", "udp"),
    }, routes
    fallbacks = prom.query('insane_policy_fallbacks_total{channel="obs.>"}')
    assert {r["metric"]["got"] for r in fallbacks} == {"udp"}, fallbacks
    assert all(r["metric"]["reason"] == "unavailable" for r in fallbacks), fallbacks
    p99 = wait_for(
        prom,
        "histogram_quantile(0.99, sum by (le, peer) (rate(insane_peer_rtt_seconds_bucket[1m])))",
        series=2,
    )
    assert len(p99) == 2 and all(0 < float(r["value"][1]) < 1 for r in p99), p99
    peers = prom.query("sum(insane_peers_alive)")
    assert float(peers[0]["value"][1]) == 2, peers


def test_promtool_accepts_the_exposition(observed: Setup) -> None:
    """`promtool check metrics` (names, units, types, help) passes on each process's text."""
    promtool = binary("promtool")
    assert promtool is not None
    for port in observed.ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read()
        assert b"insane_peer_rtt_seconds_bucket" in text
        check = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, timeout=30
        )
        assert check.returncode == 0, (check.stdout + check.stderr).decode()


def test_insane_top_shows_both_sessions(observed: Setup) -> None:
    """`insane top --once`, pointed at the endpoints, shows the traffic, peers and routes."""
    urls = [f"127.0.0.1:{p}" for p in observed.ports]
    out = subprocess.run(
        [sys.executable, "-m", "insane.cli", "top", "--once", "-i", "1", *urls],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for port in observed.ports:
        assert f"http://127.0.0.1:{port}/metrics" in text
    udp_rows = [line.split() for line in text.splitlines() if line.startswith("udp ")]
    assert len(udp_rows) == 2, text
    assert all(float(row[1]) > 50 and float(row[2]) > 50 for row in udp_rows), text
    assert "obs.>" in text and "left-" in text and "right-" in text, text
    assert "rdma" in text  # the fallback table: obs.> wanted rdma, got udp
