"""What security costs: throughput and round-trip time with ``security.mode`` none,
authenticate and encrypt, in one run.

    .venv/bin/python -m benchmarks.security                 # 64 B, 3 repetitions
    .venv/bin/python -m benchmarks.security --size 1024 --repeat 5

The tutorial's ping/pong (request/reply, ``consumption: low``, ping and pong on one CPU) and
``benchmarks/nats_tput.py`` (one publisher, one subscriber, a CPU each; every message must
arrive, in order) run under ``compat.nats`` with a private domain and a fresh 32-byte key.
Medians of ``--repeat`` runs; ratios against ``none``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import REPO_ROOT, usable_cpus

MODES = ("none", "authenticate", "encrypt")
PING = re.compile(r"p50 ([\d.]+) us, p99 ([\d.]+) us")
TUTORIAL = REPO_ROOT / "examples" / "tutorial" / "insane"


def run(argv: list[str], env: dict[str, str], cpu: int, timeout: float = 300) -> str:
    out = subprocess.run(
        [sys.executable, *argv],
        cwd=REPO_ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        check=True,
    )
    return out.stdout


def measure(mode: str, key: Path, tmp: Path, size: int, count: int, tput: int) -> dict[str, Any]:
    cfg: dict[str, Any] = {"domain": random.randrange(1, 2**31)}
    if mode != "none":
        cfg["security"] = {"mode": mode, "key_file": str(key)}
    path = tmp / f"{mode}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), INSANE_CONFIG=str(path))
    cpus = usable_cpus()
    pong = subprocess.Popen(
        [sys.executable, str(TUTORIAL / "pong.py")],
        cwd=REPO_ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpus[-1]}),
    )
    try:
        assert pong.stdout is not None
        pong.stdout.readline()
        out = run(
            [str(TUTORIAL / "ping.py"), "--size", str(size), "--count", str(count)], env, cpus[-1]
        )
    finally:
        pong.terminate()
        pong.wait(10)
    m = PING.search(out)
    assert m is not None, out
    sub = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.nats_tput",
            "--impl",
            "insane",
            "sub",
            "--count",
            str(tput),
        ],
        cwd=REPO_ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpus[0]}),
    )
    assert sub.stdout is not None
    sub.stdout.readline()
    run(
        [
            "-m",
            "benchmarks.nats_tput",
            "--impl",
            "insane",
            "pub",
            "--count",
            str(tput),
            "--size",
            str(size),
        ],
        env,
        cpus[-1],
    )
    got = json.loads(sub.communicate(timeout=120)[0].strip().splitlines()[-1])
    ok = got["received"] == tput and got["in_order"]
    return {"p50_us": float(m[1]), "p99_us": float(m[2]), "msg_per_s": got["msg_per_s"], "ok": ok}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.security", description=__doc__)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--count", type=int, default=5000, help="round trips per run")
    p.add_argument("--tput-count", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "key"
        key.write_bytes(os.urandom(32))
        for rep in range(args.repeat):
            for mode in MODES:
                r = measure(mode, key, Path(tmp), args.size, args.count, args.tput_count)
                results[mode].append(r)
                print(
                    f"  run {rep + 1}: {mode:12} p50 {r['p50_us']:7.1f} us  "
                    f"{r['msg_per_s']:>10,.0f} msg/s{'' if r['ok'] else '  LOST MESSAGES'}",
                    file=sys.stderr,
                    flush=True,
                )
    med = {
        m: {k: statistics.median(r[k] for r in rs) for k in ("p50_us", "p99_us", "msg_per_s")}
        for m, rs in results.items()
    }
    base = med["none"]
    print(f"\n== {args.size} B, medians of {args.repeat} runs ==")
    print(
        f"{'mode':13} {'RTT p50 us':>10} {'RTT p99 us':>10} {'msg/s':>10} {'RTT':>7} {'msg/s':>7}"
    )
    for m in MODES:
        r = med[m]
        print(
            f"{m:13} {r['p50_us']:10.1f} {r['p99_us']:10.1f} {r['msg_per_s']:10,.0f} "
            f"{r['p50_us'] / base['p50_us']:6.2f}x {r['msg_per_s'] / base['msg_per_s']:6.2f}x"
        )
    return 0 if all(r["ok"] for rs in results.values() for r in rs) else 1


if __name__ == "__main__":
    sys.exit(main())
