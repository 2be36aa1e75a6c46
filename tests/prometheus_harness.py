"""A private Prometheus for tests: Debian's ``prometheus`` on a free port of 127.0.0.1, with a
temporary database, stopped afterwards; started by ``insane monitor`` (the shipped
configuration, pointed at a YAML's targets_dir), or directly with given scrape configs.

    with Prometheus.monitor("insane.yaml", interval="1s") as prom:
        prom.query("up")            # -> the result list of /api/v1/query
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml


def binary(name: str) -> str | None:
    """``prometheus`` or ``promtool`` from PATH (Debian: /usr/bin), or None."""
    return shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    def __init__(self, scrape_configs: list[dict[str, Any]], interval: str = "1s") -> None:
        exe = binary("prometheus")
        assert exe is not None, "prometheus is not installed (Debian: prometheus)"
        self.dir = Path(tempfile.mkdtemp(prefix="insane-prom-"))
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": scrape_configs,
        }
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self._start(
            [
                exe,
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                "--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ]
        )

    @classmethod
    def monitor(cls, config: str, interval: str = "1s") -> Prometheus:
        """Prometheus as ``insane monitor -c CONFIG`` runs it (the shipped configuration)."""
        self = cls.__new__(cls)
        self.dir = Path(tempfile.mkdtemp(prefix="insane-monitor-"))
        cmd = [sys.executable, "-m", "insane.cli", "monitor", "-c", config]
        cmd += ["--listen", "127.0.0.1:{port}", "--data", str(self.dir), "--interval", interval]
        self._start(cmd)
        return self

    def _start(self, cmd: list[str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(self.dir / "harness.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [c.replace("{port}", str(self.port)) for c in cmd],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        self._wait_ready(30.0)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited:\n{self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready in {timeout}s:\n{self.log}")

    @property
    def log(self) -> str:
        self._log.flush()
        text = "".join(
            f.read_text(errors="replace") for f in (self.dir / "harness.log",
            self.dir / "prometheus.log") if f.exists()
        )  # fmt: skip
        return text[-4000:]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query; raises with Prometheus' own error for a bad expression."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise AssertionError(f"{promql}: {body.get('errorType')}: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Prometheus:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
