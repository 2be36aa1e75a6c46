"""The fault injector does what it says: plain UDP from host a to host b through the middle
namespace's relay loses, duplicates, reorders and delays as asked, and only as asked; ARP and
ICMP pass clean; the relay's counters match what the receiver saw; everything is torn down."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable

import pytest
from fault_relay import check_params
from faults import FaultyLink, Injector, RelayError, faulty_link
from netns import Host, leftover_namespaces, wait_exit, wait_for_line

Pair = Callable[..., tuple[Host, Host, Injector]]

PORT = 9400

# Receives numbered datagrams until none came for FIRST seconds (before the first) or IDLE
# seconds (after it), then prints the sequence numbers in arrival order.
RECEIVER = """
import json, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE
s.bind((sys.argv[1], int(sys.argv[2])))
idle, first = float(sys.argv[3]), float(sys.argv[4])
print("ready", flush=True)
s.settimeout(first)
seqs = []
try:
    while True:
        data = s.recv(65536)
        seqs.append(struct.unpack_from("!I", data)[0])
        s.settimeout(idle)
except socket.timeout:
    pass
print("got", json.dumps(seqs), flush=True)
"""

# Sends N numbered datagrams of SIZE bytes, paced in bursts of 16 (about 30k/s at most).
SENDER = """
import socket, struct, sys, time
dst, n, size = (sys.argv[1], int(sys.argv[2])), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
pad = b"." * max(0, size - 4)
for i in range(n):
    s.sendto(struct.pack("!I", i) + pad, dst)
    if i % 16 == 15:
        time.sleep(0.0005)
"""

# UDP echo server, and a client measuring COUNT sequential round trips (prints the median, ms).
ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
"""
RTT = """
import socket, statistics, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
s.settimeout(1.0)
rtts = []
for i in range(int(sys.argv[3])):
    t = time.perf_counter()
    s.send(struct.pack("!I", i))
    while struct.unpack("!I", s.recv(64))[0] != i:
        pass
    rtts.append((time.perf_counter() - t) * 1000)
print(statistics.median(rtts))
"""

# ICMP echo over a raw socket (no ping binary needed): prints how many of COUNT were answered.
PING = """
import os, socket, struct, sys, time
def csum(b):
    if len(b) % 2: b += b"\\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b)); t = (t >> 16) + (t & 0xFFFF)
    return ~(t + (t >> 16)) & 0xFFFF
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(0.3)
ident, ok = os.getpid() & 0xFFFF, 0
for seq in range(int(sys.argv[2])):
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"insane-ping"
    s.sendto(body[:2] + struct.pack("!H", csum(body)) + body[4:], (sys.argv[1], 0))
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        try:
            pkt = s.recv(2048)
        except socket.timeout:
            break
        t, _, _, i, q = struct.unpack_from("!BBHHH", pkt, (pkt[0] & 15) * 4)
        if t == 0 and i == ident and q == seq:
            ok += 1
            break
print(ok)
"""

# Sends 64-byte datagrams as fast as it can for SECONDS; prints how many.
BLAST = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dst, end, n = (sys.argv[1], int(sys.argv[2])), time.monotonic() + float(sys.argv[3]), 0
while time.monotonic() < end:
    for _ in range(64):
        try:
            s.sendto(b"x" * 64, dst)
            n += 1
        except OSError:
            pass
print(n)
"""
SINK = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
time.sleep(30)
"""

# Captures IPv4/UDP frames to PORT on IFACE and checks each one's UDP checksum.
CSUM_CAPTURE = """
import socket, struct, sys
def fold(b):
    if len(b) % 2: b += b"\\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16: t = (t >> 16) + (t & 0xFFFF)
    return t
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind((sys.argv[1], 0x0800))
s.settimeout(5.0)
print("ready", flush=True)
good = bad = 0
try:
    while good + bad < int(sys.argv[3]):
        f = s.recv(65536)[14:]
        ihl = (f[0] & 15) * 4
        if f[9] != 17 or struct.unpack_from("!H", f, ihl + 2)[0] != int(sys.argv[2]):
            continue
        udp = f[ihl:struct.unpack_from("!H", f, 2)[0]]
        pseudo = f[12:20] + struct.pack("!BBH", 0, 17, len(udp))
        if fold(pseudo + udp) == 0xFFFF: good += 1
        else: bad += 1
        s.settimeout(0.5)
except socket.timeout:
    pass
print("checked", good, bad, flush=True)
"""


def transfer(
    a: Host,
    b: Host,
    n: int,
    *,
    size: int = 64,
    idle: float = 0.3,
    first: float = 5.0,
    port: int = PORT,
) -> list[int]:
    """Send ``n`` numbered datagrams from a to b; the sequence numbers b got, in order.

    When none may arrive, pass a short ``first`` (how long b waits for the first one)."""
    rx = b.python(RECEIVER, b.ip, str(port), str(idle), str(first))
    wait_for_line(rx, "ready")
    a.run_python(SENDER, b.ip, str(port), str(n), str(size), check=True, timeout=20)
    line = wait_for_line(rx, re.compile(r"^got "), timeout=15)
    wait_exit(rx)
    seqs: list[int] = json.loads(line[4:])
    return seqs


def udp_stat(host: Host, field: str) -> int:
    """A counter of the Udp line of /proc/net/snmp inside ``host``."""
    lines = [ln.split() for ln in host.run(["cat", "/proc/net/snmp"]).stdout.splitlines()]
    head, values = (ln for ln in lines if ln[0] == "Udp:")
    return int(values[head.index(field)])


def ping(a: Host, b: Host, count: int) -> int:
    """ICMP echo requests from a to b; how many were answered."""
    return int(a.run_python(PING, b.ip, str(count), check=True).stdout)


def median_rtt(a: Host, b: Host, count: int = 60) -> float:
    return float(a.run_python(RTT, b.ip, str(PORT), str(count), check=True).stdout)


def prime(a: Host, b: Host, inj: Injector) -> None:
    """Resolve neighbours (ICMP passes clean), let the wire go quiet, zero the counters."""
    assert ping(a, b, 1) == 1
    inj.wait_idle()
    inj.zero()


def late_arrivals(seqs: list[int]) -> int:
    """How many datagrams arrived after one with a higher sequence number."""
    late, top = 0, -1
    for s in seqs:
        if s < top:
            late += 1
        top = max(top, s)
    return late


# --------------------------------------------------------------------------------------------
# Without privileges
# --------------------------------------------------------------------------------------------


def test_parameters_are_checked() -> None:
    assert check_params({"loss": 1, "delay_ms": "2.5"}) == {"loss": 1.0, "delay_ms": 2.5}
    for bad in ({"loss": 1.5}, {"dup": -0.1}, {"delay_ms": -1}, {"filter": "tcp"}, {"lose": 0}):
        with pytest.raises(ValueError):
            check_params(bad)
    with pytest.raises(ValueError):
        FaultyLink(loss=2.0)


# --------------------------------------------------------------------------------------------
# Faults on plain UDP
# --------------------------------------------------------------------------------------------


@pytest.mark.privileged
def test_clean_link_loses_nothing(faulty_pair: Pair) -> None:
    a, b, inj = faulty_pair()
    prime(a, b, inj)
    n = 3000
    # 1400 bytes: full-size frames; 3000-byte datagrams are fragmented, fragments relayed too.
    assert transfer(a, b, n, size=1400) == list(range(n))
    assert transfer(a, b, 300, size=3000, port=PORT + 1) == list(range(300))
    st = inj.wait_idle()
    inj.assert_healthy(st)
    ab = st["ab"]
    assert ab["rx"] == ab["tx"] == n + 3 * 300, st  # 3000 bytes over a 1500 MTU: 3 fragments
    assert ab["dropped"] == ab["duplicated"] == ab["reordered"] == ab["delayed"] == 0
    assert udp_stat(b, "InErrors") == 0


@pytest.mark.privileged
def test_loss(faulty_pair: Pair) -> None:
    a, b, inj = faulty_pair(loss=0.1, seed=11)
    prime(a, b, inj)
    n = 4000
    got = transfer(a, b, n)
    st = inj.wait_idle()
    inj.assert_healthy(st)
    assert udp_stat(b, "RcvbufErrors") == 0
    assert got == sorted(set(got)), "loss alone neither duplicates nor reorders"
    lost = n - len(got)
    assert 0.07 * n < lost < 0.13 * n, st
    assert st["ab"]["dropped"] == lost, f"the relay dropped exactly what b missed: {st}"
    assert st["ab"]["rx"] == n

    # The same seed drops the same datagrams again.
    missing = set(range(n)) - set(got)
    inj.set(seed=11)
    again = transfer(a, b, n, port=PORT + 1)
    assert set(range(n)) - set(again) == missing


@pytest.mark.privileged
def test_duplication(faulty_pair: Pair) -> None:
    a, b, inj = faulty_pair(dup=0.05, seed=12)
    prime(a, b, inj)
    n = 4000
    got = transfer(a, b, n)
    st = inj.wait_idle()
    inj.assert_healthy(st)
    counts = Counter(got)
    assert set(counts) == set(range(n)), "nothing lost"
    dups = sum(c - 1 for c in counts.values())
    assert max(counts.values()) == 2
    assert 0.03 * n < dups < 0.07 * n, st
    assert st["ab"]["duplicated"] == dups, st
    assert st["ab"]["tx"] == n + dups
    # A copy follows its original at once.
    where: dict[int, list[int]] = {}
    for i, seq in enumerate(got):
        where.setdefault(seq, []).append(i)
    assert all(w[1] == w[0] + 1 for w in where.values() if len(w) == 2)


@pytest.mark.privileged
def test_reordering(faulty_pair: Pair) -> None:
    a, b, inj = faulty_pair(reorder=0.25, seed=13)
    prime(a, b, inj)
    n = 4000
    got = transfer(a, b, n)
    st = inj.wait_idle()
    inj.assert_healthy(st)
    assert sorted(got) == list(range(n)), "every datagram arrives exactly once"
    late = late_arrivals(got)
    reordered = st["ab"]["reordered"]
    assert 0.2 * n < reordered < 0.3 * n, st
    # Each held datagram is overtaken by the next one, unless nothing followed it within
    # reorder_ms (the pacing keeps gaps far shorter, save at the very end).
    assert 0.97 * reordered - 2 <= late <= reordered, (late, st)


@pytest.mark.privileged
def test_delay_adds_to_the_round_trip(faulty_pair: Pair) -> None:
    a, b, inj = faulty_pair()
    echo = b.python(ECHO, b.ip, str(PORT))
    wait_for_line(echo, "ready")
    median_rtt(a, b, 10)  # neighbours resolved, code paths warm
    base = median_rtt(a, b)
    inj.set(delay_ms=1.0)
    both = median_rtt(a, b)
    inj.set("ba", delay_ms=0.0)
    one = median_rtt(a, b)
    st = inj.stats()
    assert 1.6 < both - base < 3.0, (base, both)
    assert 0.6 < one - base < 1.6, (base, one)
    assert st["ab"]["delayed"] >= 120 and st["ba"]["delayed"] >= 60
    assert st["ba"]["params"]["delay_ms"] == 0.0 and st["ab"]["params"]["delay_ms"] == 1.0


@pytest.mark.privileged
def test_all_faults_at_once_with_jitter(faulty_pair: Pair) -> None:
    a, b, inj = faulty_pair(loss=0.1, dup=0.05, reorder=0.25, delay_ms=1.0, jitter_ms=0.5)
    prime(a, b, inj)
    n = 3000
    got = transfer(a, b, n)
    st = inj.wait_idle()
    inj.assert_healthy(st)
    ab = st["ab"]
    assert ab["delayed"] == n - ab["dropped"], st
    assert len(got) == n - ab["dropped"] + ab["duplicated"], st
    assert late_arrivals(got) > 0.15 * n, st
    assert ab["pending"] == 0


@pytest.mark.privileged
def test_relay_keeps_up(faulty_pair: Pair) -> None:
    """A sender in a blasts for a second; the relay, with faults on, forwards tens of
    thousands of frames a second (about 120k/s on a 2-core VM), and counts what it could
    not read in time rather than losing it silently."""
    a, b, inj = faulty_pair(loss=0.1, dup=0.05, reorder=0.25)
    sink = b.python(SINK, b.ip, str(PORT))  # never reads: b drops, and answers nothing
    wait_for_line(sink, "ready")
    prime(a, b, inj)
    seconds = 1.0
    sent = int(a.run_python(BLAST, b.ip, str(PORT), str(seconds), check=True).stdout)
    st = inj.wait_idle(timeout=10)
    ab = st["ab"]
    rate = ab["rx"] / seconds
    print(f"relay: offered {sent / seconds:.0f} frames/s, relayed {rate:.0f} frames/s")
    # Fast, or at least not the bottleneck (on a loaded machine the sender may be slower).
    assert rate > 30_000 or ab["kernel_drops"] == 0, st
    assert ab["rx"] + ab["kernel_drops"] == sent, st
    assert ab["tx"] == ab["rx"] - ab["dropped"] + ab["duplicated"], st


# --------------------------------------------------------------------------------------------
# What passes clean, run-time changes, checksums, cleanup
# --------------------------------------------------------------------------------------------


@pytest.mark.privileged
def test_arp_and_icmp_pass_clean_while_udp_is_cut(faulty_pair: Pair) -> None:
    a, b, inj = faulty_pair(loss=1.0)
    assert ping(a, b, 5) == 5, "ARP resolved and ICMP answered through a UDP-dropping wire"
    assert transfer(a, b, 50, first=1.0) == []
    st = inj.wait_idle()
    assert st["ab"]["dropped"] == 50
    assert st["ab"]["clean"] >= 6 and st["ba"]["clean"] >= 6  # ARP + 5 ICMP each way

    inj.set(filter="all")  # now ICMP is cut as well
    assert ping(a, b, 2) == 0
    inj.heal()  # and the network heals
    assert ping(a, b, 2) == 2
    assert transfer(a, b, 50) == list(range(50))


@pytest.mark.privileged
def test_per_direction_parameters(faulty_pair: Pair) -> None:
    a, b, inj = faulty_pair(ba={"loss": 1.0})
    prime(a, b, inj)
    assert transfer(a, b, 100) == list(range(100))
    assert transfer(b, a, 100, first=1.0) == []
    st = inj.wait_idle()
    assert st["ab"]["dropped"] == 0 and st["ba"]["dropped"] == 100


@pytest.mark.privileged
def test_receiver_gets_final_checksums_from_an_offloading_sender(faulty_pair: Pair) -> None:
    a, b, inj = faulty_pair(dup=0.1, delay_ms=0.5)
    assert a.tx_checksum_offload(), "a sends partial checksums (veth's default)"
    cap = b.python(CSUM_CAPTURE, b.ifname, str(PORT), "200")
    wait_for_line(cap, "ready")
    got = transfer(a, b, 150, size=200)
    line = wait_for_line(cap, re.compile(r"^checked "), timeout=5)
    good, bad = map(int, line.split()[1:])
    assert bad == 0 and good == len(got) > 150
    assert udp_stat(b, "InCsumErrors") == 0
    assert all(inj.offloads_off["port0"].values()) and all(inj.offloads_off["port1"].values())


@pytest.mark.privileged
def test_cleanup_leaves_nothing() -> None:
    with faulty_link(loss=0.5) as link:
        names = [ns.name for ns in link.namespaces]
        assert set(names) <= set(leftover_namespaces())
        relay = link.injector.proc
        control = link.injector.control_path
        assert relay is not None and os.path.exists(control)
        a, b = link
        transfer(a, b, 20, idle=0.2)
        link.injector.wait_idle()
    assert not set(names) & set(leftover_namespaces())
    assert relay.poll() is not None and not os.path.exists(control)
    final = link.injector.stats()  # the counters the relay printed on SIGTERM
    assert final["ab"]["rx"] >= 20 and final["ab"]["dropped"] > 0
    with pytest.raises(RelayError):
        link.injector.set(loss=0.0)
