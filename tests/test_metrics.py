"""Metrics are exposed over HTTP when configured, with the documented names and labels."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import insane
from insane.ops import metrics_http
from insane.ops.metrics import CATALOGUE, DROP_REASONS, RTT_BUCKETS, STORE, Histogram, peer_label
from insane.ops.top import quantile
from insane.qos import ConfigError

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_counters_are_served_with_transport_and_channel_labels() -> None:
    port = free_port()
    domain = random.randrange(1, 2**32)
    cfg = {
        "domain": domain,
        "channels": {"orders.>": {"qos": ["reliable"]}},
        "metrics": {"port": port},
    }
    async with insane.connect(cfg) as a, insane.connect({"domain": domain}) as b:
        sub = await b.subscribe("orders.>")
        for _ in range(7):
            await a.publish("orders.eu.new", b"12345")
        for _ in range(7):
            await sub.next_msg(1)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    sent = [line for line in text.splitlines() if line.startswith("insane_messages_sent_total{")]
    assert any('channel="orders.>"' in line and 'transport="udp"' in line for line in sent), sent
    for name in (
        "insane_messages_received_total",
        "insane_bytes_sent_total",
        "insane_bytes_received_total",
        "insane_dropped_total",
        "insane_peers_alive",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
    line = next(s for s in sent if 'channel="orders.>"' in s)
    assert float(line.rsplit(" ", 1)[1]) >= 7
    # The receiving side counts under the configured pattern of *its* configuration: default.
    assert 'insane_messages_received_total{channel="default",transport="udp"}' in text


# --- one port per process, Prometheus target files ------------------------------------------


def test_a_second_process_takes_the_next_port_of_the_range() -> None:
    """With the port taken (by another process), serve() moves up the range; sessions of one
    process share the server; a full range fails naming metrics.port."""
    base = free_port()
    other = socket.socket()
    other.bind(("127.0.0.1", base))
    other.listen()
    try:
        try:
            port = metrics_http.serve("127.0.0.1", base, 4)
        except metrics_http.MetricsPortError:
            pytest.skip("the ports above a free one were taken")
        assert base < port < base + 4
        assert metrics_http.serve("127.0.0.1", base, 4) == port  # the same process: shared
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert b"insane_build_info" in text
        with pytest.raises(metrics_http.MetricsPortError, match=r"metrics\.port: every port"):
            metrics_http.serve("127.0.0.1", base, 1)
    finally:
        other.close()


def test_target_files_for_prometheus_file_sd(tmp_path: Path) -> None:
    """A process writes its target file; files of dead processes are pruned; its own goes
    at exit."""
    stale = tmp_path / "insane-999999999.json"
    stale.write_text("[]")
    path = metrics_http.write_target(str(tmp_path), "127.0.0.1", 9999, "orders")
    pid = str(os.getpid())
    assert json.loads(path.read_text()) == [
        {"targets": ["127.0.0.1:9999"], "labels": {"insane_pid": pid, "service": "orders"}}
    ]
    assert not stale.exists()
    # A second session of the process joins the label; one that closes leaves it.
    metrics_http.write_target(str(tmp_path), "127.0.0.1", 9999, "billing")
    assert json.loads(path.read_text())[0]["labels"]["service"] == "billing,orders"
    metrics_http.withdraw_target(str(tmp_path), "orders")
    assert json.loads(path.read_text())[0]["labels"]["service"] == "billing"
    metrics_http.withdraw_target(str(tmp_path), "billing")
    assert json.loads(path.read_text())[0]["labels"] == {"insane_pid": pid}
    metrics_http._remove_targets()
    assert not path.exists()


async def test_session_info_names_each_open_session() -> None:
    async with insane.connect({"domain": random.randrange(1, 2**32)}, name="orders-api") as s:
        labels = ("orders-api", f"{s.peer_id:016x}")
        assert STORE.value("insane_session_info", *labels) == 1.0
    assert STORE.value("insane_session_info", *labels) == 0.0


async def test_a_full_port_range_names_the_yaml_and_key(tmp_path: Path) -> None:
    base = free_port()
    cfg = tmp_path / "svc.yaml"
    cfg.write_text(
        f"domain: {random.randrange(1, 2**32)}\nmetrics: {{port: {base}, port_span: 1}}\n"
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base))
        taken.listen()
        with pytest.raises(metrics_http.MetricsPortError) as e:
            await insane.connect(str(cfg))
    assert str(e.value) == (
        f"{cfg}: metrics.port: every port from {base} to {base} on 127.0.0.1 is in use "
        "(raise metrics.port_span, or pick another metrics.port)"
    )


async def test_sessions_of_one_config_each_get_a_port(tmp_path: Path) -> None:
    base = free_port()
    domain = random.randrange(1, 2**32)
    cfg = {
        "domain": domain,
        "metrics": {"port": base, "port_span": 8, "targets_dir": str(tmp_path)},
    }
    async with insane.connect(cfg) as a:
        assert a.metrics_port is not None and base <= a.metrics_port < base + 8
        assert (tmp_path / f"insane-{os.getpid()}.json").exists()


def test_metrics_port_span_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"metrics\.port_span.*1 to 1024|port_span"):
        insane.load_config({"metrics": {"port": 9464, "port_span": 0}})


# --- route, RTT, drop reasons ----------------------------------------------------------------


async def test_route_info_and_rtt_follow_the_peer() -> None:
    """insane_route_info names the channel, peer and transport while the peer is there; the
    peer's RTT histogram fills from heartbeats; both go when the peer leaves."""
    domain = random.randrange(1, 2**32)
    cfg = {"domain": domain, "channels": {"route.>": {"qos": ["fast"]}}}
    async with insane.connect(cfg, name="pubr") as a:
        b = await insane.connect({"domain": domain}, name="subr")
        sub = await b.subscribe("route.>")
        await a.publish("route.x", b"1")
        await sub.next_msg(2)
        peer = peer_label("subr", b.peer_id)
        assert STORE.value("insane_route_info", "route.>", peer, "udp") == 1
        for _ in range(40):
            if STORE.value("insane_peer_rtt_seconds", "udp", peer):
                break
            await asyncio.sleep(0.1)
        assert STORE.value("insane_peer_rtt_seconds", "udp", peer) >= 1
        await b.close()
        for _ in range(40):
            if not STORE.value("insane_route_info", "route.>", peer, "udp"):
                break
            await asyncio.sleep(0.05)
        assert STORE.value("insane_route_info", "route.>", peer, "udp") == 0
        assert STORE.value("insane_peer_rtt_seconds", "udp", peer) == 0


def test_histogram_buckets_and_quantile() -> None:
    h = Histogram(RTT_BUCKETS)
    for v in [0.0002] * 90 + [0.02] * 10:
        h.observe(v)
    cumulative = dict(h.cumulative())
    assert cumulative["0.00025"] == 90 and cumulative["0.025"] == 100
    assert cumulative["+Inf"] == 100 and abs(h.sum - (90 * 0.0002 + 10 * 0.02)) < 1e-9
    pairs = [(float(le), n) for le, n in h.cumulative()]
    assert 0.0001 < quantile(0.5, pairs) <= 0.00025
    assert 0.01 < quantile(0.99, pairs) <= 0.025
    h.observe(0.00025)  # le is "less than or equal"
    assert dict(h.cumulative())["0.00025"] == 91


def test_every_drop_reason_in_the_code_is_catalogued() -> None:
    """Each reason the code can count in insane_dropped_total is in DROP_REASONS (so it is
    initialised, documented, and on the dashboard)."""
    pattern = re.compile(
        r'(?:WireError\(|_drop\(|_drops\.append\(|_discard\(key, )"([a-z_]+)"'
    )
    found = set()
    for path in (REPO / "insane").rglob("*.py"):
        found |= set(pattern.findall(path.read_text()))
    assert found, "the pattern found nothing"
    assert found <= set(DROP_REASONS), found - set(DROP_REASONS)
    doc = (REPO / "docs" / "metrics.md").read_text()
    missing = [r for r in DROP_REASONS if f"`{r}`" not in doc]
    assert not missing, missing


def test_catalogue_is_documented() -> None:
    """docs/metrics.md has a row for every metric, with its type and its labels."""
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in (REPO / "docs" / "metrics.md").read_text().splitlines()
        if line.startswith("| `insane_")
    }
    for name, (kind, _help, labels) in CATALOGUE.items():
        exposed = name + "_total" if kind == "counter" else name
        assert exposed in rows, exposed
        assert kind in rows[exposed], (exposed, kind)
        assert all(f"`{label}`" in rows[exposed] for label in labels), (exposed, labels)
    assert len(rows) == len(CATALOGUE), set(rows) - {
        n + "_total" if k[0] == "counter" else n for n, k in CATALOGUE.items()
    }


SIGTERM_APP = """
import asyncio, signal, sys
import insane

async def main(handle):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    if handle == "before":
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with insane.connect(sys.argv[1], name="svc"):
        if handle == "after":
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        print("up", flush=True)
        if handle == "no":
            await asyncio.sleep(60)
        await stop.wait()
        print("the app's own handler ran", flush=True)

asyncio.run(main(sys.argv[2]))
"""


@pytest.mark.parametrize("handle", ["no", "before", "after"])
def test_sigterm_removes_the_target_file(tmp_path: Path, handle: str) -> None:
    """systemd, Docker and Kubernetes stop a service with SIGTERM: its target file goes as on
    a normal exit. An app that handles SIGTERM keeps it, whether it took it before or after
    connect(), and the file goes when it exits."""
    cfg = tmp_path / "svc.yaml"
    cfg.write_text(
        f"domain: {random.randrange(1, 2**32)}\n"
        f"metrics: {{port: {free_port()}, port_span: 8, targets_dir: targets}}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_APP, str(cfg), handle],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "up\n", proc.stderr.read() if proc.stderr else ""
        target = tmp_path / "targets" / f"insane-{proc.pid}.json"
        assert json.loads(target.read_text())[0]["labels"]["service"] == "svc"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    if handle == "no":
        assert proc.returncode == -signal.SIGTERM, err  # it still dies of SIGTERM
    else:
        assert proc.returncode == 0, err
        assert out == "the app's own handler ran\n"
    assert err == ""
    assert not target.exists()
