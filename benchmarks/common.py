"""Helpers shared by the benchmark programs and their peer processes.

Two sides use this module:

* the peers (``benchmarks/peers/*``), which announce readiness with :func:`announce_ready`,
  summarise round-trip times with :func:`rtt_summary` and print their result with
  :func:`emit_result`;
* the harness (``benchmarks/pingpong.py``), which builds the raw C baseline
  (:func:`build_raw`), starts peers as subprocesses (:class:`Peer`), collects
  :class:`Row` results and prints them side by side as ratios (:func:`print_tables`) or
  writes them as JSON (:func:`write_json`).

Peer protocol: a peer prints ``ready PORT`` on stdout once it can be talked to, and its result
as one JSON object on the last line of stdout.  Anything on stderr is kept for error reports.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RAW_SRC = BENCH_DIR / "raw" / "udp_pingpong.c"
RAW_BIN = BENCH_DIR / "raw" / "bin" / "udp_pingpong"

#: The loopback address every benchmark talks to (nothing leaves the host).
HOST = "127.0.0.1"

# Linux socket options that Python's socket module does not name.
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (``p`` in 0..100); 0.0 for no values.

    Nearest rank never interpolates, so p99 is always a latency that was really observed.
    The C baseline uses the same rule.
    """
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100.0 * len(ordered))))
    return float(ordered[rank - 1])


def rtt_summary(rtts_ns: Sequence[int], seconds: float) -> dict[str, float]:
    """p50/p90/p99/p99.9/max in microseconds and round trips per second, from per-message
    RTTs, plus how many round trips took over 1 ms (the tail, counted rather than ranked)."""
    ordered = sorted(rtts_ns)
    return {
        "p50_us": percentile(ordered, 50) / 1000.0,
        "p90_us": percentile(ordered, 90) / 1000.0,
        "p99_us": percentile(ordered, 99) / 1000.0,
        "p999_us": percentile(ordered, 99.9) / 1000.0,
        "max_us": (ordered[-1] if ordered else 0) / 1000.0,
        "over_1ms": sum(1 for t in ordered if t > 1_000_000),
        "msg_per_s": len(ordered) / seconds if seconds > 0 else 0.0,
        "seconds": seconds,
    }


def default_warmup(count: int) -> int:
    """Warm-up round trips excluded from the statistics: 10 % of ``count``, at most 1000."""
    return min(1000, count // 10)


# --------------------------------------------------------------------------- peer side


def announce_ready(port: int = 0) -> None:
    """Tell the harness that this peer can be talked to (and on which port)."""
    print(f"ready {port}", flush=True)


def emit_result(result: dict[str, Any]) -> None:
    """Print a peer's result as the one JSON line the harness reads."""
    print(json.dumps(result), flush=True)


def emit_blast_result(system: str, size: int, sent: int, t0: int, t1: int) -> None:
    """The blaster's result line: how many it sent, and how fast (``t0``/``t1`` in ns)."""
    seconds = (t1 - t0) / 1e9
    emit_result(
        {
            "system": system,
            "mode": "blast",
            "size": size,
            "sent": sent,
            "seconds": seconds,
            "send_msg_per_s": sent / seconds if seconds > 0 else 0.0,
            "start_ns": t0,
            "end_ns": t1,
        }
    )


def emit_sink_result(
    system: str, received: int, sent: int, first: int, last: int, why: str, **extra: Any
) -> int:
    """The sink's result line (``first``/``last``: ns of the first and last message); returns
    the peer's exit status: 0 when anything arrived."""
    seconds = (last - first) / 1e9
    emit_result(
        {
            "system": system,
            "mode": "throughput",
            "received": received,
            "sent": sent,
            "seconds": seconds,
            "msg_per_s": received / seconds if seconds > 0 else 0.0,
            "stop": why,
            "first_ns": first,
            "last_ns": last,
            **extra,
        }
    )
    return 0 if received else 1


def run_role(
    argv: list[str],
    doc: str | None,
    *,
    server: Callable[..., Any],
    client: Callable[..., Any],
    sink: Callable[..., Any],
    blast: Callable[..., Any],
) -> int:
    """A peer module's ``main``: parse ``ROLE ARGS...`` the same way for every system and run
    the role (awaiting it when it is a coroutine); print ``doc`` for an unknown role."""
    import asyncio
    import inspect

    role, args = (argv[0], argv[1:]) if argv else ("", [])
    roles: dict[str, Callable[[], Any]] = {
        "server": lambda: server(int(args[0])),
        "client": lambda: client(args[0], int(args[1]), int(args[2]), int(args[3]), int(args[4])),
        "sink": lambda: sink(int(args[0]), int(args[1]) if len(args) > 1 else 0),
        "blast": lambda: blast(args[0], int(args[1]), int(args[2]), int(args[3])),
    }
    if role not in roles:
        print(doc, file=sys.stderr)
        return 2
    result = roles[role]()
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    return int(result)


def big_buffers(sock: Any, size: int = 8 << 20) -> None:
    """Ask for large socket buffers (forced when privileged, capped by rmem_max otherwise)."""
    import socket

    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, size)


# --------------------------------------------------------------------------- harness side


class PeerError(RuntimeError):
    """A peer exited badly, printed no result, or ran past its time limit."""


def build_raw(force: bool = False) -> Path:
    """Compile the raw C baseline with the system ``cc -O2`` when missing or out of date."""
    if force or not RAW_BIN.exists() or RAW_BIN.stat().st_mtime < RAW_SRC.stat().st_mtime:
        RAW_BIN.parent.mkdir(parents=True, exist_ok=True)
        cc = os.environ.get("CC", "cc")
        cmd = [cc, "-O2", "-Wall", "-o", str(RAW_BIN), str(RAW_SRC)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PeerError(f"building {RAW_SRC.name} failed: {' '.join(cmd)}\n{proc.stderr}")
    return RAW_BIN


def python_module(module: str) -> list[str]:
    """The argv prefix that runs ``module`` with this interpreter from the repository root."""
    return [sys.executable, "-m", module]


def usable_cpus() -> list[int]:
    """CPUs this process may run on, sorted."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


class Peer:
    """One benchmark peer running as a subprocess.

    ``cpu`` pins the process to one CPU (``None``: leave it to the scheduler).  Use it as a
    context manager so that the process is always ended, even when the harness fails.
    stdout is read unbuffered (no line can hide in a buffer); stderr goes to a temporary
    file, so a chatty peer can never block on a full pipe, and its tail is quoted in errors.
    """

    def __init__(
        self,
        argv: Sequence[str],
        name: str,
        cpu: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]

        def pin() -> None:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})

        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), full_env.get("PYTHONPATH", "")) if p
        )
        if env:
            full_env.update(env)
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            self.argv,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._err,
            bufsize=0,
            env=full_env,
            preexec_fn=pin if cpu is not None else None,
        )
        self._out = bytearray()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_ready(self, timeout: float = 20.0) -> int:
        """Wait for the ``ready PORT`` line; return the port."""
        import selectors

        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        seen = 0  # bytes of self._out already split into lines
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                while (end := self._out.find(b"\n", seen)) >= 0:
                    words = self._out[seen:end].split()
                    seen = end + 1
                    if words and words[0] == b"ready":
                        return int(words[1]) if len(words) > 1 else 0
                left = deadline - time.monotonic()
                if left <= 0:
                    self.stop()
                    raise PeerError(f"{self.name}: no 'ready' line within {timeout:.0f} s")
                if not sel.select(left):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.proc.wait()
                    raise PeerError(f"{self.name}: exited before 'ready'{self._stderr_tail()}")
                self._out += chunk

    def result(self, timeout: float) -> dict[str, Any]:
        """Wait for the peer to exit and return the JSON object on its last stdout line."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise PeerError(
                f"{self.name}: still running after {timeout:.0f} s (killed){self._stderr_tail()}"
            ) from None
        self._out += out or b""
        text = self._out.decode(errors="replace")
        lines = [ln for ln in text.splitlines() if ln.startswith("{")]
        if not lines:
            raise PeerError(
                f"{self.name}: exit status {self.proc.returncode}, no result{self._stderr_tail()}"
            )
        data: dict[str, Any] = json.loads(lines[-1])
        data["exit_status"] = self.proc.returncode
        return data

    def stop(self, grace: float = 2.0) -> None:
        """End the process if it still runs (SIGTERM, then SIGKILL after ``grace``)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()
        self._err.close()

    def _stderr_tail(self, limit: int = 1500) -> str:
        try:
            self._err.seek(0)
            err = self._err.read().decode(errors="replace").strip()
        except (OSError, ValueError):  # already closed
            err = ""
        return f"\n--- stderr of {self.name} ---\n{err[-limit:]}" if err else ""


@dataclass
class Row:
    """The measurements of one system at one message size."""

    system: str
    size: int
    p50_us: float | None = None
    p99_us: float | None = None
    rtt_msg_per_s: float | None = None
    rtt_count: int | None = None
    rtt_lost: int | None = None
    tput_msg_per_s: float | None = None
    tput_e2e_msg_per_s: float | None = None
    delivered: int | None = None
    sent: int | None = None
    #: losses, timeouts and oddities worth a line under the table
    notes: list[str] = field(default_factory=list)
    #: a measurement could not be taken (the peer crashed, hung or printed no result)
    failed: bool = False


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing or ``b`` is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _delivered(row: Row) -> str:
    if row.delivered is None:
        return "-"
    return f"{row.delivered}/{row.sent if row.sent is not None else '?'}"


def _one_line(text: str) -> str:
    """First and last line of a (multi-line) error: what failed, and the final word of why."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) <= 1:
        return text.strip()
    return f"{lines[0]} ... {lines[-1].strip()}"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    body = [list(headers), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in body) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(body):
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_tables(rows: Sequence[Row], reference: str, focus: str | None = None) -> str:
    """Tables per message size: absolute numbers, ratios to ``reference`` and ``focus``.

    RTT ratios are ``system / reference`` (above 1: slower); throughput ratios are
    ``system / reference`` (below 1: fewer messages per second).  When ``focus`` is given, a
    second table shows ``focus / other`` for each other system, with the same reading.
    """
    out: list[str] = []
    for size in sorted({r.size for r in rows}):
        at_size = [r for r in rows if r.size == size]
        ref = next((r for r in at_size if r.system == reference), None)
        out.append(f"== {size} B messages; ratios are system / {reference} ==")
        table = []
        for r in at_size:
            table.append(
                [
                    r.system,
                    _fmt(r.p50_us, ".1f"),
                    _fmt(r.p99_us, ".1f"),
                    _fmt(r.rtt_msg_per_s, ",.0f"),
                    _fmt(r.tput_msg_per_s, ",.0f"),
                    _fmt(r.tput_e2e_msg_per_s, ",.0f"),
                    _delivered(r),
                    _fmt_ratio(ratio(r.p50_us, ref.p50_us if ref else None)),
                    _fmt_ratio(ratio(r.p99_us, ref.p99_us if ref else None)),
                    _fmt_ratio(ratio(r.tput_msg_per_s, ref.tput_msg_per_s if ref else None)),
                ]
            )
        out.append(
            _table(
                [
                    "system",
                    "p50 us",
                    "p99 us",
                    "rtt/s",
                    "msg/s",
                    "e2e msg/s",
                    "delivered",
                    "p50 ratio",
                    "p99 ratio",
                    "tput ratio",
                ],
                table,
            )
        )
        me = next((r for r in at_size if r.system == focus), None) if focus else None
        if me is not None:
            others = [r for r in at_size if r.system != focus]
            if others:
                out.append("")
                out.append(f"-- {focus} / other system at {size} B --")
                out.append(
                    _table(
                        ["versus", "p50 ratio", "p99 ratio", "tput ratio"],
                        [
                            [
                                o.system,
                                _fmt_ratio(ratio(me.p50_us, o.p50_us)),
                                _fmt_ratio(ratio(me.p99_us, o.p99_us)),
                                _fmt_ratio(ratio(me.tput_msg_per_s, o.tput_msg_per_s)),
                            ]
                            for o in others
                        ],
                    )
                )
        for r in at_size:
            for e in r.notes:
                out.append(f"! {r.system} {size} B: {_one_line(e)}")
        out.append("")
    return "\n".join(out)


def print_tables(rows: Sequence[Row], reference: str, focus: str | None = None) -> None:
    """Print :func:`format_tables` to stdout."""
    print(format_tables(rows, reference, focus), flush=True)


def environment() -> dict[str, Any]:
    """Facts about the machine a run happened on, stored beside its results."""
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpus": usable_cpus(),
    }


def write_json(path: str | Path, rows: Sequence[Row], settings: dict[str, Any]) -> None:
    """Write the rows, the run's settings and the environment to ``path`` as JSON."""
    doc = {
        "environment": environment(),
        "settings": settings,
        "results": [asdict(r) for r in rows],
    }
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")
