"""Serving this process's metrics over HTTP, one port per process, and telling Prometheus.

Several processes on one host share one ``metrics:`` section: each takes the first free port
of ``port .. port + port_span - 1`` (9464-9479 by default), so one Prometheus scrape config
covers them all. With ``targets_dir`` set, each process also writes a Prometheus file-based
service discovery file there (``insane-<pid>.json``), labelled with the names of the process's
open sessions (``service``) and its pid (``insane_pid``), so that Prometheus and Grafana tell
services apart by name; it is removed at exit and on SIGTERM (`insane.ops.process`), and files of
processes that are gone (killed) are pruned by the next process that writes one.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

from prometheus_client import start_http_server

from insane.ops.process import at_exit, process_alive

log = logging.getLogger("insane.ops.metrics")


class MetricsPortError(OSError):
    """No port of the configured range was free."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


_servers: dict[tuple[str, int], Any] = {}  # (bind, port) -> the running server
#: This process's target files -> (address, the names of the sessions that announced it).
_targets: dict[Path, tuple[str, list[str]]] = {}
#: Reentrant: the SIGTERM cleanup (insane.ops.process) may run while the main thread holds it.
_lock = threading.RLock()


def serve(bind: str, port: int, span: int = 1) -> int:
    """Serve the metrics on ``bind`` at the first free port from ``port``; return the port.

    Sessions of one process share a server when one already runs on ``bind`` within the range
    (``port`` 0: any port). Every session of a process exposes the same, process-wide table."""
    with _lock:
        last = port if port == 0 else min(port + max(span, 1) - 1, 65535)
        for b, p in _servers:
            if b == bind and (port == 0 or port <= p <= last):
                return p
        for candidate in range(port, last + 1):
            try:
                server, _thread = start_http_server(candidate, addr=bind)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise
            bound = int(server.server_address[1])
            _servers[(bind, bound)] = server
            log.info("metrics on http://%s:%d/metrics", bind, bound)
            return bound
        raise MetricsPortError(
            errno.EADDRINUSE,
            f"metrics.port: every port from {port} to {last} on {bind} is in use "
            "(raise metrics.port_span, or pick another metrics.port)",
        )


def target_address(bind: str, port: int) -> str:
    """How Prometheus reaches ``bind:port``: a wildcard bind is reached by the host's name."""
    host = socket.getfqdn() if bind in ("0.0.0.0", "::") else bind
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def write_target(directory: str, bind: str, port: int, service: str) -> Path:
    """Add session ``service`` to this process's file_sd target file in ``directory`` (written
    atomically; a file per process), and prune the files of dead processes."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _prune(d)
    path = d / f"insane-{os.getpid()}.json"
    with _lock:
        address, names = _targets.get(path, (target_address(bind, port), []))
        names.append(service)
        _targets[path] = (address, names)
        _write(path, address, names)
    at_exit(_remove_targets)
    return path


def withdraw_target(directory: str, service: str) -> None:
    """Session ``service`` closed: take its name off the target file (the process still
    serves its metrics, so the file stays while the process lives)."""
    path = Path(directory) / f"insane-{os.getpid()}.json"
    with _lock:
        entry = _targets.get(path)
        if entry is None or service not in entry[1]:
            return
        entry[1].remove(service)
        _write(path, *entry)


def _write(path: Path, address: str, names: list[str]) -> None:
    labels = {"insane_pid": str(os.getpid())}
    if names:
        labels["service"] = ",".join(sorted(set(names)))
    body = json.dumps([{"targets": [address], "labels": labels}])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(body + "\n")
    tmp.replace(path)


def _prune(d: Path) -> None:
    for f in d.glob("insane-*.json"):
        try:
            pid = int(f.stem.removeprefix("insane-"))
        except ValueError:
            continue
        if pid != os.getpid() and not process_alive(pid):
            f.unlink(missing_ok=True)


def _remove_targets() -> None:
    with _lock:
        for path in list(_targets):
            if path.stem == f"insane-{os.getpid()}":  # not a forked child's parent's file
                path.unlink(missing_ok=True)
        _targets.clear()
