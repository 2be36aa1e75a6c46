"""The command where it really runs: `insane top` in a terminal (tmux), and `insane doctor` in
a process whose capabilities were dropped, as in a container."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from netns import strict_skip

REPO = str(Path(__file__).resolve().parent.parent)
CLI = [sys.executable, "-m", "insane.cli"]


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        strict_skip(f"{tool} is not installed (Debian: {package}); ./run test installs it")
        raise AssertionError("unreachable")
    return path


@pytest.mark.privileged
def test_doctor_without_capabilities_says_why(tmp_path: Path) -> None:
    """Root with CAP_NET_ADMIN, CAP_BPF and CAP_SYS_ADMIN dropped: doctor names the missing
    capabilities for AF_XDP and DPDK instead of calling them available."""
    capsh = need("capsh", "libcap2-bin")
    cfg = tmp_path / "insane.yaml"
    cfg.write_text(
        "transports:\n"
        "  xdp: {interface: lo}\n"
        "  dpdk: {eal_args: ['--vdev=net_af_packet0,iface=lo']}\n"
    )
    cmd = " ".join([*CLI, "doctor", "--json", "-c", str(cfg)])
    r = subprocess.run(
        [capsh, "--drop=cap_net_admin,cap_bpf,cap_sys_admin", "--", "-c", cmd],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": REPO},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr  # libbpf and the EAL say nothing by themselves
    report = json.loads(r.stdout)
    xdp, dpdk = report["transports"]["xdp"], report["transports"]["dpdk"]
    assert not xdp["available"] and not dpdk["available"]
    assert xdp["checks"]["cap_net_admin"] is False
    assert xdp["checks"]["cap_bpf_or_sys_admin"] is False
    assert (
        "the effective capabilities lack CAP_NET_ADMIN, CAP_BPF (or CAP_SYS_ADMIN)"
        in xdp["reason"]
    ), xdp["reason"]
    assert "the effective capabilities lack CAP_NET_ADMIN" in dpdk["reason"], dpdk["reason"]
    # the same doctor with every capability says nothing about them
    r = subprocess.run(
        [*CLI, "doctor", "--json", "-c", str(cfg)], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": REPO},
    )  # fmt: skip
    full = json.loads(r.stdout)["transports"]["xdp"]
    assert full["checks"]["cap_net_admin"] is True and "capabilities" not in full["reason"]


class Tmux:
    """A private tmux server with one 80x40 window."""

    def __init__(self, tmp_path: Path) -> None:
        self.exe = need("tmux", "tmux")
        self.socket = str(tmp_path / f"tmux-{uuid.uuid4().hex[:8]}")
        self("new-session", "-d", "-x", "80", "-y", "40", "-s", "t")

    def __call__(self, *args: str) -> str:
        r = subprocess.run(
            [self.exe, "-S", self.socket, *args], capture_output=True, text=True, timeout=20
        )
        assert r.returncode == 0, r.stderr
        return r.stdout

    def screen(self) -> list[str]:
        """The visible screen; -J joins lines the terminal wrapped, so a line wider than the
        window shows as one long line."""
        return self("capture-pane", "-p", "-J", "-t", "t").splitlines()

    def kill(self) -> None:
        subprocess.run([self.exe, "-S", self.socket, "kill-server"], capture_output=True)


def wait_screen(tmux: Tmux, want: object, timeout: float = 20.0) -> list[str]:
    """The screen once ``want(screen)`` holds."""
    deadline = time.monotonic() + timeout
    screen: list[str] = []
    while time.monotonic() < deadline:
        screen = tmux.screen()
        if want(screen):  # type: ignore[operator]
            return screen
        time.sleep(0.2)
    raise AssertionError("screen never matched:\n" + "\n".join(screen))


def test_top_follows_processes_in_a_real_terminal(tmp_path: Path) -> None:
    """top started first: a process started afterwards appears within two refreshes, one that
    exits disappears, and no line is wider than the 80-column terminal."""
    base = random.randrange(20000, 60000)
    cfg = tmp_path / "insane.yaml"
    cfg.write_text(
        f"domain: {random.randrange(1, 2**32)}\nmetrics: {{port: {base}, port_span: 4}}\n"
    )
    env = {**os.environ, "PYTHONPATH": REPO, "INSANE_CONFIG": str(cfg)}
    tmux = Tmux(tmp_path)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        tmux(
            "send-keys", "-t", "t",
            f"cd {REPO} && PYTHONPATH={REPO} INSANE_CONFIG={cfg} "
            f"{' '.join(CLI)} top -i 1", "Enter",
        )  # fmt: skip
        wait_screen(tmux, lambda s: any("no INSANE process answers" in ln for ln in s))

        def start(name: str) -> subprocess.Popen[bytes]:
            p = subprocess.Popen(
                [*CLI, "sub", f"{name}.>", "--name", name],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            assert p.stderr is not None and p.stderr.readline().startswith(b"Listening")
            procs.append(p)
            return p

        start("alpha")
        started = time.monotonic()
        screen = wait_screen(tmux, lambda s: any("/metrics  alpha" in ln for ln in s))
        assert time.monotonic() - started < 2 * 1.0 + 1.5, "not within two refreshes"
        beta = start("beta")
        screen = wait_screen(
            tmux,
            lambda s: any("/metrics  beta" in ln for ln in s)
            and any(ln.startswith("TRANSPORT") for ln in s),
        )
        beta.terminate()
        beta.wait(10)
        screen = wait_screen(tmux, lambda s: not any("beta" in ln for ln in s))
        assert any("/metrics  alpha" in ln for ln in screen)
        assert not any("unreachable" in ln for ln in screen), screen
        wide = [ln for ln in screen if len(ln) > 80]
        assert not wide, wide
    finally:
        tmux.kill()
        for p in procs:
            p.kill()
            p.wait()
