"""``insane monitor``: a local Prometheus that finds every INSANE process, for Grafana.

It runs Debian's ``prometheus`` (``apt-get install prometheus``) with the shipped configuration
(``prometheus.yml`` beside this module) pointed at the YAML's ``metrics.targets_dir``, where
every process writes its file_sd target file, waits until it is ready, prints where it is and
how to load the Grafana dashboard, and runs until interrupted (Ctrl-C or SIGTERM stop it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from insane.cli.failures import CommandError

#: Where Grafana's provisioning files lie in a source checkout (grafana/README.md).
_PROVISIONING = Path(__file__).resolve().parents[2] / "grafana" / "provisioning"


def shipped_config() -> dict[str, Any]:
    """The shipped Prometheus configuration, as a mapping."""
    text = resources.files("insane.cli").joinpath("prometheus.yml").read_text()
    config: dict[str, Any] = yaml.safe_load(text)
    return config


def prometheus_config(targets_dir: str, interval: str | None = None) -> dict[str, Any]:
    """The shipped configuration, reading the target files in ``targets_dir``."""
    config = shipped_config()
    [job] = config["scrape_configs"]
    [sd] = job["file_sd_configs"]
    sd["files"] = [str(Path(targets_dir) / "insane-*.json")]
    if interval is not None:
        config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = interval
        sd["refresh_interval"] = interval
    return config


def _data_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state) / "insane" / "prometheus"


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _last_error(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "level=error" in ln or "err=" in ln]
    return (errors or lines or ["(no output)"])[-1].strip()


def cmd_monitor(args: argparse.Namespace) -> int:
    from insane.qos import load_config

    config = load_config(args.config)
    m = config.metrics
    if m.port is None:
        raise CommandError(
            f"{config.source}: metrics.port: expected a port, so that the processes serve "
            "their metrics (insane monitor scrapes them)",
            2,
        )
    if m.targets_dir is None:
        raise CommandError(
            f"{config.source}: metrics.targets_dir: expected a directory where each process "
            "writes its target file (insane monitor's Prometheus reads them there)",
            2,
        )
    exe = shutil.which("prometheus")
    if exe is None:
        raise CommandError(
            "monitor: prometheus is not installed (Debian: apt-get install prometheus)"
        )
    targets = config.file_path(m.targets_dir)
    os.makedirs(targets, exist_ok=True)
    data = Path(args.data) if args.data else _data_dir()
    data.mkdir(parents=True, exist_ok=True)
    config_file = data / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(prometheus_config(targets, args.interval)))
    url = f"http://{args.listen}"
    log_path = data / "prometheus.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                exe,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={data / 'data'}",
                f"--web.listen-address={args.listen}",
                f"--storage.tsdb.retention.time={args.retention}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    stop: Callable[[int, Any], None] = lambda _s, _f: proc.terminate()  # noqa: E731
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        deadline = time.monotonic() + 30
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise CommandError(f"monitor: prometheus did not start: {_last_error(log_path)}")
            time.sleep(0.2)
        print(f"Prometheus on {url}, scraping the INSANE processes whose target files are in "
              f"{targets} (its data and log in {data})", flush=True)
        provisioning = _PROVISIONING if _PROVISIONING.is_dir() else "grafana/provisioning"
        print(
            "Grafana: copy or mount "
            f"{provisioning} as /etc/grafana/provisioning (its datasource expects this "
            "Prometheus at http://localhost:9090), restart Grafana, and open the dashboard "
            "INSANE in the folder INSANE. Ctrl-C stops Prometheus.",
            flush=True,
        )
        while proc.poll() is None:
            try:
                proc.wait(1)
            except subprocess.TimeoutExpired:
                continue
        if proc.returncode not in (0, -signal.SIGTERM):
            raise CommandError(f"monitor: prometheus exited: {_last_error(log_path)}")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def add_command(sub: Any, config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``monitor`` to the ``insane`` parser's subcommands."""
    p = sub.add_parser(
        "monitor",
        help="run a local Prometheus that finds every INSANE process (for the Grafana dashboard)",
    )
    config_arg(p)
    p.add_argument(
        "--listen", default="127.0.0.1:9090", metavar="HOST:PORT",
        help="Prometheus's address (default 127.0.0.1:9090, where the Grafana datasource looks)",
    )  # fmt: skip
    p.add_argument("--data", help="its data directory (default ~/.local/state/insane/prometheus)")
    p.add_argument("--interval", help="scrape interval, for instance 1s (default: 5s, shipped)")
    p.add_argument("--retention", default="15d", help="how long to keep samples (default 15d)")
    p.set_defaults(func=cmd_monitor)
