"""``insane top``: a live terminal view of running sessions, read from their metrics endpoints.

For those without Grafana: it scrapes each endpoint's Prometheus text every interval and shows
what the dashboard shows, as rates between two scrapes: the process's sessions by name; per
transport messages, bytes, datagrams per batch, drops, retransmissions, gaps and stalls; per
channel pattern; per peer the heartbeat RTT; the routes in use and the policy fallbacks.
Endpoints are given as URLs (an endpoint that does not answer is shown as unreachable), or
found by probing the configured ``metrics`` port range at every refresh, so that processes
that start appear and processes that leave disappear. Every line fits the terminal's width
(80 columns when there is no terminal).
"""

from __future__ import annotations

import math
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]


@dataclass
class Scrape:
    """One scrape of one endpoint: sample name -> label set -> value."""

    url: str
    at: float
    samples: dict[str, dict[Labels, float]] = field(default_factory=dict)

    def series(self, name: str) -> dict[Labels, float]:
        return self.samples.get(name, {})

    def sum_by(self, name: str, *keys: str) -> dict[tuple[str, ...], float]:
        out: dict[tuple[str, ...], float] = {}
        for labels, v in self.series(name).items():
            d = dict(labels)
            k = tuple(d.get(key, "") for key in keys)
            out[k] = out.get(k, 0.0) + v
        return out


def parse(url: str, text: str, at: float) -> Scrape:
    scrape = Scrape(url, at)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = tuple(sorted(s.labels.items()))
            scrape.samples.setdefault(s.name, {})[labels] = float(s.value)
    return scrape


def fetch(url: str, timeout: float = 2.0) -> Scrape:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        text = resp.read().decode()
    return parse(url, text, time.monotonic())


#: What a collector gives for one endpoint: its scrape, or why it could not be read.
Views = dict[str, Scrape | str]


def metrics_url(endpoint: str) -> str:
    """``host:port``, ``http://host:port`` or a full URL -> the URL of the metrics page."""
    url = endpoint if "://" in endpoint else "http://" + endpoint
    return url if "/" in url.split("://", 1)[1] else url.rstrip("/") + "/metrics"


def scrape_urls(urls: list[str]) -> Callable[[], Views]:
    """A collector for given endpoints: each one's scrape, or ``unreachable (why)``."""

    def collect() -> Views:
        out: Views = {}
        for url in urls:
            try:
                out[url] = fetch(url)
            except OSError as exc:
                out[url] = f"unreachable ({exc})"
        return out

    return collect


def scrape_range(bind: str, port: int, span: int) -> Callable[[], Views]:
    """A collector for the INSANE processes answering in ``bind``'s port range, probed anew
    each time (so it sees the ones that started since, and not the ones that left)."""
    host = "127.0.0.1" if bind in ("0.0.0.0", "::") else bind
    host = f"[{host}]" if ":" in host else host
    urls = [f"http://{host}:{p}/metrics" for p in range(port, min(port + span, 65536))]

    def collect() -> Views:
        out: Views = {}
        for url in urls:
            try:
                scrape = fetch(url, timeout=0.5)
            except OSError:
                continue
            if "insane_build_info" in scrape.samples:
                out[url] = scrape
        return out

    return collect


# ---------------------------------------------------------------------- rendering


def _rates(
    prev: Scrape, cur: Scrape, name: str, *keys: str
) -> dict[tuple[str, ...], float]:
    dt = max(cur.at - prev.at, 1e-9)
    before = prev.sum_by(name, *keys)
    return {k: max(v - before.get(k, 0.0), 0.0) / dt for k, v in cur.sum_by(name, *keys).items()}


def _num(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e4:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}" if v >= 10 or v == 0 else f"{v:.1f}"


def _secs(v: float) -> str:
    if math.isnan(v):
        return "-"
    if v < 1e-3:
        return f"{v * 1e6:.0f} us"
    if v < 1:
        return f"{v * 1e3:.1f} ms"
    return f"{v:.2f} s"


def quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """``histogram_quantile`` over cumulative (upper bound, count) pairs, as Prometheus does:
    linear interpolation inside the bucket; the highest finite bound when it falls in +Inf."""
    pairs = sorted(buckets)
    if not pairs or pairs[-1][1] <= 0:
        return math.nan
    rank = q * pairs[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in pairs:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _clip(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."


def _table(header: list[str], rows: list[list[str]], text_columns: int = 1) -> list[str]:
    """Aligned columns: the first ``text_columns`` to the left, numbers to the right."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(
        f"{{:<{w}}}" if i < text_columns else f"{{:>{w}}}" for i, w in enumerate(widths)
    )
    return [fmt.format(*header).rstrip(), *(fmt.format(*r).rstrip() for r in rows)] + (
        [] if rows else ["(none)"]
    )


def render(prev: Scrape | None, cur: Scrape, width: int = 80) -> str:
    """The view of one endpoint: rates between ``prev`` and ``cur`` (none yet without
    ``prev``: a process seen for the first time), totals from ``cur``; lines cut at
    ``width``."""
    out: list[str] = []
    b = dict(next(iter(cur.series("insane_build_info")), ()))
    names = sorted(dict(k)["name"] for k, v in cur.series("insane_session_info").items() if v)
    peers = sum(cur.series("insane_peers_alive").values())
    out.append(f"{cur.url}  " + (", ".join(names) or "no session open"))
    available = [
        dict(k)["transport"] for k, v in cur.series("insane_transport_available").items() if v
    ]
    out.append(
        f"insane {b.get('version', '?')}, Python {b.get('python', '?')} "
        f"({b.get('speedups', '?')}), peers alive {peers:.0f}, transports: "
        + (", ".join(sorted(available)) or "none")
    )
    if prev is None:
        out.append("(first scrape: rates from the next refresh)")
        return "\n".join(_clip(line, width) for line in out)
    out.append("")

    def rate(name: str, *keys: str) -> Callable[[tuple[str, ...]], float]:
        r = _rates(prev, cur, name, *keys)
        return lambda k: r.get(k, 0.0)

    msg_out, msg_in = rate("insane_messages_sent_total", "transport"), rate(
        "insane_messages_received_total", "transport"
    )
    by_out, by_in = rate("insane_bytes_sent_total", "transport"), rate(
        "insane_bytes_received_total", "transport"
    )
    dg_out, bt_out = rate("insane_datagrams_sent_total", "transport"), rate(
        "insane_batches_sent_total", "transport"
    )
    drops, retx = rate("insane_dropped_total", "transport"), rate(
        "insane_retransmissions_total", "transport"
    )
    stalls = rate("insane_window_stalls_total", "transport")
    lost = cur.sum_by("insane_gaps_total", "transport", "result")
    transports = sorted({k[0] for k in cur.sum_by("insane_datagrams_sent_total", "transport")})
    rows = []
    for t in transports:
        k = (t,)
        batch = dg_out(k) / bt_out(k) if bt_out(k) else 0.0
        rows.append(
            [
                t,
                _num(msg_out(k)),
                _num(msg_in(k)),
                f"{by_out(k) / 1e6:.2f}",
                f"{by_in(k) / 1e6:.2f}",
                f"{batch:.1f}",
                _num(drops(k)),
                _num(retx(k)),
                f"{lost.get((t, 'unrecoverable'), 0):.0f}",
                _num(stalls(k)),
            ]
        )
    header = ["TRANSPORT", "OUT/S", "IN/S", "OUT MB/S", "IN MB/S", "BATCH"]
    header += ["DROP/S", "RETX/S", "LOST", "STALL/S"]
    out += _table(header, rows)
    out.append("")

    ch_out = rate("insane_messages_sent_total", "channel", "transport")
    ch_in = rate("insane_messages_received_total", "channel", "transport")
    keys = sorted(
        set(cur.sum_by("insane_messages_sent_total", "channel", "transport"))
        | set(cur.sum_by("insane_messages_received_total", "channel", "transport"))
    )
    rows = [[c, t, _num(ch_out((c, t))), _num(ch_in((c, t)))] for c, t in keys]
    out += _table(["CHANNEL", "TRANSPORT", "OUT/S", "IN/S"], rows, 2)
    out.append("")

    rtt: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for labels, v in cur.series("insane_peer_rtt_seconds_bucket").items():
        d = dict(labels)
        rtt.setdefault((d["peer"], d["transport"]), []).append((float(d["le"]), v))
    rows = [
        [peer, t, _secs(quantile(0.5, bk)), _secs(quantile(0.99, bk)), f"{max(bk)[1]:.0f}"]
        for (peer, t), bk in sorted(rtt.items())
    ]
    out += _table(["PEER", "TRANSPORT", "RTT P50", "RTT P99", "SAMPLES"], rows, 2)
    out.append("")

    routes = sorted(
        (d["channel"], d["peer"], d["transport"])
        for d in map(dict, cur.series("insane_route_info"))
    )
    out += _table(["ROUTE: CHANNEL", "PEER", "TRANSPORT"], [list(r) for r in routes], 3)
    fallbacks = cur.sum_by("insane_policy_fallbacks_total", "channel", "wanted", "got", "reason")
    if fallbacks:
        out.append("")
        rows = [[c, w, g, r, f"{v:.0f}"] for (c, w, g, r), v in sorted(fallbacks.items())]
        out += _table(["FALLBACK: CHANNEL", "WANTED", "GOT", "REASON", "COUNT"], rows, 4)
    dropped = {k: v for k, v in cur.sum_by("insane_dropped_total", "reason").items() if v}
    if dropped:
        out.append("")
        out.append(
            "dropped since start: "
            + ", ".join(f"{r} {v:.0f}" for (r,), v in sorted(dropped.items()))
        )
    return "\n".join(_clip(line, width) for line in out)


def run(
    collect: Callable[[], Views],
    interval: float,
    once: bool,
    write: Callable[[str], object],
    width: int = 80,
    iterations: int | None = None,
) -> int:
    """Scrape every ``interval`` seconds and write the view of each endpoint ``collect``
    gives (rates need two scrapes of it); ``once``: one view after two scrapes, exit status 1
    if an endpoint was unreachable."""
    prev: dict[str, Scrape] = {}
    n = 0
    while True:
        views, unreachable = [], False
        current = collect()
        for url, cur in current.items():
            if isinstance(cur, str):
                views.append(_clip(f"{url}: {cur}", width))
                unreachable = True
            elif not once or url in prev:
                views.append(render(prev.get(url), cur, width))
        prev = {url: cur for url, cur in current.items() if isinstance(cur, Scrape)}
        n += 1
        if n >= 2 or not once:
            text = "\n\n".join(views or ["no INSANE process answers"]) + "\n"
            write(text if once else "\x1b[H\x1b[2J" + text)
        if (once and n >= 2) or (iterations is not None and n >= iterations):
            return 1 if unreachable else 0
        time.sleep(interval)
