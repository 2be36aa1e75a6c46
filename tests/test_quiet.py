"""A library is quiet: the same unchanged nats-py programs print the same stdout and stderr on
nats-py + nats-server and on compat.nats, and connect() leaves the application's logging as it
found it (pyverbs' import-time logging.basicConfig included: the RDMA probe must not import it).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: A small service: logging untouched (``setup`` empty) or configured after connecting.
APP = '''
import asyncio
import logging
import {module} as nats

def root_state():
    root = logging.getLogger()
    return [type(h).__name__ for h in root.handlers], logging.getLevelName(root.level)

async def main():
    before = root_state()
    nc = await nats.connect({servers!r}, name="quiet-app")
    print("root logger unchanged by connect:", root_state() == before, root_state())
    {setup}
    async def echo(msg):
        await msg.respond(msg.data.upper())
    await nc.subscribe("svc.upper", cb=echo)
    got = []
    async def collect(msg):
        got.append(msg.data.decode())
    sub = await nc.subscribe("events.>", cb=collect)
    for i in range(50):
        await nc.publish(f"events.{{i % 3}}", str(i).encode())
    reply = await nc.request("svc.upper", b"hello", timeout=2)
    await nc.flush()
    for _ in range(100):
        if len(got) == 50:
            break
        await asyncio.sleep(0.02)
    print("reply", reply.data.decode(), "events", len(got), got[:3])
    try:
        await nc.request("svc.nobody", b"", timeout=0.5)
    except nats.errors.NoRespondersError:
        print("no responders, as expected")
    logging.getLogger("app").warning("the app's own warning")
    await sub.unsubscribe()
    await nc.drain()
    print("root logger unchanged at the end:", root_state() == before, root_state())

asyncio.run(main())
'''

SETUPS = {
    "untouched": "pass",
    "warning_after_connect": "logging.basicConfig(level=logging.WARNING)",
}


def run_app(tmp_path: Path, module: str, servers: str, setup: str) -> tuple[str, str]:
    app = tmp_path / f"app_{module.replace('.', '_')}.py"
    app.write_text(APP.format(module=module, servers=servers, setup=setup))
    cfg = tmp_path / "insane.yaml"
    cfg.write_text(f"domain: {random.randrange(1, 2**32)}\n")
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        "INSANE_CONFIG": str(cfg),
    }
    r = subprocess.run(
        [sys.executable, str(app)], capture_output=True, text=True, env=env, timeout=60,
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r.stdout, r.stderr


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_same_output_on_nats_py_and_compat_nats(
    setup: str, nats_server: str, tmp_path: Path
) -> None:
    real = run_app(tmp_path, "nats", nats_server, SETUPS[setup])
    ours = run_app(tmp_path, "compat.nats", nats_server, SETUPS[setup])
    assert ours == real
    stdout, stderr = ours
    assert stdout.count("root logger unchanged by connect: True") == 1, stdout
    assert "reply HELLO events 50" in stdout
    if setup == "untouched":
        # nothing configured logging: Python's last resort prints the app's own warning alone
        assert stderr == "the app's own warning\n"
    else:
        assert stderr == "WARNING:app:the app's own warning\n"


def test_import_leaves_the_process_alone(tmp_path: Path) -> None:
    """Importing and connecting install no signal handler and no log handler, print nothing,
    and do not import pyverbs where no RDMA device exists."""
    domain = random.randrange(1, 2**32)
    code = (
        "import asyncio, logging, signal, sys\n"
        "import insane\n"
        "async def main():\n"
        f"    async with insane.connect({{'domain': {domain}}}):\n"
        "        pass\n"
        "asyncio.run(main())\n"
        "print(logging.getLogger().handlers, signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,\n"
        "      'pyverbs' in sys.modules)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout == "[] True False\n"
