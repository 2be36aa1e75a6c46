"""The INSANE Grafana dashboard as code: writes grafana/provisioning/dashboards/insane/insane.json.

The dashboard is built with grafana-foundation-sdk (the ``dashboards`` extra) from the metrics
of insane/ops/metrics.py and prometheus_client's process_* metrics. After changing this file, run
``python grafana/dashboard.py`` and commit the JSON it writes; ``python grafana/dashboard.py
--check`` exits 1 when the checked-in JSON is stale (tests/test_dashboard.py checks the same).
:func:`queries` lists every panel's PromQL with the template variables replaced, so that the
expressions can be tried on a plain Prometheus query API.

Layout: an overview row, a row per transport (repeated over the ``transport`` variable) and a
collapsed process row. The SDK's ``Row.with_panel`` collapses the row (Grafana drops panels
nested in an expanded row), so the expanded rows get their panels added after them instead.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import string
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import heatmap, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, dashboard
from grafana_foundation_sdk.models.heatmap import HeatmapColorMode, HeatmapColorScale
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

OUTPUT = Path(__file__).resolve().parent / "provisioning" / "dashboards" / "insane" / "insane.json"

#: The datasource of provisioning/datasources/insane.yaml: the datasource variable's default.
DATASOURCE_UID = "insane-prometheus"
DATASOURCE_NAME = "INSANE Prometheus"
DS = dashboard.DataSourceRef(type_val="prometheus", uid="${datasource}")

INSTANCE = 'instance=~"$instance"'
TRANSPORT = f'{INSTANCE}, transport=~"$transport"'
CHANNEL = f'{TRANSPORT}, channel=~"$channel"'
SIDES = ("sent", "received")

#: What queries() puts in place of Grafana's built-in variables.
BUILTINS = {"__rate_interval": "1m", "__interval": "1m", "__range": "5m"}
#: $name, ${name} and ${name:format}
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")

P = TypeVar("P", timeseries.Panel, stat.Panel, table.Panel, heatmap.Panel)
PanelBuilder = Builder[dashboard.Panel]


# --- PromQL -----------------------------------------------------------------------------------


def rate(metric: str, selector: str = TRANSPORT) -> str:
    return f"rate({metric}{{{selector}}}[$__rate_interval])"


def sum_rate(by: str, metric: str, selector: str = TRANSPORT) -> str:
    return f"sum by ({by}) ({rate(metric, selector)})"


def query(expr: str, legend: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).range()


def instant(expr: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).format(PromQueryFormat.TABLE).instant()


def sent_received(by: str, counter: str, selector: str = TRANSPORT) -> list[prometheus.Dataquery]:
    """Per-second rates of insane_<counter>_sent_total and _received_total, summed by ``by``."""
    return [
        query(sum_rate(by, f"insane_{counter}_{side}_total", selector), f"{{{{{by}}}}} {side}")
        for side in SIDES
    ]


# --- panel shapes -----------------------------------------------------------------------------


def panel(
    builder: P,
    title: str,
    description: str,
    targets: Sequence[prometheus.Dataquery],
    unit: str,
    w: int,
    h: int,
) -> P:
    """Settings every panel has: title, description, the ${datasource} datasource, unit, size,
    and its targets with refIds A, B..."""
    builder.title(title).description(description).datasource(DS).unit(unit).span(w).height(h)
    for ref, target in zip(string.ascii_uppercase, targets, strict=False):
        builder.with_target(target.ref_id(ref))
    return builder


def graph(
    title: str,
    description: str,
    targets: Sequence[prometheus.Dataquery],
    unit: str,
    w: int = 12,
) -> timeseries.Panel:
    """A time series with a table legend (mean, max, last) and a shared, sorted tooltip."""
    legend = (
        cb.VizLegendOptions()
        .show_legend(True)
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.BOTTOM)
        .calcs(["mean", "max", "lastNotNull"])
    )
    tooltip = cb.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
    return (
        panel(timeseries.Panel(), title, description, targets, unit, w, 8)
        .legend(legend)
        .tooltip(tooltip.sort(common.SortOrder.DESCENDING))
        .fill_opacity(10)
        .min(0)
    )


def single_stat(title: str, description: str, expr: str) -> stat.Panel:
    """The last value of ``expr``, with a sparkline."""
    return (
        panel(stat.Panel(), title, description, [query(expr, title)], "none", 4, 7)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def info_table(
    title: str,
    description: str,
    expr: str,
    columns: Sequence[str],
    w: int,
    value: str | None = None,
) -> table.Panel:
    """An instant query as a table of the labels ``columns``, in this order, then the value as
    column ``value`` when given; other labels (job, __name__, insane_pid...) are left out."""
    names = [*columns, "Value"] if value else list(columns)
    keep = dashboard.DataTransformerConfig(
        id_val="filterFieldsByName", options={"include": {"names": names}}
    )
    organize = dashboard.DataTransformerConfig(
        id_val="organize",
        options={
            "indexByName": {name: i for i, name in enumerate(names)},
            "renameByName": {"Value": value} if value else {},
        },
    )
    return (
        panel(table.Panel(), title, description, [instant(expr)], "short", w, 7)
        .with_transformation(keep)
        .with_transformation(organize)
    )


# --- rows -------------------------------------------------------------------------------------


def overview_panels() -> list[PanelBuilder]:
    yes_no = dashboard.ValueMap(
        options={
            "0": dashboard.ValueMappingResult(text="no", color="red", index=0),
            "1": dashboard.ValueMappingResult(text="yes", color="green", index=1),
        }
    )
    color_text = dashboard.DynamicConfigValue("custom.cellOptions", {"type": "color-text"})
    fallbacks = f"increase(insane_policy_fallbacks_total{{{INSTANCE}}}[$__range])"
    return [
        single_stat(
            "Peers alive",
            "Peers currently alive, as seen by the sessions of the selected processes.",
            f"sum(insane_peers_alive{{{INSTANCE}}})",
        ),
        single_stat(
            "Sessions",
            "Sessions open in the selected processes.",
            f"sum(insane_sessions{{{INSTANCE}}})",
        ),
        info_table(
            "Transports available",
            "Whether each process's host can use each transport (insane doctor says why not).",
            f"insane_transport_available{{{INSTANCE}}}",
            ["instance", "transport"],
            8,
            value="available",
        )
        .mappings([yes_no])
        .override_by_name("available", [color_text]),
        info_table(
            "Sessions",
            "The sessions open in each process: the name each was given (connect(name=...), "
            "nats-py's name=) and its peer id. The Service variable picks processes by it.",
            f"insane_session_info{{{INSTANCE}}}",
            ["name", "id", "instance"],
            8,
        ),
        info_table(
            "Build",
            "The INSANE version, Python version and use of the native speedups of each process.",
            f"insane_build_info{{{INSTANCE}}}",
            ["instance", "version", "python", "speedups"],
            8,
        ),
        info_table(
            "Routes",
            "The transport each channel pattern's messages take to each peer, per process.",
            f"insane_route_info{{{INSTANCE}}}",
            ["channel", "peer", "transport", "instance"],
            12,
        ),
        info_table(
            "Policy fallbacks",
            "Routes that fell back from the transport their QoS wanted, over the time range.",
            f"sum by (channel, wanted, got, reason) ({fallbacks})",
            ["channel", "wanted", "got", "reason"],
            12,
            value="fallbacks",
        ).decimals(0),
    ]


def transport_panels() -> list[PanelBuilder]:
    batch_size = [
        query(
            f"{sum_rate('transport', f'insane_datagrams_{side}_total')}\n"
            f"  / {sum_rate('transport', f'insane_batches_{side}_total')}",
            f"{{{{transport}}}} mean batch {side}",
        )
        for side in SIDES
    ]
    right_axis = [
        dashboard.DynamicConfigValue("unit", "short"),
        dashboard.DynamicConfigValue("custom.axisPlacement", "right"),
        dashboard.DynamicConfigValue("custom.axisLabel", "datagrams per batch"),
    ]
    nacks = sum_rate("transport, direction", "insane_nacks_total")
    by_peer = sum_rate("le, transport, peer", "insane_peer_rtt_seconds_bucket")
    rtt = [
        query(f"histogram_quantile({q}, {by_peer})", f"p{p} {{{{peer}}}}")
        for q, p in (("0.5", 50), ("0.99", 99))
    ]
    buckets = query(sum_rate("le", "insane_peer_rtt_seconds_bucket"), "{{le}}")
    colors = (
        heatmap.HeatmapColorOptions()
        .mode(HeatmapColorMode.SCHEME)
        .scheme("Oranges")
        .scale(HeatmapColorScale.EXPONENTIAL)
        .exponent(0.5)
        .steps(64)
    )
    return [
        graph(
            "Messages/s",
            "Messages handed to and received from this transport per second.",
            sent_received("transport", "messages"),
            "mps",
        ),
        graph(
            "Bytes/s",
            "Payload bytes of the messages sent and received on this transport per second.",
            sent_received("transport", "bytes"),
            "Bps",
        ),
        graph(
            "Messages/s by channel",
            "Messages sent and received on this transport per second, per channel pattern.",
            sent_received("channel", "messages", CHANNEL),
            "mps",
        ),
        graph(
            "Datagrams/s and mean batch size",
            "Datagrams sent and received per second, and how many datagrams one transport call "
            "carried on average (right axis).",
            [*sent_received("transport", "datagrams"), *batch_size],
            "pps",
        ).override_by_regexp(".* mean batch .*", right_axis),
        graph(
            "Drops by reason",
            "Datagrams, frames or messages dropped per second, by reason.",
            [query(sum_rate("transport, reason", "insane_dropped_total"), "{{reason}}")],
            "pps",
        ),
        graph(
            "Retransmissions / NACKs / duplicates",
            "Reliable-stream datagrams sent again after a NACK, NACK frames sent and received, "
            "and duplicate datagrams dropped, per second.",
            [
                query(sum_rate("transport", "insane_retransmissions_total"), "retransmissions"),
                query(nacks, "NACKs {{direction}}"),
                query(sum_rate("transport", "insane_duplicates_total"), "duplicates"),
            ],
            "pps",
        ),
        graph(
            "Gaps",
            "Missing reliable-stream datagrams per second, recovered or unrecoverable.",
            [query(sum_rate("transport, result", "insane_gaps_total"), "{{result}}")],
            "pps",
        ),
        graph(
            "Window stalls",
            "How often per second a publisher waited for a receiver's full flow-control window.",
            [query(sum_rate("transport", "insane_window_stalls_total"), "stalls")],
            "eps",
        ),
        graph(
            "Heartbeat RTT p50 / p99",
            "Median and 99th percentile heartbeat round-trip time to each peer.",
            rtt,
            "s",
        ),
        panel(
            heatmap.Panel(),
            "Heartbeat RTT distribution",
            "Heartbeat round trips per second in each RTT bucket, all peers together.",
            [buckets.format(PromQueryFormat.HEATMAP)],
            "short",
            12,
            8,
        )
        .calculate(False)
        .rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.LE))
        .y_axis(heatmap.YAxisConfig().unit("s"))
        .color(colors),
    ]


def process_panels() -> list[PanelBuilder]:
    def per_instance(title: str, description: str, expr: str, unit: str) -> timeseries.Panel:
        return graph(title, description, [query(expr, "{{instance}}")], unit, 8)

    return [
        per_instance(
            "Resident memory",
            "Resident memory of each process.",
            f"process_resident_memory_bytes{{{INSTANCE}}}",
            "bytes",
        ),
        per_instance(
            "CPU",
            "CPU time each process used per second (100% is one core).",
            rate("process_cpu_seconds_total", INSTANCE),
            "percentunit",
        ),
        per_instance(
            "Open file descriptors",
            "File descriptors each process holds open.",
            f"process_open_fds{{{INSTANCE}}}",
            "short",
        ),
    ]


def add_row(
    board: db.Dashboard, row: db.Row, panels: Sequence[PanelBuilder], collapsed: bool = False
) -> None:
    """Add ``row`` and its ``panels``: nested in the row when collapsed, else after it."""
    if collapsed:
        for p in panels:
            row.with_panel(p)
        board.with_row(row)
        return
    board.with_row(row)
    for p in panels:
        board.with_panel(p)


def variable(name: str, label: str, values: str) -> db.QueryVariable:
    """A multi-value query variable including All (``.*``), which is selected by default."""
    return (
        db.QueryVariable(name)
        .label(label)
        .query(values)
        .datasource(DS)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dashboard.VariableOption(text=["All"], value=["$__all"]))
        .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard.VariableSort.ALPHABETICAL_ASC)
    )


def build() -> dict[str, Any]:
    """The dashboard model, as Grafana's JSON."""
    datasource = (
        db.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(dashboard.VariableOption(text=DATASOURCE_NAME, value=DATASOURCE_UID))
    )
    board = (
        db.Dashboard("INSANE")
        .uid("insane-overview")
        .description("INSANE publish/subscribe: peers, routes, traffic per transport, processes.")
        .tags(["insane", "pubsub", "prometheus"])
        .refresh("5s")
        .time("now-15m", "now")
        .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
        .variables(
            [
                datasource,
                variable("service", "Service", "label_values(insane_session_info, name)"),
                variable(
                    "instance",
                    "Instance",
                    'label_values(insane_session_info{name=~"$service"}, instance)',
                ),
                variable(
                    "transport",
                    "Transport",
                    f"label_values(insane_datagrams_sent_total{{{INSTANCE}}}, transport)",
                ),
                variable(
                    "channel",
                    "Channel",
                    f"label_values(insane_messages_sent_total{{{INSTANCE}}}, channel)",
                ),
            ]
        )
    )
    add_row(board, db.Row("Overview"), overview_panels())
    add_row(board, db.Row("Transport $transport").repeat("transport"), transport_panels())
    add_row(board, db.Row("Process"), process_panels(), collapsed=True)
    built = board.build()
    # The SDK leaves every panel id at 0; Grafana wants them unique.
    ids = itertools.count(1)
    for p in built.panels or []:
        p.id_val = next(ids)
        for nested in p.panels if isinstance(p, dashboard.RowPanel) else []:
            nested.id_val = next(ids)
    model: dict[str, Any] = json.loads(json.dumps(built, cls=JSONEncoder))
    return model


def render() -> str:
    """The dashboard JSON as checked in: sorted keys, two-space indent, final newline."""
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def all_panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of ``model``: rows, and the panels nested in collapsed rows, included."""
    for p in model.get("panels", []):
        yield p
        yield from p.get("panels", [])


def queries(model: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target, with the template variables replaced so that the
    expression runs on a raw Prometheus: the intervals by 1m, ``$__range`` by 5m and the
    dashboard's variables by ``.*`` (selectors use ``=~``). An unknown variable: ValueError."""
    names = {v["name"] for v in model.get("templating", {}).get("list", [])}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        if name in names:
            return ".*"
        raise ValueError(f"unknown variable ${name} in {match.string!r}")

    return [
        (p.get("title", ""), VARIABLE.sub(substitute, t["expr"]))
        for p in all_panels(model)
        for t in p.get("targets", [])
        if "expr" in t
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Write {OUTPUT.name}, the INSANE dashboard.")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if not args.check:
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        OUTPUT.write_text(text)
        print(f"wrote {OUTPUT}")
    elif not OUTPUT.is_file() or OUTPUT.read_text() != text:
        print(f"{OUTPUT} is stale: run python grafana/dashboard.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
