"""Tests of the multi-host test harness (tests/netns.py and the fixtures in conftest.py).

Every packet here goes between namespaces these tests create, never out of the machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import netns
import pytest
from netns import Host, Lan, wait_exit, wait_for_line

GROUP = "239.255.73.78"
PORT = 7446

# argv: group port interface-ip timeout-seconds.  Prints "ready" once joined, then one of
# "got <payload> from <source-ip>" or "timeout".
MCAST_RECEIVER = """
import socket, sys
group, port, ifip, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((group, port))
mreq = socket.inet_aton(group) + socket.inet_aton(ifip)
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
s.settimeout(timeout)
print("ready", flush=True)
try:
    data, addr = s.recvfrom(2048)
except TimeoutError:
    print("timeout", flush=True)
else:
    print(f"got {data.decode()} from {addr[0]}", flush=True)
"""

# argv: group port interface-ip-or-empty payload.  TTL 1; IP_MULTICAST_IF unless ip is "".
MCAST_SENDER = """
import socket, sys
group, port, ifip, payload = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
if ifip:
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ifip))
s.sendto(payload.encode(), (group, port))
"""

# argv: bind-ip port.  Echoes one datagram, prefixed with "echo:".
UDP_ECHO_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(3)
print("ready", flush=True)
data, addr = s.recvfrom(2048)
s.sendto(b"echo:" + data, addr)
print(f"echoed to {addr[0]}", flush=True)
"""

# argv: server-ip port.  Prints the reply.
UDP_ECHO_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(b"ping", (sys.argv[1], int(sys.argv[2])))
print(s.recv(2048).decode())
"""


def start_receiver(host: Host, timeout: float = 3.0) -> subprocess.Popen[str]:
    proc = host.python(MCAST_RECEIVER, GROUP, str(PORT), host.ip, str(timeout))
    wait_for_line(proc, "ready")
    return proc


def send_multicast(host: Host, payload: str, *, set_if: bool = True) -> None:
    res = host.run_python(MCAST_SENDER, GROUP, str(PORT), host.ip if set_if else "", payload)
    assert res.returncode == 0, res.stderr


# --------------------------------------------------------------------------------------------
# Topology
# --------------------------------------------------------------------------------------------


def test_hosts_reach_each_other(netns_pair: Lan) -> None:
    for client, server in (netns_pair[0], netns_pair[1]), (netns_pair[1], netns_pair[0]):
        srv = server.python(UDP_ECHO_SERVER, server.ip, "7447")
        wait_for_line(srv, "ready")
        res = client.run_python(UDP_ECHO_CLIENT, server.ip, "7447")
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == "echo:ping"
        assert wait_for_line(srv, re.compile("^echoed")) == f"echoed to {client.ip}"
        wait_exit(srv)
        if shutil.which("ping"):
            assert client.run(["ping", "-c1", "-W1", server.ip]).returncode == 0


def test_hosts_are_wired_as_documented(netns_pair: Lan) -> None:
    a, b = netns_pair
    assert netns_pair.switch is None
    assert a.ip.rsplit(".", 1)[0] == b.ip.rsplit(".", 1)[0]
    assert a.ip.startswith("10.77.") and a.ip.endswith(".1") and b.ip.endswith(".2")
    for h in a, b:
        assert len(h.name) <= 15 and h.name.startswith(netns.PREFIX)
        links = h.run(["ip", "-o", "link"], check=True).stdout
        names = sorted(re.findall(r"^\d+: ([^:@]+)", links, re.M))
        assert names == sorted(["lo", h.ifname])
        for line in links.splitlines():
            assert (",UP" in line and "MULTICAST" in line.split(">")[0]) or "LOOPBACK" in line
        routes = h.run(["ip", "route"], check=True).stdout
        assert "224.0.0.0/4 dev " + h.ifname in routes
        assert "default" not in routes
        # No route out of the LAN: nothing can leave for another address.  (A route lookup
        # only; nothing is sent.)
        assert h.run(["ip", "route", "get", "192.0.2.1"]).returncode != 0
        # IPv6 off by default: the wire carries only what the tests send.
        assert h.run(["ip", "-6", "addr"], check=True).stdout.strip() == ""


def test_three_hosts_share_a_bridge(netns_lan3: Lan) -> None:
    sw = netns_lan3.switch
    assert sw is not None
    ports = sw.run(["ip", "-o", "link", "show", "master", "br0"], check=True).stdout
    assert sorted(re.findall(r"^\d+: (port\d+)@", ports, re.M)) == ["port0", "port1", "port2"]
    a, b, c = netns_lan3
    assert len({a.ip, b.ip, c.ip}) == 3


def test_context_managers_and_options(netns_lan: Callable[..., Lan]) -> None:
    with netns.two_hosts(ipv6=True) as (a, b):
        assert "inet6 fe80::" in a.run(["ip", "-6", "addr", "show", a.ifname]).stdout
        names = [a.name, b.name]
    assert _gone(names)
    bridged = netns_lan(2, bridge=True)
    assert bridged.switch is not None and len(bridged) == 2
    rx = start_receiver(bridged[1])
    send_multicast(bridged[0], "via-switch")
    assert wait_for_line(rx, re.compile("^(got|timeout)")) == f"got via-switch from {bridged[0].ip}"


# --------------------------------------------------------------------------------------------
# Multicast
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("set_if", [True, False], ids=["IP_MULTICAST_IF", "route-224"])
def test_multicast_crosses_veth(netns_pair: Lan, set_if: bool) -> None:
    a, b = netns_pair
    rx = start_receiver(b)
    send_multicast(a, f"hello-from-{a.name}", set_if=set_if)
    line = wait_for_line(rx, re.compile("^(got|timeout)"))
    assert line == f"got hello-from-{a.name} from {a.ip}"
    wait_exit(rx)


def test_bridge_carries_multicast_to_every_other_host(netns_lan3: Lan) -> None:
    a, b, c = netns_lan3
    receivers = [start_receiver(b), start_receiver(c)]
    send_multicast(a, "to-all")
    for rx in receivers:
        assert wait_for_line(rx, re.compile("^(got|timeout)")) == f"got to-all from {a.ip}"
        wait_exit(rx)


def test_lans_are_isolated(netns_lan: Callable[..., Lan]) -> None:
    # Same subnet, same addresses, same group: still two separate wires.
    one, two = netns_lan(2, subnet=99), netns_lan(2, subnet=99)
    assert one[0].ip == two[0].ip
    rx_one, rx_two = start_receiver(one[1], 3.0), start_receiver(two[1], 0.5)
    send_multicast(one[0], "only-lan-one")
    assert wait_for_line(rx_one, re.compile("^(got|timeout)")).startswith("got only-lan-one")
    assert wait_for_line(rx_two, re.compile("^(got|timeout)")) == "timeout"


# --------------------------------------------------------------------------------------------
# Cleanup and helpers
# --------------------------------------------------------------------------------------------


def _gone(names: list[str]) -> bool:
    listed = set(netns.leftover_namespaces(""))
    return not (listed & set(names)) and not any(Path("/run/netns", n).exists() for n in names)


def test_namespaces_and_processes_are_gone_after_exit() -> None:
    netns.require_privileges("cleanup test")
    with Lan(3) as lan:
        names = [ns.name for ns in lan.namespaces]
        assert len(names) == 4 and not _gone(names)
        tracked = lan[0].python("import time; print('ready'); time.sleep(60)")
        wait_for_line(tracked, "ready")
        # Started outside the helpers: cleanup finds it with `ip netns pids`.
        stray = subprocess.Popen(lan[1].wrap(["sleep", "60"]))
        deadline = time.monotonic() + 3
        while not lan[1].pids():  # `ip netns exec` enters the namespace after the fork
            assert time.monotonic() < deadline, "the stray process never entered the namespace"
            time.sleep(0.01)
    assert _gone(names)
    assert tracked.poll() is not None
    assert stray.wait(2) != 0


def test_cleanup_happens_when_the_test_body_fails() -> None:
    netns.require_privileges("cleanup test")
    names: list[str] = []
    with pytest.raises(RuntimeError, match="boom"), Lan(2) as lan:
        names = [ns.name for ns in lan.namespaces]
        lan[0].python("import time; time.sleep(60)")
        raise RuntimeError("boom")
    assert names and _gone(names)


def test_wait_for_line_reports_what_the_child_said(netns_pair: Lan) -> None:
    a, _ = netns_pair
    proc = a.python("import sys; print('one'); print('oops', file=sys.stderr); sys.exit(3)")
    with pytest.raises(netns.WaitError) as err:
        wait_for_line(proc, "ready", timeout=3)
    msg = str(err.value)
    assert "stdout closed" in msg and "status 3" in msg and "one" in msg and "oops" in msg
    hang = a.python("import time; print('x'); time.sleep(60)")
    with pytest.raises(netns.WaitError, match=r"within 0\.2 s"):
        wait_for_line(hang, "ready", timeout=0.2)
    with pytest.raises(netns.WaitError, match="did not exit"):
        wait_exit(hang, timeout=0.1)


def test_python_children_see_the_repository(netns_pair: Lan) -> None:
    # From "/", only PYTHONPATH can make the repository importable.
    res = netns_pair[0].run_python("import tests.netns as m; print(m.REPO_ROOT)", cwd="/")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(netns.REPO_ROOT)


def test_disable_tx_offload(netns_pair: Lan) -> None:
    a, b = netns_pair
    assert a.tx_checksum_offload() and b.tx_checksum_offload()  # veth's default
    a.disable_tx_offload()
    assert not a.tx_checksum_offload()
    assert b.tx_checksum_offload()


# --------------------------------------------------------------------------------------------
# Strict skipping: these run anywhere, with the conditions faked
# --------------------------------------------------------------------------------------------


def outcome_of(call: Callable[[], object]) -> BaseException:
    """The skip or fail exception ``call`` raised.  Catching both (rather than
    ``pytest.raises`` of one) keeps a wrong outcome from escaping as the test's own skip."""
    try:
        call()
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        return exc
    raise AssertionError("neither skipped nor failed")


@pytest.fixture
def not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)


@pytest.fixture
def root_without_netns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(netns, "_probe_netns", lambda: "mount --make-shared /run/netns failed")


SKIP, FAIL = pytest.skip.Exception, pytest.fail.Exception


@pytest.mark.parametrize("value", [None, "0", ""])
@pytest.mark.usefixtures("not_root")
def test_not_root_skips_outside_ci(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv(netns.STRICT_ENV, raising=False)
    else:
        monkeypatch.setenv(netns.STRICT_ENV, value)
    assert netns.missing_privileges() is not None
    exc = outcome_of(lambda: netns.require_privileges("my feature"))
    assert type(exc) is SKIP
    assert str(exc).startswith("my feature: needs root to create network namespaces")


@pytest.mark.usefixtures("not_root")
def test_not_root_fails_in_strict_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(netns.STRICT_ENV, "1")
    exc = outcome_of(lambda: netns.require_privileges("my feature"))
    assert type(exc) is FAIL
    assert re.search(r"^my feature: needs root.*INSANE_CI_STRICT=1", str(exc))


@pytest.mark.usefixtures("root_without_netns")
@pytest.mark.parametrize(("strict", "expected"), [("", SKIP), ("1", FAIL)], ids=["lax", "strict"])
def test_namespaces_unavailable(
    monkeypatch: pytest.MonkeyPatch, strict: str, expected: type[BaseException]
) -> None:
    monkeypatch.setenv(netns.STRICT_ENV, strict)
    exc = outcome_of(lambda: netns.require_privileges("x"))
    assert type(exc) is expected
    assert re.search(r"cannot create network namespaces.*make-shared", str(exc))


@pytest.mark.parametrize(("strict", "expected"), [("", SKIP), ("1", FAIL)], ids=["lax", "strict"])
def test_strict_skip(
    monkeypatch: pytest.MonkeyPatch, strict: str, expected: type[BaseException]
) -> None:
    monkeypatch.setenv(netns.STRICT_ENV, strict)
    exc = outcome_of(lambda: netns.strict_skip("needs AF_XDP"))
    assert type(exc) is expected and "needs AF_XDP" in str(exc)


def test_missing_ip_command_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv(netns.STRICT_ENV, raising=False)
    exc = outcome_of(lambda: netns.require_privileges("x"))
    assert type(exc) is SKIP and "iproute2" in str(exc)


def test_nothing_missing_means_no_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(netns, "_probe_netns", lambda: None)
    monkeypatch.setenv(netns.STRICT_ENV, "1")
    netns.require_privileges("x")  # returns: neither skip nor fail


@pytest.mark.usefixtures("not_root")
def test_privileged_marker_uses_the_same_policy(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    conftest_path = str(Path(__file__).with_name("conftest.py"))
    plugins = request.config.pluginmanager.get_plugins()
    conftest = next(p for p in plugins if getattr(p, "__file__", None) == conftest_path)
    request.node.add_marker(pytest.mark.privileged)
    monkeypatch.setenv(netns.STRICT_ENV, "1")
    exc = outcome_of(lambda: conftest.pytest_runtest_setup(request.node))
    assert type(exc) is FAIL and "needs root" in str(exc)
    monkeypatch.delenv(netns.STRICT_ENV)
    exc = outcome_of(lambda: conftest.pytest_runtest_setup(request.node))
    assert type(exc) is SKIP and "needs root" in str(exc)
