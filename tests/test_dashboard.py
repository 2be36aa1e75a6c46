"""The Grafana dashboard (grafana/dashboard.py) and its provisioning files are consistent and
only query metrics that INSANE exposes."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import grafana_foundation_sdk  # noqa: F401  (a test dependency: fail loudly when missing)
import pytest
import yaml

GRAFANA = Path(__file__).resolve().parent.parent / "grafana"
PROVISIONING = GRAFANA / "provisioning"

#: The exposed names of insane/ops/metrics.py's catalogue, and prometheus_client's process_*.
METRICS = {
    "insane_messages_sent_total",
    "insane_messages_received_total",
    "insane_bytes_sent_total",
    "insane_bytes_received_total",
    "insane_messages_delivered_total",
    "insane_datagrams_sent_total",
    "insane_datagrams_received_total",
    "insane_batches_sent_total",
    "insane_batches_received_total",
    "insane_retransmissions_total",
    "insane_nacks_total",
    "insane_duplicates_total",
    "insane_gaps_total",
    "insane_window_stalls_total",
    "insane_dropped_total",
    "insane_policy_fallbacks_total",
    "insane_peers_alive",
    "insane_sessions",
    "insane_session_info",
    "insane_route_info",
    "insane_transport_available",
    "insane_build_info",
    "insane_peer_rtt_seconds_bucket",
    "insane_peer_rtt_seconds_sum",
    "insane_peer_rtt_seconds_count",
    "process_virtual_memory_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
}


def load_dashboard() -> ModuleType:
    spec = importlib.util.spec_from_file_location("insane_dashboard", GRAFANA / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dashboard = load_dashboard()
MODEL: dict[str, Any] = dashboard.build()


def panels() -> list[dict[str, Any]]:
    """Every panel that is not a row, those nested in collapsed rows included."""
    return [p for p in dashboard.all_panels(MODEL) if p["type"] != "row"]


def variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in MODEL["templating"]["list"]}


def test_checked_in_json_is_what_the_generator_writes() -> None:
    """A change to dashboard.py without the regenerated JSON fails here."""
    assert dashboard.OUTPUT == PROVISIONING / "dashboards" / "insane" / "insane.json"
    assert dashboard.OUTPUT.read_text() == dashboard.render(), (
        "run: .venv/bin/python grafana/dashboard.py"
    )
    assert dashboard.render() == dashboard.render()
    assert dashboard.main(["--check"]) == 0


def test_check_fails_on_a_missing_or_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--check exits 1 with a message until the file is written, and again once it differs."""
    out = tmp_path / "dashboards" / "insane" / "insane.json"
    monkeypatch.setattr(dashboard, "OUTPUT", out)
    assert dashboard.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert dashboard.main([]) == 0
    assert dashboard.main(["--check"]) == 0
    out.write_text(out.read_text().replace('"INSANE"', '"INSANE (edited)"'))
    assert dashboard.main(["--check"]) == 1


def test_dashboard_identity_and_time() -> None:
    """The uid that links point at, a 5 s refresh over the last 15 minutes."""
    assert MODEL["uid"] == "insane-overview"
    assert MODEL["title"] == "INSANE"
    assert MODEL["tags"]
    assert MODEL["refresh"] == "5s"
    assert MODEL["time"] == {"from": "now-15m", "to": "now"}


def test_every_panel_queries_the_datasource_variable() -> None:
    """Every panel, rows' panels included, has a described query on ${datasource}."""
    found = panels()
    assert found
    ids = [p["id"] for p in dashboard.all_panels(MODEL)]
    assert len(ids) == len(set(ids)) and 0 not in ids
    for p in found:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert any(t.get("expr", "").strip() for t in p.get("targets", [])), p["title"]
        assert p.get("description", "").endswith("."), p["title"]
        assert [t["refId"] for t in p["targets"]] == list("ABCD")[: len(p["targets"])]
    nested = [p for row in MODEL["panels"] if row["type"] == "row" for p in row["panels"]]
    assert nested, "the collapsed process row nests its panels"


def test_layout_rows() -> None:
    """Overview, a row repeated per transport whose panels filter on it, then process."""
    rows = [p for p in MODEL["panels"] if p["type"] == "row"]
    assert [r["title"] for r in rows] == ["Overview", "Transport $transport", "Process"]
    assert rows[1]["repeat"] == "transport"
    top = MODEL["panels"]
    start = top.index(rows[1]) + 1
    transport_panels = top[start : top.index(rows[2])]
    assert len(transport_panels) == 10
    for p in transport_panels:
        for t in p["targets"]:
            assert 'transport=~"$transport"' in t["expr"], p["title"]
    for p in panels():
        for t in p["targets"]:
            assert 'instance=~"$instance"' in t["expr"], p["title"]
    titles = {p["title"] for p in panels()}
    assert {
        "Peers alive",
        "Sessions",
        "Transports available",
        "Build",
        "Routes",
        "Policy fallbacks",
        "Messages/s",
        "Bytes/s",
        "Messages/s by channel",
        "Datagrams/s and mean batch size",
        "Drops by reason",
        "Retransmissions / NACKs / duplicates",
        "Gaps",
        "Window stalls",
        "Heartbeat RTT p50 / p99",
        "Heartbeat RTT distribution",
        "Resident memory",
        "CPU",
        "Open file descriptors",
    } <= titles


def test_variables() -> None:
    """A Prometheus datasource variable and multi-value service/instance/transport/channel with
    All; services by the names their sessions were given, instances of the services picked."""
    found = variables()
    assert list(found) == ["datasource", "service", "instance", "transport", "channel"]
    assert found["datasource"]["type"] == "datasource"
    assert found["datasource"]["query"] == "prometheus"
    labels = {"service": "name", "instance": "instance", "transport": "transport"}
    for name in ("service", "instance", "transport", "channel"):
        v = found[name]
        label = labels.get(name, name)
        assert v["type"] == "query" and v["multi"] and v["includeAll"], name
        assert v["allValue"] == ".*"
        assert v["datasource"]["uid"] == "${datasource}"
        assert re.fullmatch(rf"label_values\(\w+(\{{.*\}})?, {label}\)", v["query"]), v["query"]
    assert found["service"]["query"] == "label_values(insane_session_info, name)"
    assert 'name=~"$service"' in found["instance"]["query"]


def test_queries_leave_no_template_variables() -> None:
    """queries() gives one expression per target, runnable on a raw Prometheus."""
    found = dashboard.queries(MODEL)
    targets = [t for p in panels() for t in p["targets"]]
    assert len(found) == len(targets)
    for title, expr in found:
        assert title and expr
        assert "$" not in expr, (title, expr)
    assert any("[1m]" in expr for _, expr in found)
    assert any("[5m]" in expr for _, expr in found)


def test_queries_substitution_forms() -> None:
    """$x, ${x} and ${x:regex} become .*, built-in intervals a duration; unknown names raise."""
    model = {
        "templating": {"list": [{"name": "transport"}, {"name": "channel"}]},
        "panels": [
            {
                "type": "row",
                "title": "r",
                "panels": [
                    {
                        "title": "p",
                        "targets": [
                            {"expr": 'rate(m{transport=~"${transport:regex}"}[$__interval])'},
                            {"expr": 'increase(m{a=~"$channel",b=~"${channel}"}[$__range])'},
                            {"expr": "rate(m[$__rate_interval])"},
                        ],
                    }
                ],
            }
        ],
    }
    assert dashboard.queries(model) == [
        ("p", 'rate(m{transport=~".*"}[1m])'),
        ("p", 'increase(m{a=~".*",b=~".*"}[5m])'),
        ("p", "rate(m[1m])"),
    ]
    model["panels"][0]["panels"][0]["targets"] = [{"expr": "m{a=~\"$nope\"}"}]
    with pytest.raises(ValueError, match="nope"):
        dashboard.queries(model)


def test_only_exposed_metrics_are_queried() -> None:
    """Every metric name in the panels' and variables' PromQL is one INSANE exposes."""
    exprs = [expr for _, expr in dashboard.queries(MODEL)]
    exprs += [v["query"] for v in variables().values() if v["type"] == "query"]
    used: set[str] = set()
    for expr in exprs:
        selected = set(re.findall(r"([A-Za-z_:][\w:]*)\{", expr))
        named = set(re.findall(r"\b(?:insane|process)_\w+", expr))
        assert selected | named, expr
        used |= selected | named
    assert used <= METRICS, used - METRICS
    assert {"insane_peer_rtt_seconds_bucket", "process_cpu_seconds_total"} <= used


def provisioned(kind: str, key: str) -> dict[str, Any]:
    """The one entry under ``key`` of provisioning/<kind>/insane.yaml, whose apiVersion is 1."""
    loaded = yaml.safe_load((PROVISIONING / kind / "insane.yaml").read_text())
    assert loaded["apiVersion"] == 1
    [entry] = loaded[key]
    return dict(entry)


def test_provisioning_files() -> None:
    """The datasource and dashboard provider load as they are from /etc/grafana/provisioning."""
    datasource = provisioned("datasources", "datasources")
    assert datasource.items() >= {
        "name": "INSANE Prometheus",
        "type": "prometheus",
        "url": "http://localhost:9090",
        "access": "proxy",
        "isDefault": False,  # an existing Grafana keeps its default datasource
    }.items()
    provider = provisioned("dashboards", "providers")
    assert provider.items() >= {
        "name": "insane",
        "type": "file",
        "folder": "INSANE",
        "allowUiUpdates": False,
    }.items()
    path = provider["options"]["path"]
    assert path == "/etc/grafana/provisioning/dashboards/insane"
    assert path.endswith("dashboards/insane")
    relative = Path(path).relative_to("/etc/grafana/provisioning")
    assert dashboard.OUTPUT.parent == PROVISIONING / relative
    assert [f.name for f in dashboard.OUTPUT.parent.iterdir()] == ["insane.json"]


def test_datasource_variable_defaults_to_the_provisioned_datasource() -> None:
    """The datasource variable's default is the provisioned datasource, by uid."""
    datasource = provisioned("datasources", "datasources")
    current = variables()["datasource"]["current"]
    assert datasource["uid"] == current["value"] == dashboard.DATASOURCE_UID
    assert current["value"] == "insane-prometheus"
    assert current["text"] == datasource["name"]
