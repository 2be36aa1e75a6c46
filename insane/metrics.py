"""Prometheus metrics: cheap counters on the hot path, exposed by a collector at scrape time.

The datapath increments plain Python integers held in :class:`Cell` objects (one attribute
add per event, no locks, no label look-ups); a custom collector turns the process-wide table
of cells into ``insane_*`` metric families when Prometheus scrapes. Labels stay bounded:
``channel`` is the configured pattern (never the raw subject), ``transport`` one of four names.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: name -> (kind, help, label names)
CATALOGUE: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "insane_messages_sent": (
        "counter",
        "Messages handed to a transport, per destination peer copy.",
        ("transport", "channel"),
    ),
    "insane_messages_received": (
        "counter",
        "Messages received from the network.",
        ("transport", "channel"),
    ),
    "insane_bytes_sent": ("counter", "Payload bytes of sent messages.", ("transport", "channel")),
    "insane_bytes_received": (
        "counter",
        "Payload bytes of received messages.",
        ("transport", "channel"),
    ),
    "insane_messages_delivered": (
        "counter",
        "Messages delivered to local subscriptions.",
        ("channel",),
    ),
    "insane_datagrams_sent": ("counter", "Datagrams handed to a transport.", ("transport",)),
    "insane_datagrams_received": (
        "counter",
        "Datagrams received from a transport.",
        ("transport",),
    ),
    "insane_retransmissions": (
        "counter",
        "Datagrams of reliable streams sent again after a NACK.",
        ("transport",),
    ),
    "insane_nacks": (
        "counter",
        "NACK frames (requests to send missing datagrams again), sent or received.",
        ("transport", "direction"),
    ),
    "insane_duplicates": (
        "counter",
        "Datagrams of reliable streams received twice and dropped.",
        ("transport",),
    ),
    "insane_gaps": (
        "counter",
        "Missing datagrams of reliable streams: recovered (arrived late or resent) or "
        "unrecoverable (reported to error_cb).",
        ("transport", "result"),
    ),
    "insane_window_stalls": (
        "counter",
        "Times a publisher waited because a receiver's flow-control window was full.",
        ("transport",),
    ),
    "insane_dropped": (
        "counter",
        "Datagrams, frames or messages dropped, by reason.",
        ("transport", "reason"),
    ),
    "insane_policy_fallbacks": (
        "counter",
        "Routes that fell back from the transport the QoS wanted.",
        ("channel", "wanted", "got", "reason"),
    ),
    "insane_peers_alive": (
        "gauge",
        "Peers currently alive, as seen by sessions of this process.",
        (),
    ),
}


class Cell:
    """One counter value for one label set; the hot path does ``cell.value += n``."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class _Store(Collector):
    def __init__(self) -> None:
        self._cells: dict[str, dict[tuple[str, ...], Cell]] = {name: {} for name in CATALOGUE}
        self._gauges: dict[str, list[Callable[[], float]]] = {}
        self._lock = threading.Lock()

    def cell(self, name: str, *labels: str) -> Cell:
        table = self._cells[name]
        c = table.get(labels)
        if c is None:
            with self._lock:
                c = table.setdefault(labels, Cell())
        return c

    def add_gauge_source(self, name: str, source: Callable[[], float]) -> None:
        self._gauges.setdefault(name, []).append(source)

    def remove_gauge_source(self, name: str, source: Callable[[], float]) -> None:
        sources = self._gauges.get(name, [])
        if source in sources:
            sources.remove(source)

    def value(self, name: str, *labels: str) -> float:
        """Current value (tests and `insane top`); gauges sum their sources."""
        if CATALOGUE[name][0] == "gauge":
            return float(sum(s() for s in self._gauges.get(name, [])))
        c = self._cells[name].get(labels)
        return float(c.value) if c else 0.0

    def total(self, name: str, **match: str) -> float:
        """Sum of a counter over every label set whose labels include ``match``."""
        names = CATALOGUE[name][2]
        out = 0
        for labels, c in list(self._cells[name].items()):
            d = dict(zip(names, labels, strict=True))
            if all(d.get(k) == v for k, v in match.items()):
                out += c.value
        return float(out)

    def collect(self) -> Iterator[Metric]:
        for name, (kind, doc, label_names) in CATALOGUE.items():
            if kind == "counter":
                fam: Metric = CounterMetricFamily(name, doc, labels=label_names)
                for labels, c in list(self._cells[name].items()):
                    fam.add_metric(list(labels), c.value)  # type: ignore[attr-defined]
            else:
                fam = GaugeMetricFamily(name, doc, labels=label_names)
                fam.add_metric([], float(sum(s() for s in self._gauges.get(name, []))))
            yield fam

    def describe(self) -> Iterable[Metric]:
        return []


STORE = _Store()
REGISTRY.register(STORE)

_servers: dict[tuple[str, int], Any] = {}
_server_lock = threading.Lock()


def serve(bind: str, port: int) -> int:
    """Expose this process's metrics over HTTP (once per address); return the bound port."""
    with _server_lock:
        key = (bind, port)
        if key not in _servers:
            server, _thread = start_http_server(port, addr=bind)
            _servers[key] = server
            bound = int(server.server_address[1])
            if port == 0:
                _servers[(bind, bound)] = server
            return bound
        server = _servers[key]
        return int(server.server_address[1])
