"""Every sample output in README.md, compat/nats/README.md and the tutorial is what the code
prints today: docs/samples.py runs each one and compares (figures aside)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_sample_output_is_current() -> None:
    r = subprocess.run(
        [sys.executable, str(REPO / "docs" / "samples.py"), "--check"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr


def test_the_check_fails_when_a_sample_drifts(tmp_path: Path) -> None:
    """The comparison ignores figures but not text: a changed word is caught."""
    sys.path.insert(0, str(REPO / "docs"))
    try:
        import samples
    finally:
        sys.path.pop(0)
    assert samples.normalise("p50 52.5 us, id 1a2b3c4d5e6f7a8b") == samples.normalise(
        "p50 136.1 us, id 0123456789abcdef"
    )
    assert samples.normalise("udp   563 us   991 us") == samples.normalise("udp  1.2 ms  15 ms")
    assert samples.normalise("route: udp") != samples.normalise("route: xdp")
    names = {name for _, name, _ in samples.blocks()}
    assert names == set(samples.SAMPLES), names ^ set(samples.SAMPLES)
