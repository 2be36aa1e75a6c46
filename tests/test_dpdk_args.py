"""The EAL arguments INSANE derives from `transports.dpdk.eal_args` (pure: nothing started)."""

from __future__ import annotations

import os

import pytest

from insane.transports import dpdk


@pytest.fixture(autouse=True)
def _no_hugepages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dpdk, "hugepages_free", lambda: 0)


def test_defaults_for_a_small_machine_with_a_virtual_device() -> None:
    args = dpdk.eal_arguments(["--vdev=net_af_packet0,iface=eth1"])
    assert args[:3] == ["--no-huge", "-m", "512"]
    assert "--vdev=net_af_packet0,iface=eth1,framecnt=4096" in args
    assert f"--file-prefix=insane-{os.getpid()}" in args and "--no-shconf" in args
    assert "--no-pci" in args  # only virtual devices: the host's NICs are left alone
    assert "--no-telemetry" in args
    cpus = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    assert f"--lcores=0@({cpus})" in args  # the main thread keeps the process's CPUs


def test_what_the_user_says_wins() -> None:
    user = ["-a", "0000:3b:00.0", "-l", "2", "-m", "1024", "--file-prefix=app", "--no-huge"]
    args = dpdk.eal_arguments(user)
    assert args[: len(user)] == user
    assert not any(a.startswith("--lcores") for a in args)
    assert "--no-pci" not in args and "--no-shconf" not in args
    assert args.count("-m") == 1


def test_hugepages_present_means_no_no_huge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dpdk, "hugepages_free", lambda: 512)
    assert "--no-huge" not in dpdk.eal_arguments(["--vdev=net_tap0"])


def test_af_packet_ring_size_is_kept_when_given() -> None:
    args = dpdk.eal_arguments(["--vdev=net_af_packet0,iface=eth1,framecnt=1024"])
    assert "--vdev=net_af_packet0,iface=eth1,framecnt=1024" in args


def test_the_kernel_interface_of_a_virtual_device() -> None:
    assert dpdk.vdev_interface(["--no-huge", "--vdev=net_af_xdp0,iface=ens3,start_queue=0"]) == (
        "ens3"
    )
    assert dpdk.vdev_interface(["-a", "0000:3b:00.0"]) is None
