"""Security across network namespaces: hosts a and b share a key (encrypt mode) on a bridge;
host c is an attacker.  A capture on b's interface shows no plaintext; the attacker's replay
of that capture, its forged and malformed datagrams, and a peer with the wrong key are all
dropped and counted, while a's traffic to b flows unharmed."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from agentctl import AgentProcess
from netns import Host, Lan, output_of, wait_exit, wait_for_line

pytestmark = pytest.mark.privileged

PORT = 7461
MARKER = "PLAINTEXT-MARKER"

# Captures, on one interface, the UDP payloads sent to PORT until stdin closes; prints one
# JSON line: the payloads (hex) and whether MARKER appeared anywhere in any frame.
CAPTURE = """
import json, select, socket, sys
ifname, port, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((ifname, 0))
print("ready", flush=True)
payloads, seen = [], False
while True:
    r, _, _ = select.select([s, sys.stdin], [], [], 0.5)
    if sys.stdin in r:
        break
    if s in r:
        frame = s.recv(65535)
        seen = seen or marker in frame
        if frame[12:14] == b"\\x08\\x00" and frame[23] == 17:
            ihl = (frame[14] & 15) * 4
            udp = frame[14 + ihl:]
            if int.from_bytes(udp[2:4], "big") == port:
                payloads.append(udp[8:].hex())
print(json.dumps({"payloads": payloads[:200], "marker_seen": seen}), flush=True)
"""

# The attacker: replays captured datagrams, then sends forged and malformed ones, to b.
ATTACK = """
import json, os, random, socket, struct, sys
target = (sys.argv[1], int(sys.argv[2]))
captured = [bytes.fromhex(h) for h in json.loads(sys.stdin.readline())]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for d in captured:                      # a replay of what a sent
    s.sendto(d, target)
header = bytes.fromhex(sys.argv[3])     # a's clear header: right magic, domain and sender
for i in range(200):                    # forged: a's header, a made-up key id, counter, tag
    s.sendto(header[:3] + b"\\x03" + header[4:] + os.urandom(random.randrange(28, 300)), target)
for i in range(200):                    # malformed: anything at all
    s.sendto(os.urandom(random.randrange(0, 200)), target)
print("done", flush=True)
"""


def config(host: Host, domain: int, key: str, port: int = 0) -> dict[str, Any]:
    return {
        "domain": domain,
        "transports": {"udp": {"bind": host.ip, "port": port}},
        "discovery": {"host_registry": False},
        "security": {"mode": "encrypt", "key_file": key},
    }


def test_attackers_get_nowhere_and_the_legitimate_traffic_flows(
    netns_lan3: Lan, agents: list[AgentProcess], tmp_path: Path
) -> None:
    a, b, c = netns_lan3
    key, wrong = tmp_path / "key", tmp_path / "wrong"
    key.write_bytes(os.urandom(32))
    wrong.write_bytes(os.urandom(32))
    domain = random.randrange(1, 2**32)

    def start(host: Host, name: str, cfg: dict[str, Any]) -> AgentProcess:
        agent = AgentProcess(cmd_prefix=host.wrap([]))
        agents.append(agent)
        agent.ok("connect", config=cfg, name=name, timeout=30)
        return agent

    sub = start(b, "b", config(b, domain, str(key), PORT))
    pub = start(a, "a", config(a, domain, str(key)))
    pub.ok("wait_peers", names=["b"], timeout=10)
    sub.ok("stream_sub", subject="data.x", id="s")
    sub.ok("stream_sub", subject="data.y", id="t")
    sub.ok("sub", subject="plain.x", id="p")

    capture = b.python(CAPTURE, b.ifname, str(PORT), MARKER, stdin=-1)
    wait_for_line(capture, "ready")
    pub.ok("pub", subject="plain.x", count=20, size=200, prefix=MARKER)
    sent = pub.ok("stream_pub", subject="data.x", count=500, timeout=60)
    assert sub.ok("wait_received", id="p", count=20)["count"] == 20
    assert capture.stdin is not None
    capture.stdin.close()
    wait_exit(capture, 10)
    seen = json.loads(output_of(capture).lines[-1])
    assert seen["payloads"], "the capture saw a's datagrams"
    assert not seen["marker_seen"], "encrypt mode: no plaintext on the wire"

    # The attacker: a peer with the wrong key, a replay of the capture, forgeries, garbage.
    intruder = start(c, "intruder", config(c, domain, str(wrong)))
    header = bytes.fromhex(seen["payloads"][0])[:16].hex()
    attack = c.python(ATTACK, b.ip, str(PORT), header, stdin=-1)
    assert attack.stdin is not None
    attack.stdin.write(json.dumps(seen["payloads"]) + "\n")
    attack.stdin.flush()
    wait_for_line(attack, "done", timeout=20)
    more = pub.ok("stream_pub", subject="data.y", count=500, timeout=60)  # still flowing

    for id_, batch in (("s", sent), ("t", more)):
        got = sub.ok("stream_wait", id=id_, count=500, wait=30, timeout=60)
        assert got["count"] == 500 and got["in_order"] and got["sha"] == batch["sha"]
    assert sub.ok("peers")["peers"] == ["a"]  # the intruder was never admitted
    assert intruder.ok("peers")["peers"] == []
    dropped = {
        r: sub.ok("metric", name="insane_dropped", reason=r)["value"]
        for r in ("replay", "unknown_key", "unauthenticated", "bad_auth")
    }
    assert dropped["replay"] > 0, dropped
    assert dropped["unknown_key"] > 0, dropped  # the intruder's and the forgeries
    assert dropped["unauthenticated"] + dropped["bad_auth"] > 0, dropped  # the garbage
