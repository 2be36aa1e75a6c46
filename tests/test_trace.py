"""The data plane keeps its bytes: the scripted scenario of tests/trace.py (pub/sub, headers,
request/reply, a fragmented 1 MiB message, a reliable stream through loss), run on a virtual
clock over an in-memory network with fixed ids and seeds, gives the trace recorded in
tests/traces/scenario.trace, datagram for datagram, delivery for delivery."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_the_scenario_gives_the_recorded_trace() -> None:
    trace = HERE / "traces" / "scenario.trace"
    r = subprocess.run(
        [sys.executable, str(HERE / "trace.py"), "compare", str(trace)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "identical" in r.stdout
