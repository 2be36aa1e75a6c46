"""The AF_XDP transport between network namespaces joined by veth: pub/sub both ways, to and
from a kernel-UDP peer, the route a `fast` channel takes, the host's other traffic while the
program is attached, nothing left attached after close or SIGKILL, and reliable ordered
delivery through the fault injector."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agentctl import AgentProcess
from faults import Injector
from netns import Host, Lan, output_of, strict_skip, wait_exit, wait_for_line
from peer_checks import exchange, metric

from insane.transports import frames

pytestmark = pytest.mark.privileged

REPO = Path(__file__).resolve().parent.parent
Pair = Callable[..., tuple[Host, Host, Injector]]
CHANNELS = {
    "fast.>": {"qos": ["fast", "reliable", "ordered"]},
    "burst.>": {"qos": ["fast", "best_effort"]},
    "plain.>": {},
}
VOLUME = int(os.environ.get("INSANE_FAULT_MESSAGES", "100000")) // 4


@pytest.fixture(autouse=True)
def _xdp_built() -> None:
    try:
        import insane._xdp  # type: ignore[import-not-found]  # noqa: F401
    except ImportError as exc:
        strict_skip(f"insane._xdp is not built ({exc}): install libxdp-dev libbpf-dev clang")
    from insane.transports.xdp import program_path

    if not os.path.exists(program_path()):
        strict_skip("the XDP program is not built (clang)")


def config(host: Host, domain: int, xdp: bool = True) -> dict[str, Any]:
    transports: dict[str, Any] = {"udp": {"bind": host.ip}}
    if xdp:
        transports["xdp"] = {"interface": host.ifname}
    return {
        "domain": domain,
        "transports": transports,
        "discovery": {"host_registry": False},
        "channels": CHANNELS,
    }


def start(
    agents: list[AgentProcess], host: Host, name: str, domain: int, xdp: bool = True
) -> AgentProcess:
    a = AgentProcess(cmd_prefix=host.wrap([]))
    agents.append(a)
    a.ok("connect", config=config(host, domain, xdp), name=name, timeout=30)
    return a


def pair(
    agents: list[AgentProcess], a: Host, b: Host, xdp_b: bool = True
) -> tuple[AgentProcess, AgentProcess]:
    domain = random.randrange(1, 2**32)
    left = start(agents, a, "left", domain)
    right = start(agents, b, "right", domain, xdp=xdp_b)
    left.ok("wait_peers", names=["right"], timeout=30)
    right.ok("wait_peers", names=["left"], timeout=30)
    return left, right


def xdp_attached(host: Host) -> bool:
    out = host.run(["ip", "-j", "link", "show", "dev", host.ifname])
    return "xdp" in json.loads(out.stdout)[0]




def test_pubsub_both_ways_over_xdp(netns_pair: Lan, agents: list[AgentProcess]) -> None:
    """Both hosts on AF_XDP: a `fast` channel's messages, 64 B to 1 MiB, go and come over
    XDP, whole and in order, and the metrics say transport="xdp"."""
    a, b = netns_pair
    left, right = pair(agents, a, b)
    assert left.ok("route", subject="fast.x")["transport"] == "xdp"
    exchange(left, right, "fast.ab", 3000)
    exchange(right, left, "fast.ba", 3000)
    for agent in (left, right):
        assert metric(agent, "insane_messages_sent", transport="xdp", channel="fast.>") >= 3000
        assert metric(agent, "insane_messages_received", transport="xdp") >= 3000
        assert metric(agent, "insane_datagrams_received", transport="xdp") > 0
        assert metric(agent, "insane_datagrams_sent", transport="xdp") > 0
        assert agent.ok("errors")["errors"] == []
    # a channel without `fast` stays on kernel UDP, and still arrives
    exchange(left, right, "plain.x", 500)
    assert metric(left, "insane_messages_sent", transport="udp", channel="plain.>") >= 500


def test_a_publisher_closing_at_once_loses_nothing(
    netns_pair: Lan, agents: list[AgentProcess]
) -> None:
    """Close waits for the TX ring: a burst published on a best-effort XDP channel just
    before close() arrives whole (the kernel sends a bounded batch per wake-up in copy mode,
    so frames still on the ring at close would be lost)."""
    a, b = netns_pair
    left, right = pair(agents, a, b)
    right.ok("stream_sub", subject="burst.x", id="s")
    count = 20000
    sent = left.ok("stream_pub", subject="burst.x", count=count, timeout=120)
    left.ok("close")
    got = right.ok("stream_wait", id="s", count=count, wait=20, timeout=40)
    assert got["count"] == count and got["sha"] == sent["sha"], got


def test_xdp_to_kernel_udp_and_back(netns_pair: Lan, agents: list[AgentProcess]) -> None:
    """One host on AF_XDP, the other on kernel UDP only: the same wire, both directions."""
    a, b = netns_pair
    b.disable_tx_offload()  # so the frames b's kernel sends carry complete checksums
    left, right = pair(agents, a, b, xdp_b=False)
    assert left.ok("route", subject="fast.x")["transport"] == "xdp"
    exchange(left, right, "fast.ab", 2000)
    exchange(right, left, "fast.ba", 2000)
    assert metric(left, "insane_messages_sent", transport="xdp") >= 2000
    assert metric(left, "insane_messages_received", transport="xdp") >= 2000  # from b's kernel
    assert metric(right, "insane_messages_received", transport="udp") >= 2000
    assert metric(right, "insane_datagrams_sent", transport="xdp") == 0


def test_kernel_peer_with_partial_checksums_is_accepted(
    netns_pair: Lan, agents: list[AgentProcess]
) -> None:
    """veth leaves checksums of kernel-sent UDP to an offload that never happens; the XDP
    receiver accepts that form (and only it) and counts no bad checksums."""
    a, b = netns_pair
    assert b.tx_checksum_offload()
    left, right = pair(agents, a, b, xdp_b=False)
    exchange(right, left, "fast.ba", 1000)
    assert metric(left, "insane_dropped", transport="xdp", reason="bad_checksum") == 0


def test_qos_explain_and_doctor_in_the_namespace(netns_pair: Lan, tmp_path: Path) -> None:
    """`insane qos explain` says a `fast` channel's route is xdp; `insane doctor` says xdp is
    available there, and why not with the default loopback bind."""
    a, _b = netns_pair
    cfg = tmp_path / "insane.yaml"
    cfg.write_text(json.dumps(config(a, 1)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cli = [sys.executable, "-m", "insane.cli"]
    out = a.run([*cli, "qos", "explain", "-c", str(cfg), "fast.orders"], env=env)
    assert out.returncode == 0, out.stderr
    assert "route:      xdp" in out.stdout, out.stdout
    doctor = json.loads(a.run([*cli, "doctor", "--json", "-c", str(cfg)], env=env).stdout)
    assert doctor["transports"]["xdp"]["available"] is True, doctor["transports"]["xdp"]
    bad = tmp_path / "loopback.yaml"
    bad.write_text(json.dumps({"transports": {"xdp": {"interface": a.ifname}}}))
    doctor = json.loads(a.run([*cli, "doctor", "--json", "-c", str(bad)], env=env).stdout)
    assert "transports.udp.bind is 127.0.0.1" in doctor["transports"]["xdp"]["reason"]


TCP_SERVER = """
import socket, sys
s = socket.socket(); s.bind((sys.argv[1], 5555)); s.listen(); print("ready", flush=True)
c, _ = s.accept(); data = c.recv(100); c.sendall(data.upper()); c.close()
"""
TCP_CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], 5555), timeout=5); c.sendall(b"hello tcp")
print(c.recv(100).decode())
"""
ICMP_PING = """
import socket, struct, sys, os
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s & 0xffff) + (s >> 16)
    return ~(s + (s >> 16)) & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(2)
body = struct.pack("!BBHHH", 8, 0, 0, os.getpid() & 0xffff, 1) + b"insane-ping!"
s.sendto(body[:2] + struct.pack("!H", csum(body)) + body[4:], (sys.argv[1], 0))
while True:
    data, addr = s.recvfrom(2048)
    if addr[0] == sys.argv[1] and data[20] == 0:
        print("pong"); break
"""


def test_other_traffic_keeps_working_while_attached(
    netns_pair: Lan, agents: list[AgentProcess]
) -> None:
    """With INSANE's program on b's interface: ICMP echo, a TCP connection and UDP to another
    port all reach b's kernel, while the bus runs over XDP."""
    a, b = netns_pair
    left, right = pair(agents, a, b)
    assert xdp_attached(b)
    ping = a.run_python(ICMP_PING, b.ip)
    assert ping.stdout.strip() == "pong", ping.stderr
    server = b.python(TCP_SERVER, b.ip)
    wait_for_line(server, "ready")
    client = a.run_python(TCP_CLIENT, b.ip)
    assert client.stdout.strip() == "HELLO TCP", client.stderr
    wait_exit(server)
    echo = b.python(
        "import socket,sys\ns=socket.socket(2,2);s.bind((sys.argv[1],5556));print('ready',"
        "flush=True)\nd,p=s.recvfrom(100);s.sendto(d,p)",
        b.ip,
    )
    wait_for_line(echo, "ready")
    udp = a.run_python(
        "import socket,sys\ns=socket.socket(2,2);s.settimeout(3)\n"
        "s.sendto(b'udp ok',(sys.argv[1],5556));print(s.recv(100).decode())",
        b.ip,
    )
    assert udp.stdout.strip() == "udp ok", udp.stderr
    exchange(left, right, "fast.ab", 500)


def test_no_program_left_after_close_or_sigkill(
    netns_pair: Lan, agents: list[AgentProcess]
) -> None:
    """The program hangs on a BPF link owned by the process: a closed session detaches it,
    and so does a process killed with SIGKILL."""
    a, b = netns_pair
    domain = random.randrange(1, 2**32)
    for how in ("close", "sigkill"):
        peer = start(agents, b, f"b-{how}", domain)
        assert xdp_attached(b)
        if how == "close":
            peer.ok("close")
        else:
            os.killpg(peer.proc.pid, signal.SIGKILL)
            peer.proc.wait(5)
        deadline = time.monotonic() + 5
        while xdp_attached(b) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not xdp_attached(b), how
    ping = a.run_python(ICMP_PING, b.ip)
    assert ping.stdout.strip() == "pong", ping.stderr


def test_ordered_stream_over_xdp_through_a_faulty_wire(
    faulty_pair: Pair, agents: list[AgentProcess]
) -> None:
    """Issue 4's test over AF_XDP: 10% loss, 5% duplication, 25% reordering and 1 ms delay
    between two XDP hosts; a reliable ordered `fast` stream arrives whole and in order."""
    a, b, injector = faulty_pair(loss=0.1, dup=0.05, reorder=0.25, delay_ms=1.0, seed=21)
    left, right = pair(agents, a, b)
    assert left.ok("route", subject="fast.x")["transport"] == "xdp"
    right.ok("stream_sub", subject="fast.data", id="s")
    sent = left.ok("stream_pub", subject="fast.data", count=VOLUME, timeout=600)
    got = right.ok("stream_wait", id="s", count=VOLUME, wait=300, timeout=330)
    assert got["count"] == VOLUME and got["in_order"] and got["sha"] == sent["sha"], got
    wire = injector.stats()["ab"]
    assert wire["dropped"] > 0 and wire["reordered"] > 0
    assert metric(left, "insane_messages_sent", transport="xdp") >= VOLUME
    assert metric(right, "insane_datagrams_received", transport="xdp") > 0
    assert metric(left, "insane_retransmissions") > 0
    assert right.ok("errors")["errors"] == []



XDP_SIDE = """
import json, sys, time
from insane import _xdp
from insane.transports import frames, xdp
ifname, ip, peer_ip, peer_mac = sys.argv[1:5]
s = _xdp.Socket(ifname, 0, xdp.program_path(), [7000])
print("ready", flush=True)
got, deadline = [], time.time() + 3
while time.time() < deadline:
    got += [p.hex() for p, _a in s.recv(64)]
header = frames.udp_header(
    frames.interface_mac(ifname), frames.mac_bytes(peer_mac), (ip, 7000), (peer_ip, 7001)
)
for i in range(20):
    assert s.send([(b"from-c-%d" % i * (i + 1), header)]) == 1
    s.flush()
    time.sleep(0.01)
print(json.dumps({"got": got, "stats": s.stats(), "header": header.hex()}), flush=True)
s.close()
"""

WIRE_SIDE = """
import json, socket, struct, sys, time
from insane.transports import frames
ifname, ip, peer_ip, peer_mac = sys.argv[1:5]
raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
raw.bind((ifname, 0))
header = frames.udp_header(
    frames.interface_mac(ifname), frames.mac_bytes(peer_mac), (ip, 7001), (peer_ip, 7000)
)
def corrupt(frame, at, value):
    f = bytearray(frame); f[at] ^= value; return bytes(f)
cases = []
for i in range(8):
    good = frames.build_frame(header, b"case-%d-" % i + bytes(range(i * 7)), i)
    cases += [good, corrupt(good, 24, 0x40), corrupt(good, 40, 0x01), corrupt(good, 45, 0x80),
              good[:20] + b"\\x20\\x00" + good[22:], good[:16] + b"\\x05\\xdc" + good[18:]]
time.sleep(0.5)
for f in cases:
    raw.send(f)
captured, deadline = [], time.time() + 6
raw.settimeout(0.5)
while time.time() < deadline and len(captured) < 20:
    try:
        f = raw.recv(4096)
    except TimeoutError:
        continue
    if len(f) >= 42 and f[23] == 17 and struct.unpack("!H", f[34:36])[0] == 7000:
        captured.append(f.hex())
print(json.dumps({"cases": [c.hex() for c in cases], "captured": captured}), flush=True)
"""


def test_native_framing_matches_the_python_reference(netns_pair: Lan) -> None:
    """The C layer's frames are byte for byte what frames.build_frame makes (IP ids 0, 1,
    ...), and of frames injected on the wire, good and corrupted, it accepts exactly those
    that frames.parse_frame accepts (which the XDP program hands it), counting the others."""
    a, b = netns_pair
    mac_a = a.run(["cat", f"/sys/class/net/{a.ifname}/address"]).stdout.strip()
    mac_b = b.run(["cat", f"/sys/class/net/{b.ifname}/address"]).stdout.strip()
    xdp_side = b.python(XDP_SIDE, b.ifname, b.ip, a.ip, mac_a)
    wait_for_line(xdp_side, "ready", timeout=10)
    wire = a.run_python(WIRE_SIDE, a.ifname, a.ip, b.ip, mac_b, timeout=20)
    assert wire.returncode == 0, wire.stderr
    wait_exit(xdp_side, timeout=20)
    lines = [ln for ln in output_of(xdp_side).lines if ln.startswith("{")]
    assert lines, output_of(xdp_side).describe()
    seen = json.loads(lines[-1])
    sent = json.loads(wire.stdout.strip().splitlines()[-1])
    accepted = []
    for hexframe in sent["cases"]:
        frame = bytes.fromhex(hexframe)
        try:
            accepted.append(frames.parse_frame(frame).payload.hex())
        except frames.FrameError:
            pass
    assert len(accepted) == 8  # the good ones
    fragments = 8  # the MF-flagged ones go to the kernel, not to the socket
    assert sorted(seen["got"]) == sorted(accepted), (seen, accepted)
    refused = len(sent["cases"]) - len(accepted) - fragments
    assert seen["stats"]["bad_checksum"] + seen["stats"]["malformed"] == refused, seen["stats"]
    header = bytes.fromhex(seen["header"])
    expected = [frames.build_frame(header, b"from-c-%d" % i * (i + 1), i).hex() for i in range(20)]
    assert sent["captured"] == expected


NEXT_HOP = """
import sys
from insane.transports import frames
ifname, ip, peer = sys.argv[1:4]
print(frames.neighbour_mac(peer, ifname))
print(frames.arp_resolve(ifname, ip, peer).hex(":"))
print(frames.next_hop("10.77.99.7", ifname))
print(frames.resolve_mac("10.77.99.7", ifname, ip).hex(":"))
print(frames.next_hop("127.0.0.1", ifname))
"""


def test_next_hop_mac_from_the_neighbour_table_or_arp(netns_pair: Lan) -> None:
    """With the neighbour table empty, ARP on the wire finds the peer's MAC; a destination
    behind a gateway resolves to the gateway's MAC; one not through the interface to none."""
    a, b = netns_pair
    mac_b = b.run(["cat", f"/sys/class/net/{b.ifname}/address"]).stdout.strip()
    assert a.run(["ip", "neigh", "flush", "dev", a.ifname]).returncode == 0
    assert a.run(["ip", "route", "add", "10.77.99.0/24", "via", b.ip]).returncode == 0
    out = a.run_python(NEXT_HOP, a.ifname, a.ip, b.ip)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", mac_b, b.ip, mac_b, "None"], out.stdout
