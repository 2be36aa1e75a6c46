"""Metrics are exposed over HTTP when configured, with the documented names and labels."""

from __future__ import annotations

import random
import socket
import urllib.request

import insane


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
