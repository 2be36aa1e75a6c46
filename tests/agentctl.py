"""Drive tests/agent.py peer processes from a test: start them (here or inside a network
namespace), send commands, read replies, and always kill them afterwards."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

AGENT = str(Path(__file__).with_name("agent.py"))
REPO = str(Path(__file__).resolve().parent.parent)


class AgentProcess:
    def __init__(self, cmd_prefix: Sequence[str] = (), env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, "PYTHONPATH": REPO, **(env or {})}
        self.proc = subprocess.Popen(
            [*cmd_prefix, sys.executable, AGENT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            start_new_session=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()
        first = self._read(20.0)
        assert first.get("ready"), first

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def _read(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"agent did not answer in {timeout}s; stderr:\n{self.stderr}"
            ) from None
        if line is None:
            raise AssertionError(f"agent exited ({self.proc.poll()}); stderr:\n{self.stderr}")
        result: dict[str, Any] = json.loads(line)
        return result

    @property
    def stderr(self) -> str:
        return "".join(self._stderr[-60:])

    def call(self, op: str, timeout: float = 30.0, **kw: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def ok(self, op: str, timeout: float = 30.0, **kw: Any) -> dict[str, Any]:
        reply = self.call(op, timeout=timeout, **kw)
        assert reply["ok"], f"{op} failed: {reply}\nstderr:\n{self.stderr}"
        return reply

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("close", timeout=5)
            except (AssertionError, OSError):
                pass
        self.kill()
