"""The `insane` command as a user runs it: output, exit status, and one line per failure."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import engine_built

CLI = [sys.executable, "-m", "insane.cli"]
REPO = str(Path(__file__).resolve().parent.parent)


def run(
    *args: str, env: dict[str, str] | None = None, cwd: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": REPO, **(env or {})},
        cwd=cwd,
    )


def one_line_error(r: subprocess.CompletedProcess[str], status: int, text: str) -> None:
    """What every ordinary failure looks like: the status, and one ``insane:`` line."""
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == status, (r.returncode, r.stderr)
    assert r.stderr.splitlines() == [f"insane: {text}"], r.stderr


class Shell:
    """Processes of one test sharing a fresh domain, killed afterwards."""

    def __init__(self, tmp_path: Path, yaml: str = "") -> None:
        self.config = tmp_path / "insane.yaml"
        self.config.write_text(f"domain: {random.randrange(1, 2**32)}\n{yaml}")
        self.env = {**os.environ, "PYTHONPATH": REPO, "INSANE_CONFIG": str(self.config)}
        self.procs: list[subprocess.Popen[str]] = []

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run(*args, env={"INSANE_CONFIG": str(self.config)}, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        """A long-running command, returned once it says on stderr that it listens."""
        p = subprocess.Popen(
            [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
        )
        self.procs.append(p)
        assert p.stderr is not None
        line = p.stderr.readline()
        assert line.startswith("Listening on "), line + p.stderr.read()
        return p

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    s = Shell(tmp_path)
    try:
        yield s
    finally:
        s.close()


# --- the command itself ---------------------------------------------------------------------


def test_version_and_plain_help() -> None:
    from insane import __version__

    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"insane {__version__}"
    r = run("--help")
    assert r.returncode == 0
    assert "``" not in r.stdout and ":mod:" not in r.stdout, r.stdout
    for command in ("doctor", "qos", "pub", "req", "reply", "sub", "top", "monitor"):
        assert f"\n    {command}" in r.stdout, command
    assert "exit status:" in r.stdout and "141" in r.stdout


def test_doctor_json_lists_all_four_transports() -> None:
    r = run("doctor", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert set(report["transports"]) == {"udp", "xdp", "dpdk", "rdma"}
    assert report["transports"]["udp"]["available"] is True
    for name in ("xdp", "dpdk", "rdma"):
        entry = report["transports"][name]
        assert entry["available"] is False
        assert entry["reason"]
    assert report["ok"] is True and report["security"]["ok"] is True


def test_doctor_checks_the_security_section_as_connect_does(tmp_path: Path) -> None:
    """A missing key file: doctor says so (exit 1), as connect() would fail; a good one and a
    short one are told apart."""
    cfg = tmp_path / "insane.yaml"
    cfg.write_text("security: {mode: encrypt, key_file: domain.key}\n")
    r = run("doctor", "-c", str(cfg))
    assert r.returncode == 1, r.stdout + r.stderr
    key = tmp_path / "domain.key"
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("security"))
    assert line == (
        f"security problem  {cfg}: security.key_file: expected a readable key file, got "
        f"'domain.key' ({key}: No such file or directory)"
    )
    key.write_bytes(b"x" * 16)
    r = run("doctor", "-c", str(cfg), "--json")
    assert r.returncode == 1
    assert "expected at least 32 bytes of secret, got 16" in json.loads(r.stdout)["security"][
        "reason"
    ]
    key.write_bytes(os.urandom(32))
    r = run("doctor", "-c", str(cfg))
    assert r.returncode == 0, r.stdout
    assert f"security ok  encrypt with the key in {key}" in r.stdout


def test_doctor_names_the_data_plane_and_fails_on_an_engine_there_is_not() -> None:
    from insane.engine import native
    from insane.engine.node import NATIVE_PARTS

    engine_built()
    r = run("doctor", env={"INSANE_ENGINE": ""})
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[1:5] == [
        "engine native  the data plane in use (default; engines here: native, python)",
        "      implementation: insane.engine.node:NativeNode",
        f"      native_engine: built ({native().OPENSSL_VERSION}); parts in C: "
        f"{', '.join(NATIVE_PARTS) or 'none yet'}",
        f"      per_message_helpers: {_helpers()}",
    ]
    r = run("doctor", env={"INSANE_ENGINE": "python"})
    assert r.stdout.splitlines()[1:3] == [
        "engine python  the data plane in use (INSANE_ENGINE; engines here: native, python)",
        "      implementation: insane.protocol.node:PeerNode",
    ]
    r = run("doctor", "--json", env={"INSANE_ENGINE": "warp"})
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert report["ok"] is False and report["engine"]["ok"] is False
    expected = "INSANE_ENGINE (environment): expected one of native, python, got 'warp'"
    assert report["engine"]["reason"] == expected
    # connect() fails the same way, before it opens anything: one line, exit 2
    one_line_error(run("pub", "a", "x", env={"INSANE_ENGINE": "warp"}), 2, expected)


def _helpers() -> str:
    from insane.protocol import speedups

    return "native" if speedups.NATIVE else "python (INSANE_PURE_PYTHON or not built)"


def test_qos_explain_names_pattern_and_fallback(tmp_path: Path) -> None:
    (tmp_path / "insane.yaml").write_text('channels:\n  "orders.>": {qos: [fast, reliable]}\n')
    r = run("qos", "explain", "orders.eu.new", cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "orders.>" in r.stdout
    assert "udp" in r.stdout
    assert "fallback" in r.stdout.lower() or "skipped" in r.stdout.lower()


def test_bad_config_fails_fast_with_file_key_and_expected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("transports:\n  udp:\n    port: lots\n")
    r = run("doctor", env={"INSANE_CONFIG": str(bad)})
    one_line_error(
        r, 2, f"{bad}: transports.udp.port: expected an integer 0..65535, got 'lots'"
    )


@pytest.mark.parametrize("args", [["pub", "a.*", "x"], ["qos", "explain", "bad..subject"]])
def test_invalid_subjects_are_clear_errors(args: list[str]) -> None:
    r = run(*args)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) == 1 and "invalid subject" in r.stderr


def test_debug_shows_the_traceback() -> None:
    r = run("--debug", "qos", "explain", "bad..subject")
    assert r.returncode == 2
    assert "Traceback" in r.stderr and r.stderr.splitlines()[-1].startswith("insane: ")


def test_a_closed_output_is_not_an_error(tmp_path: Path) -> None:
    """`insane qos explain ... | head -1`: the reader goes away; no traceback, status 141."""
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "w") as out:
        p = subprocess.run(
            [*CLI, "qos", "explain", "orders.eu.new"],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": REPO},
            timeout=60,
        )
    assert p.returncode == 141, p.stderr
    assert p.stderr == ""


def test_a_full_metrics_port_range_is_one_line_naming_the_yaml(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        s = Shell(tmp_path, f"metrics: {{port: {port}, port_span: 1}}\n")
        r = s.run("pub", "x", "hi")
    one_line_error(
        r,
        2,
        f"{s.config}: metrics.port: every port from {port} to {port} on 127.0.0.1 is in use "
        "(raise metrics.port_span, or pick another metrics.port)",
    )


def test_templates_are_checked_before_connecting() -> None:
    r = run("pub", "x", "{{Nope}}")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("insane: unknown template function 'Nope' (known: ")
    one_line_error(run("pub", "x", "hi", "-H", "novalue"), 2, "-H 'novalue': expected KEY:VALUE")


# --- messages from the shell ------------------------------------------------------------------


def test_req_with_nobody_listening(shell: Shell) -> None:
    one_line_error(shell.run("req", "svc.echo", "hi"), 1, "no responders on svc.echo")


def test_req_that_gets_no_reply_in_time(shell: Shell) -> None:
    shell.start("sub", "svc.silent")
    r = shell.run("req", "svc.silent", "hi", "--timeout", "0.3")
    one_line_error(r, 1, "no reply on svc.silent within 0.3 s")


def test_req_and_reply(shell: Shell) -> None:
    """`insane reply` answers with its templated body (numbered from 0, as the nats CLI does),
    `insane req` prints each reply and exits 0."""
    replier = shell.start("reply", "svc.greet", "hello {{Request}} #{{Count}}", "-H", "By:cli")
    r = shell.run("req", "svc.greet", "req{{Count}}", "-n", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "By: cli", "", "hello req1 #0",
        "By: cli", "", "hello req2 #1",
        "By: cli", "", "hello req3 #2",
    ]  # fmt: skip
    r = shell.run("req", "svc.greet", "x", "--raw")
    assert r.stdout == "hello x #3\n", r.stdout
    replier.kill()
    out, _ = replier.communicate()
    assert out.startswith('[#0] Received on "svc.greet" with reply "_INBOX.'), out


def test_reply_echoes_without_a_body_and_sub_sees_the_requests(shell: Shell) -> None:
    shell.start("reply", "svc.echo")
    watcher = shell.start("sub", "svc.echo")
    r = shell.run("req", "svc.echo", "ping {{Count}}", "-H", "Trace:t{{Count}}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["Trace: t1", "", "ping 1"]
    watcher.kill()
    out, _ = watcher.communicate()
    lines = out.splitlines()
    assert lines[0].startswith('[#1] Received on "svc.echo" with reply "_INBOX.'), out
    assert lines[1:] == ["Trace: t1", "", "ping 1", ""], out


def test_pub_and_sub_between_processes(shell: Shell) -> None:
    """The nats CLI's habits: {{Count}} from 1, headers as Key: value lines, a blank line after
    each message; `sub -n` exits after that many."""
    sub = shell.start("sub", "greet.*", "-n", "3")
    pub = shell.run("pub", "greet.world", "hello {{Count}}", "-n", "3", "-H", "Seq:{{ .Count }}")
    assert pub.returncode == 0 and pub.stderr == "", pub.stderr
    out, _ = sub.communicate(timeout=20)
    assert sub.returncode == 0
    expected = []
    for i in (1, 2, 3):
        expected += [f'[#{i}] Received on "greet.world"', f"Seq: {i}", "", f"hello {i}", ""]
    assert out.splitlines() == expected


def test_pub_says_when_no_subscriber_is_known(shell: Shell) -> None:
    r = shell.run("pub", "nobody.here", "hi", "-n", "2")
    assert r.returncode == 0
    assert r.stderr.splitlines() == [
        "insane: no subscriber is known for nobody.here: publishing 2 messages to nobody"
    ]


def test_sub_and_pub_serve_metrics_and_top_finds_them(tmp_path: Path) -> None:
    """With metrics in the YAML, `insane sub` and `insane pub` each serve their own port of
    the range, and `insane top -c` finds both and shows the traffic between them."""
    base = random.randrange(20000, 60000)
    s = Shell(tmp_path, f"metrics: {{port: {base}, port_span: 8}}\n")
    try:
        sub = s.start("sub", "tick", "--raw", "--name", "listener")
        ticker = [*CLI, "pub", "tick", "t{{Count}}", "-n", "100000", "--sleep", "0.002"]
        ticker += ["--wait", "5", "--name", "ticker"]
        s.procs.append(subprocess.Popen(ticker, stdout=subprocess.DEVNULL, env=s.env))
        assert sub.stdout is not None
        assert sub.stdout.readline().strip() == "t1"
        top = s.run("top", "--once", "-i", "1")
    finally:
        s.close()
    assert top.returncode == 0, top.stderr
    lines = top.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), [ln for ln in lines if len(ln) > 80]
    endpoints = [line.split()[0] for line in lines if "/metrics" in line]
    assert len(endpoints) == 2, top.stdout
    assert all(base <= int(e.rsplit(":", 1)[1].split("/")[0]) < base + 8 for e in endpoints)
    heads = {line.split()[1] for line in lines if "/metrics" in line}
    assert heads == {"listener", "ticker"}, top.stdout  # each process's session name
    assert "ticker-" in top.stdout, top.stdout  # the subscriber's peer table names the pub
    rows = [line.split() for line in lines if line.startswith("udp ")]
    assert any(float(r[1]) > 20 for r in rows) and any(float(r[2]) > 20 for r in rows), rows
