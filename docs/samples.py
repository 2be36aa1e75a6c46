"""Every sample output in README.md, compat/nats/README.md and the tutorial, made by running it.

A sample is the fenced block that follows a marker line in a Markdown file::

    <!-- sample: doctor -->
    ```
    $ insane doctor
    configuration: <embedded default>
    ...
    ```

``python docs/samples.py`` runs what each sample shows and writes the output into its block;
``--check`` only compares, and exits 1 naming every sample that is out of date
(tests/test_docs_samples.py runs it). Measured values (times, counts, ports, ids) change from
run to run, so the comparison replaces every number and every hexadecimal id first: a check
fails when the text the code prints changes, not when the figures do.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", REPO / "compat" / "nats" / "README.md",
        REPO / "examples" / "tutorial" / "README.md"]  # fmt: skip
MARKER = re.compile(r"^<!-- sample: ([\w-]+) -->\n```[^\n]*\n(.*?)^```$", re.M | re.S)
CLI = [sys.executable, "-m", "insane.cli"]


class Sandbox:
    """A fresh directory and domain for one sample, and the processes it starts."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.domain = random.randrange(1, 2**32)
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        self.env.pop("INSANE_CONFIG", None)
        self.procs: list[subprocess.Popen[str]] = []

    def yaml(self, text: str, name: str = "insane.yaml") -> Path:
        path = self.dir / name
        path.write_text(f"domain: {self.domain}\n{text}")
        return path

    def run(self, *args: str, status: int = 0) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            list(args), capture_output=True, text=True, env=self.env, cwd=self.dir, timeout=120
        )
        if r.returncode != status:
            raise RuntimeError(f"{args}: exit {r.returncode}, expected {status}\n{r.stderr}")
        return r

    def insane(self, *args: str, status: int = 0) -> subprocess.CompletedProcess[str]:
        return self.run(*CLI, *args, status=status)

    def start(self, *args: str, output: bool = True) -> subprocess.Popen[str]:
        """An ``insane`` command that runs on, once it says it is listening; ``output``
        False: its stdout is thrown away (nothing reads it, so it must not fill a pipe)."""
        p = subprocess.Popen(
            [*CLI, *args], stdout=subprocess.PIPE if output else subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, env=self.env, cwd=self.dir,
        )  # fmt: skip
        self.procs.append(p)
        assert p.stderr is not None
        line = p.stderr.readline()
        if not line.startswith("Listening on "):
            raise RuntimeError(f"{args}: {line}{p.stderr.read()}")
        return p

    def stop(self, p: subprocess.Popen[str]) -> str:
        p.terminate()
        out, _ = p.communicate(timeout=20)
        return out

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _prompt(command: str, r: subprocess.CompletedProcess[str]) -> str:
    return f"$ {command}\n{r.stdout}{r.stderr}"


def _free_port_range(span: int) -> int:
    for _ in range(100):
        base = random.randrange(20000, 60000)
        with contextlib.ExitStack() as stack:
            try:
                for p in range(base, base + span):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", p))
            except OSError:
                continue
            return base
    raise RuntimeError("no free port range")


# --- the samples ------------------------------------------------------------------------------


def demo(sb: Sandbox, with_nats: bool = False) -> str:
    """The tutorial's run.py: its lines, pong's first four metrics, then the end."""
    args = [sys.executable, str(REPO / "examples" / "tutorial" / "run.py")]
    out = sb.run(*args, *(["--with-nats"] if with_nats else [])).stdout.splitlines()
    metrics = [i for i, line in enumerate(out) if line.startswith("    insane_")]
    shown = out[: metrics[3] + 1] + ["    ..."] + out[metrics[-1] + 1 :]
    return "\n".join(shown) + "\n"


def doctor(sb: Sandbox) -> str:
    return _prompt("insane doctor", sb.insane("doctor"))


def qos_explain(sb: Sandbox) -> str:
    sb.yaml('channels:\n  "orders.>": {qos: [fast, reliable, ordered]}\n')
    return _prompt("insane qos explain orders.eu.new", sb.insane("qos", "explain", "orders.eu.new"))


def config_errors(sb: Sandbox) -> str:
    out = []
    for name, text in (
        ("bad.yaml", "transports:\n  udp:\n    port: lots\n"),
        ("insane.yaml", 'channels:\n  "orders.>": {reliability: sure}\n'),
    ):
        (sb.dir / name).write_text(text)
        out.append(sb.insane("doctor", "-c", name, status=2).stderr)
    return "".join(out)


def cli(sb: Sandbox) -> str:
    """pub, sub, req and reply against each other, and the failures of req."""
    sb.yaml("")
    lines = []
    sub = sb.start("sub", "greet.*")
    sb.start("reply", "svc.greet", "hello {{Request}}")
    lines.append("$ insane sub 'greet.*' &")
    lines.append('Listening on "greet.*"')
    lines.append("$ insane reply svc.greet 'hello {{Request}}' &")
    lines.append('Listening on "svc.greet" in group "NATS-RPLY-22"')
    command = ["pub", "greet.world", "hi {{Count}}", "-n", "2", "-H", "Trace:t{{Count}}"]
    sb.insane(*command)
    time.sleep(0.3)
    lines.append("$ insane pub greet.world 'hi {{Count}}' -n 2 -H 'Trace:t{{Count}}'")
    lines += sb.stop(sub).rstrip("\n").splitlines()
    r = sb.insane("req", "svc.greet", "world")
    lines.append("$ insane req svc.greet world")
    lines += r.stdout.rstrip("\n").splitlines()
    r = sb.insane("req", "svc.nobody", "x", status=1)
    lines.append("$ insane req svc.nobody x; echo $?")
    lines += [*r.stderr.rstrip("\n").splitlines(), "1"]
    r = sb.insane("pub", "nobody.here", "x")
    lines.append("$ insane pub nobody.here x")
    lines += r.stderr.rstrip("\n").splitlines()
    return "\n".join(lines) + "\n"


def top(sb: Sandbox) -> str:
    base = _free_port_range(4)
    sb.yaml(
        f'channels:\n  "demo.>": {{qos: [fast, reliable, ordered]}}\n'
        f"metrics: {{port: {base}, port_span: 4}}\n"
    )
    sb.start("sub", "demo.>", "--name", "listener", output=False)
    ticker = subprocess.Popen(
        [*CLI, "pub", "demo.tick", "t", "-n", "1000000", "--sleep", "0.001", "--wait", "5",
         "--name", "ticker"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=sb.env, cwd=sb.dir,
    )  # fmt: skip
    sb.procs.append(ticker)  # type: ignore[arg-type]
    time.sleep(3)
    r = sb.insane("top", "--once", "-i", "1", "-c", "insane.yaml")
    return _prompt("insane top -c insane.yaml --once", r)


def tutorial_diff(sb: Sandbox) -> str:
    a, b = "examples/tutorial/nats/ping.py", "examples/tutorial/insane/ping.py"
    r = subprocess.run(["diff", a, b], capture_output=True, text=True, cwd=REPO)
    return f"$ diff {a} {b}\n{r.stdout}"


def tutorial_metrics(sb: Sandbox) -> str:
    """Section 4 of the tutorial: pong's metrics after a short ping run."""
    tutorial = REPO / "examples" / "tutorial" / "insane"
    env = {**sb.env, "INSANE_CONFIG": str(tutorial / "insane.yaml")}
    pong = subprocess.Popen(
        [sys.executable, str(tutorial / "pong.py")], stdout=subprocess.PIPE, text=True, env=env
    )
    sb.procs.append(pong)
    assert pong.stdout is not None and pong.stdout.readline().startswith("pong: ready")
    ping = [sys.executable, str(tutorial / "ping.py"), "--count", "1000"]
    subprocess.run(ping, check=True, env=env, capture_output=True, timeout=120)
    url = "http://127.0.0.1:9464/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    lines = [ln for ln in text.splitlines() if ln.startswith("insane_messages")]
    return f"$ curl -s {url} | grep '^insane_messages'\n" + "\n".join(lines) + "\n"


SAMPLES: dict[str, Callable[[Sandbox], str]] = {
    "demo": demo,
    "demo-with-nats": lambda sb: demo(sb, with_nats=True),
    "doctor": doctor,
    "qos-explain": qos_explain,
    "config-errors": config_errors,
    "cli": cli,
    "top": top,
    "tutorial-diff": tutorial_diff,
    "tutorial-metrics": tutorial_metrics,
}


# --- checking and writing ---------------------------------------------------------------------


def normalise(text: str) -> list[str]:
    """The text with its figures taken out: hex ids, then numbers, become ``#``; a duration's
    unit goes with its figure (``563 us`` and ``1.0 ms`` read alike), and so do the spaces
    that align columns of figures."""
    text = re.sub(r"\b[0-9a-f]{8,}\b", "#", text)
    text = re.sub(r"\d+(?:[.,]\d+)*", "#", text)
    text = re.sub(r"# (?:ns|us|ms|s)\b", "#", text)
    return [re.sub(r" {2,}", "  ", line.rstrip()) for line in text.strip("\n").splitlines()]


def blocks() -> Iterator[tuple[Path, str, str]]:
    """(file, sample name, the block's text) for every marked block."""
    for path in DOCS:
        for m in MARKER.finditer(path.read_text()):
            yield path, m.group(1), m.group(2)


def produce(names: set[str]) -> dict[str, str]:
    outputs = {}
    for name in sorted(names):
        if name not in SAMPLES:
            raise SystemExit(f"samples: no sample named {name!r} (known: {', '.join(SAMPLES)})")
        with tempfile.TemporaryDirectory(prefix="insane-sample-") as tmp:
            sb = Sandbox(Path(tmp))
            try:
                outputs[name] = SAMPLES[name](sb)
            finally:
                sb.close()
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if stale")
    parser.add_argument("names", nargs="*", help="only these samples (default: all)")
    args = parser.parse_args(argv)
    found = list(blocks())
    wanted = set(args.names) or {name for _, name, _ in found}
    outputs = produce(wanted)
    stale = []
    for path, name, text in found:
        if name in outputs and normalise(text) != normalise(outputs[name]):
            stale.append(f"{path.relative_to(REPO)}: sample {name}")
    if args.check:
        for line in stale:
            print(f"out of date: {line}", file=sys.stderr)
        return 1 if stale else 0
    for path in DOCS:
        text = path.read_text()

        def fill(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in outputs:
                return m.group(0)
            fence = m.group(0).split("\n", 2)[1]
            body = "\n".join(line.rstrip() for line in outputs[name].rstrip().splitlines())
            return f"<!-- sample: {name} -->\n{fence}\n{body}\n```"

        path.write_text(MARKER.sub(fill, text))
    for line in stale:
        print(f"updated: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
