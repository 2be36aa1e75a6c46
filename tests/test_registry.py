"""Transport probes for `insane doctor`: every transport answers, with its checks and a reason."""

from __future__ import annotations

import json

import pytest

from insane.cli.doctor import doctor_report, format_doctor
from insane.qos import load_config
from insane.transports import registry
from insane.transports.base import ALL_TRANSPORTS, TransportCapability
from insane.transports.registry import IMPLEMENTATIONS, probe, probe_all


def test_probe_all_returns_every_transport_in_order() -> None:
    caps = probe_all(load_config({}))
    assert tuple(caps) == ALL_TRANSPORTS
    for name, c in caps.items():
        assert isinstance(c, TransportCapability)
        assert c.name == name
        assert c.reason
        assert c.details["implemented"] == (name in IMPLEMENTATIONS)


def test_udp_is_available_on_loopback() -> None:
    udp = probe("udp", load_config({"transports": {"udp": {"bind": "127.0.0.1"}}}))
    assert udp.available, udp.reason
    assert udp.details["socket_bind"] is True
    assert udp.details["bind"] == "127.0.0.1"
    assert udp.consumption == frozenset({"low"})
    assert not udp.kernel_bypass


def test_udp_unavailable_when_the_address_is_not_local() -> None:
    udp = probe("udp", load_config({"transports": {"udp": {"bind": "192.0.2.123"}}}))
    assert not udp.available
    assert udp.details["socket_bind"] is False
    assert "192.0.2.123" in udp.reason


def test_xdp_checks_and_unset_interface() -> None:
    xdp = probe("xdp", load_config({}))
    checks = ("cap_net_admin", "cap_net_raw", "cap_bpf_or_sys_admin", "memlock")
    for check in (*checks, "kernel_af_xdp", "libxdp", "libbpf", "interface"):
        assert check in xdp.details
    assert "transports.xdp.interface is not set" in xdp.reason


def test_xdp_refuses_the_loopback_interface(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything else passing, loopback is still no place for AF_XDP: it says so."""
    caps = (1 << 12) | (1 << 13) | (1 << 24) | (1 << 39)  # NET_ADMIN, NET_RAW, SYS_RESOURCE, BPF
    monkeypatch.setattr(registry, "_effective_caps", lambda: caps)
    monkeypatch.setattr(registry, "_kernel_af_xdp", lambda: True)
    monkeypatch.setattr(registry, "_find_library", lambda name: f"lib{name}.so.1")
    monkeypatch.setattr(registry, "_importable", lambda name: True)
    monkeypatch.setattr(registry, "_xdp_program_present", lambda: True)
    xdp = probe("xdp", load_config({"transports": {"xdp": {"interface": "lo"}}}))
    assert xdp.details["interface_present"] is True
    assert not xdp.available
    assert xdp.reason == (
        "interface 'lo' is a loopback interface: AF_XDP needs an Ethernet one "
        "(traffic on this host takes kernel UDP)"
    )


def test_disabled_is_a_reason() -> None:
    cfg = load_config({"transports": {"dpdk": {"enabled": False}, "rdma": {"enabled": False}}})
    assert "disabled by transports.dpdk.enabled" in probe("dpdk", cfg).reason
    assert "disabled by transports.rdma.enabled" in probe("rdma", cfg).reason


def test_rdma_reports_devices_and_pyverbs() -> None:
    """(tests/test_rdma_probe.py checks the RDMA probe against device trees of its own.)"""
    rdma = probe("rdma", load_config({}))
    assert isinstance(rdma.details["devices"], list)
    assert isinstance(rdma.details["pyverbs"], bool)
    assert rdma.hardware_reliable
    assert rdma.consumption == frozenset({"poll", "low"})
    assert rdma.details["implemented"] is True


def test_dpdk_reports_hugepages() -> None:
    dpdk = probe("dpdk", load_config({}))
    assert isinstance(dpdk.details["hugepages_total"], int)
    assert "librte_eal" in dpdk.details


def test_a_failing_probe_still_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> int:
        raise RuntimeError("no /proc here")

    monkeypatch.setattr(registry, "_hugepages_total", boom)
    dpdk = probe("dpdk", load_config({}))
    assert not dpdk.available
    assert dpdk.reason == "probe failed: RuntimeError: no /proc here"


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown transport 'sctp'"):
        probe("sctp", load_config({}))


def test_transport_class_is_lazy_and_limited_to_implementations() -> None:
    assert set(IMPLEMENTATIONS) == {"udp", "xdp", "dpdk", "rdma"}
    assert IMPLEMENTATIONS["udp"] == "insane.transports.udp:UdpTransport"
    assert registry.transport_class("xdp").name == "xdp"
    assert registry.transport_class("dpdk").name == "dpdk"
    assert registry.transport_class("rdma").name == "rdma"
    with pytest.raises(KeyError):
        registry.transport_class("sctp")


def test_dpdk_without_a_device_says_what_to_write() -> None:
    """No EAL arguments: the probe does not start the EAL and says what a device looks like."""
    c = probe("dpdk", load_config({}))
    assert not c.available and c.details["implemented"] is True
    assert "transports.dpdk.eal_args is not set" in c.reason
    assert "eal" not in c.details  # the EAL was not started


def test_xdp_without_an_interface_says_so_and_is_implemented() -> None:
    c = probe("xdp", load_config({}))
    assert not c.available and c.kernel_bypass
    assert c.details["implemented"] is True
    assert "transports.xdp.interface is not set" in c.reason


def test_xdp_needs_the_kernel_socket_on_the_interface_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """AF_XDP sends as the session's kernel socket: with the default loopback bind it cannot
    work, and the probe says what to write instead."""
    monkeypatch.setattr(registry, "_is_loopback", lambda name: False)
    monkeypatch.setattr(registry, "_interface_ipv4", lambda name: "10.77.9.9")
    c = probe("xdp", load_config({"transports": {"xdp": {"interface": "lo"}}}))
    assert not c.available
    assert (
        "transports.udp.bind is 127.0.0.1: set it to 10.77.9.9 (the address of lo) or 0.0.0.0"
        in c.reason
    )


def test_doctor_report_shape_and_json() -> None:
    report = doctor_report(load_config({}))
    assert json.loads(json.dumps(report)) == report
    assert list(report) == ["config", "ok", "engine", "transports", "security"]
    assert report["ok"] is True and report["security"]["ok"] is True
    from insane.qos.engine import engine_name

    assert report["engine"]["ok"] is True and report["engine"]["name"] == engine_name()
    assert list(report["transports"]) == list(ALL_TRANSPORTS)
    for entry in report["transports"].values():
        assert set(entry) == {"available", "reason", "kernel_bypass", "checks"}
        assert isinstance(entry["available"], bool)
        assert isinstance(entry["reason"], str) and entry["reason"]
        assert isinstance(entry["kernel_bypass"], bool)
        assert isinstance(entry["checks"], dict)
    assert report["transports"]["udp"]["available"] is True
    assert report["transports"]["udp"]["kernel_bypass"] is False


def test_format_doctor() -> None:
    report = doctor_report(load_config({}))
    text = format_doctor(report)
    lines = text.splitlines()
    heads = [line for line in lines if not line.startswith(" ")]
    assert heads[0] == "configuration: <dict>"
    assert [h.split()[0] for h in heads[1:]] == ["engine", *ALL_TRANSPORTS, "security"]
    assert any(h.startswith("udp") and "available" in h for h in heads)
    assert any(line.strip() == "socket_bind: yes" for line in lines)
    assert "transports.xdp.interface is not set" in text


def test_xdp_privileges_come_from_effective_capabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    """Root with capabilities dropped (a container) is not enough: the reason names what is
    missing; a memlock limit that cannot be raised for the UMEM is a reason too."""
    monkeypatch.setattr(registry, "_effective_caps", lambda: 1 << 13)  # CAP_NET_RAW only
    monkeypatch.setattr(registry.resource, "getrlimit", lambda _r: (8 << 20, 8 << 20))
    xdp = probe("xdp", load_config({}))
    assert xdp.details["cap_net_admin"] is False and xdp.details["cap_net_raw"] is True
    assert (
        "needs CAP_NET_ADMIN (to attach the XDP program), CAP_BPF or CAP_SYS_ADMIN (to load it) "
        "and CAP_NET_RAW (for the AF_XDP socket); the effective capabilities lack "
        "CAP_NET_ADMIN, CAP_BPF (or CAP_SYS_ADMIN)"
    ) in xdp.reason
    assert (
        "RLIMIT_MEMLOCK is too low: 8 MiB (hard limit 8 MiB) for the UMEM's 64 MiB, and it "
        "cannot be raised without CAP_SYS_RESOURCE"
    ) in xdp.reason
    monkeypatch.setattr(registry, "_effective_caps", lambda: (1 << 13) | (1 << 14))  # IPC_LOCK
    assert probe("xdp", load_config({})).details["memlock"] == "not limited (CAP_IPC_LOCK)"
    dpdk = probe("dpdk", load_config({}))
    assert "the effective capabilities lack CAP_NET_ADMIN" in dpdk.reason
