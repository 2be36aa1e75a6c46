"""The `insane` command as a user runs it."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "insane.cli"]
REPO = str(Path(__file__).resolve().parent.parent)


def run(
    *args: str, env: dict[str, str] | None = None, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": REPO, **(env or {})},
        cwd=cwd,
    )


def test_doctor_json_lists_all_four_transports() -> None:
    r = run("doctor", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert set(report["transports"]) == {"udp", "xdp", "dpdk", "rdma"}
    assert report["transports"]["udp"]["available"] is True
    for name in ("xdp", "dpdk", "rdma"):
        entry = report["transports"][name]
        assert entry["available"] is False
        assert entry["reason"]


def test_qos_explain_names_pattern_and_fallback(tmp_path: Path) -> None:
    (tmp_path / "insane.yaml").write_text('channels:\n  "orders.>": {qos: [fast, reliable]}\n')
    r = run("qos", "explain", "orders.eu.new", cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "orders.>" in r.stdout
    assert "udp" in r.stdout
    assert "fallback" in r.stdout.lower() or "skipped" in r.stdout.lower()


def test_bad_config_fails_fast_with_file_key_and_expected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("transports:\n  udp:\n    port: lots\n")
    r = run("doctor", env={"INSANE_CONFIG": str(bad)})
    assert r.returncode == 2
    assert "bad.yaml" in r.stderr and "transports.udp.port" in r.stderr and "expected" in r.stderr


def test_pub_and_sub_between_processes(tmp_path: Path) -> None:
    cfg = tmp_path / "insane.yaml"
    cfg.write_text(f"domain: {random.randrange(1, 2**32)}\n")
    env = {**os.environ, "PYTHONPATH": REPO, "INSANE_CONFIG": str(cfg)}
    sub = subprocess.Popen(
        [*CLI, "sub", "greet.*", "-n", "3"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert sub.stdout is not None
        assert "listening" in sub.stdout.readline()
        pub = run("pub", "greet.world", "hello {i}", "-n", "3", env={"INSANE_CONFIG": str(cfg)})
        assert pub.returncode == 0, pub.stderr
        out, _ = sub.communicate(timeout=20)
    finally:
        sub.kill()
    lines = out.strip().splitlines()
    assert lines == [f"[#{i + 1}] greet.world: hello {i}" for i in range(3)]


@pytest.mark.parametrize("args", [["pub", "a.*", "x"], ["qos", "explain", "bad..subject"]])
def test_invalid_subjects_are_clear_errors(args: list[str]) -> None:
    r = run(*args)
    assert r.returncode == 2
    assert "invalid subject" in r.stderr


def test_sub_and_pub_serve_metrics_and_top_finds_them(tmp_path: Path) -> None:
    """With metrics in the YAML, `insane sub` and `insane pub` each serve their own port of
    the range, and `insane top -c` finds both and shows the traffic between them."""
    base = random.randrange(20000, 60000)
    cfg = tmp_path / "insane.yaml"
    cfg.write_text(
        f"domain: {random.randrange(1, 2**32)}\n"
        f"metrics: {{port: {base}, port_span: 8}}\n"
    )
    env = {**os.environ, "PYTHONPATH": REPO, "INSANE_CONFIG": str(cfg)}
    sub = subprocess.Popen(
        [*CLI, "sub", "tick", "--raw"], stdout=subprocess.PIPE, text=True, env=env
    )
    pub = None
    try:
        assert sub.stdout is not None
        assert "listening" in sub.stdout.readline()
        pub = subprocess.Popen(
            [*CLI, "pub", "tick", "t{i}", "-n", "100000", "--interval", "0.002",
             "--wait-for-peers", "5", "--name", "ticker"],
            stdout=subprocess.DEVNULL,
            env=env,
        )  # fmt: skip
        assert sub.stdout.readline().strip() == "t0"
        top = run("top", "--once", "-i", "1", env={"INSANE_CONFIG": str(cfg)})
    finally:
        for p in (pub, sub):
            if p is not None:
                p.kill()
                p.wait()
    assert top.returncode == 0, top.stderr
    endpoints = [line.split()[0] for line in top.stdout.splitlines() if "/metrics" in line]
    assert len(endpoints) == 2, top.stdout
    assert all(base <= int(e.rsplit(":", 1)[1].split("/")[0]) < base + 8 for e in endpoints)
    assert "ticker-" in top.stdout, top.stdout  # the subscriber's peer table names the pub
    rows = [line.split() for line in top.stdout.splitlines() if line.startswith("udp ")]
    assert any(float(r[1]) > 20 for r in rows) and any(float(r[2]) > 20 for r in rows), rows
