"""Prometheus metrics: cheap counters on the hot path, exposed by a collector at scrape time.

The datapath increments plain Python integers held in :class:`Cell` objects (one attribute
add per event, no locks, no label look-ups); a custom collector turns the process-wide table
of cells into ``insane_*`` metric families when Prometheus scrapes. Gauges and the heartbeat
RTT histogram live in the same table. Labels stay bounded: ``channel`` is the configured
pattern (never the raw subject), ``transport`` one of four names, ``peer`` a live peer (its
series go when it does, and ``limits.max_peers`` caps them). docs/metrics.md is the catalogue;
metrics_http.py serves it.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
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
    "insane_batches_sent": (
        "counter",
        "Batches of datagrams handed to a transport in one call "
        "(datagrams / batches = mean batch size).",
        ("transport",),
    ),
    "insane_batches_received": (
        "counter",
        "Batches of datagrams taken from a transport in one call.",
        ("transport",),
    ),
    "insane_policy_fallbacks": (
        "counter",
        "Routes (channel pattern, peer) that fell back from the transport the QoS wanted: "
        "reason is unavailable (not on this host) or peer (the peer lacks it).",
        ("channel", "wanted", "got", "reason"),
    ),
    "insane_peers_alive": (
        "gauge",
        "Peers currently alive (not suspect), as seen by sessions of this process.",
        (),
    ),
    "insane_peers_suspect": (
        "gauge",
        "Peers silent past discovery.peer_timeout (or unreachable), as seen by sessions of this "
        "process: given no new work, their streams kept for reliability.retransmit_age.",
        (),
    ),
    "insane_sessions": ("gauge", "Sessions open in this process.", ()),
    "insane_session_info": (
        "gauge",
        "1 for each session open in this process, labelled with its name (connect(name=...), "
        "nats-py's name=, default host:pid) and its peer id.",
        ("name", "id"),
    ),
    "insane_route_info": (
        "gauge",
        "1 for each route in use: the transport a channel pattern's messages take to a peer.",
        ("channel", "peer", "transport"),
    ),
    "insane_transport_available": (
        "gauge",
        "1 when this host can use the transport (insane doctor says why not), else 0.",
        ("transport",),
    ),
    "insane_build_info": (
        "gauge",
        "1, labelled with the INSANE version, the Python version and whether the native "
        "speedups are in use.",
        ("version", "python", "speedups"),
    ),
    "insane_peer_rtt_seconds": (
        "histogram",
        "Round-trip time to each peer, measured by heartbeats (the peer's hold time excluded).",
        ("transport", "peer"),
    ),
}

#: Buckets of insane_peer_rtt_seconds: 50 us (a polling pair) to 1 s (a congested WAN).
RTT_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip

#: Every ``reason`` of insane_dropped_total, initialised to 0 for each transport in use so a
#: dashboard shows 0 rather than no data. Malformed, truncated, empty: bad input; foreign*:
#: another domain or protocol; the security and permission reasons: see README "Security".
DROP_REASONS = (
    "malformed", "truncated", "empty", "bad_version", "bad_subject", "unknown_frame",
    "foreign", "foreign_domain", "too_many_peers", "window_full", "slow_consumer",
    "permission", "replay", "unknown_key", "bad_auth", "unauthenticated", "unencrypted",
    "duplicate", "too_large", "inconsistent_fragment", "reassembly_timeout",
    "reassembly_memory", "bad_checksum", "rx_ring_full", "misaddressed",
    "rdma_setup_conflict", "rdma_error", "stale_stream", "unknown_peer", "kernel_rcvbuf",
)  # fmt: skip


class Cell:
    """One counter value for one label set; the hot path does ``cell.value += n``."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class Histogram:
    """One histogram for one label set: per-bucket counts (not cumulative), sum and count."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == math.inf else repr(bound), float(running)))
        return out


class _Store(Collector):
    """The process-wide table: counter cells, gauges (summed sources, or labelled values with
    a reference count per label set) and histograms, exported by :meth:`collect`."""

    def __init__(self) -> None:
        self._cells: dict[str, dict[tuple[str, ...], Cell]] = {
            name: {} for name, spec in CATALOGUE.items() if spec[0] == "counter"
        }
        self._sources: dict[str, list[Callable[[], float]]] = {}
        self._labelled: dict[str, dict[tuple[str, ...], float]] = {}
        self._refs: dict[tuple[str, tuple[str, ...]], int] = {}
        self._histograms: dict[str, dict[tuple[str, ...], Histogram]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ counters

    def cell(self, name: str, *labels: str) -> Cell:
        table = self._cells[name]
        c = table.get(labels)
        if c is None:
            with self._lock:
                c = table.setdefault(labels, Cell())
        return c

    def total(self, name: str, **match: str) -> float:
        """Sum of a counter over every label set whose labels include ``match``."""
        names = CATALOGUE[name][2]
        out = 0
        for labels, c in list(self._cells[name].items()):
            d = dict(zip(names, labels, strict=True))
            if all(d.get(k) == v for k, v in match.items()):
                out += c.value
        return float(out)

    # ------------------------------------------------------------------ gauges

    def add_gauge_source(self, name: str, source: Callable[[], float]) -> None:
        """An unlabelled gauge is the sum of its sources (one per session)."""
        with self._lock:
            self._sources.setdefault(name, []).append(source)

    def remove_gauge_source(self, name: str, source: Callable[[], float]) -> None:
        with self._lock:
            sources = self._sources.get(name, [])
            if source in sources:
                sources.remove(source)

    def set_gauge(self, name: str, labels: tuple[str, ...], value: float) -> None:
        with self._lock:
            self._labelled.setdefault(name, {})[labels] = value

    def hold(self, name: str, labels: tuple[str, ...]) -> None:
        """An info gauge: 1 while at least one holder (session) holds the label set."""
        with self._lock:
            key = (name, labels)
            self._refs[key] = self._refs.get(key, 0) + 1
            self._labelled.setdefault(name, {})[labels] = 1.0

    def release(self, name: str, labels: tuple[str, ...]) -> None:
        with self._lock:
            key = (name, labels)
            n = self._refs.get(key, 0) - 1
            if n > 0:
                self._refs[key] = n
                return
            self._refs.pop(key, None)
            self._labelled.get(name, {}).pop(labels, None)

    # ------------------------------------------------------------------ histograms

    def histogram(self, name: str, *labels: str) -> Histogram:
        table = self._histograms.setdefault(name, {})
        h = table.get(labels)
        if h is None:
            with self._lock:
                h = table.setdefault(labels, Histogram(RTT_BUCKETS))
        return h

    def forget_histogram(self, name: str, *labels: str) -> None:
        """A departed peer's series go with it, so label values stay bounded."""
        with self._lock:
            self._histograms.get(name, {}).pop(labels, None)

    # ------------------------------------------------------------------ reading

    def value(self, name: str, *labels: str) -> float:
        """Current value (tests and `insane top`); unlabelled gauges sum their sources."""
        kind = CATALOGUE[name][0]
        if kind == "gauge":
            if labels or name in self._labelled:
                return float(self._labelled.get(name, {}).get(labels, 0.0))
            return float(sum(s() for s in list(self._sources.get(name, []))))
        if kind == "histogram":
            h = self._histograms.get(name, {}).get(labels)
            return float(sum(h.counts)) if h else 0.0
        c = self._cells[name].get(labels)
        return float(c.value) if c else 0.0

    def collect(self) -> Iterator[Metric]:
        for name, (kind, doc, label_names) in CATALOGUE.items():
            if kind == "counter":
                counter = CounterMetricFamily(name, doc, labels=label_names)
                for labels, c in list(self._cells[name].items()):
                    counter.add_metric(list(labels), c.value)
                yield counter
            elif kind == "histogram":
                hist = HistogramMetricFamily(name, doc, labels=label_names)
                for labels, h in list(self._histograms.get(name, {}).items()):
                    hist.add_metric(list(labels), h.cumulative(), h.sum)
                yield hist
            else:
                gauge = GaugeMetricFamily(name, doc, labels=label_names)
                if label_names:
                    for labels, v in list(self._labelled.get(name, {}).items()):
                        gauge.add_metric(list(labels), v)
                else:
                    total = float(sum(s() for s in list(self._sources.get(name, []))))
                    gauge.add_metric([], total)
                yield gauge

    def describe(self) -> Iterable[Metric]:
        return []


STORE = _Store()
REGISTRY.register(STORE)


def peer_label(name: str, peer_id: int) -> str:
    """The ``peer`` label: the peer's name and the start of its id, unique and readable."""
    return f"{name or 'peer'}-{peer_id:016x}"[: len(name or "peer") + 9]


def init_transport(transport: str) -> None:
    """Create a transport's counters at 0, so graphs show 0 rather than no data."""
    for name, (kind, _doc, label_names) in CATALOGUE.items():
        if kind != "counter" or label_names[:1] != ("transport",):
            continue
        if label_names == ("transport",):
            STORE.cell(name, transport)
        elif name == "insane_dropped":
            for reason in DROP_REASONS:
                STORE.cell(name, transport, reason)
        elif name == "insane_nacks":
            for direction in ("sent", "received"):
                STORE.cell(name, transport, direction)
        elif name == "insane_gaps":
            for result in ("recovered", "unrecoverable"):
                STORE.cell(name, transport, result)


def set_build_info(native: bool) -> None:
    """insane_build_info: this package's version, Python's, and whether the native speedups
    run (``native``)."""
    import platform

    from insane.version import __version__

    speedups = "native" if native else "python"
    STORE.set_gauge(
        "insane_build_info", (__version__, platform.python_version(), speedups), 1.0
    )
