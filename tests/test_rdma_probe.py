"""What `insane doctor` says about RDMA, and the GID it picks, against device trees laid out as
the kernel's /sys/class/infiniband is (no hardware needed): no device, no pyverbs, a port that
is down, a missing port or GID, RoCE v2 preferred, InfiniBand's GID 0."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from insane.cli.doctor import doctor_report, format_doctor
from insane.qos import load_config
from insane.transports.rdma import verbs as rdma_verbs
from insane.transports.rdma.verbs import GidEntry, choose_gid, gid_text, parse_gid
from insane.transports.registry import probe

LINK_LOCAL = "fe80:0000:0000:0000:5054:00ff:fe12:3456"


def mapped(ipv4: str) -> str:
    return gid_text(ipaddress.IPv6Address(f"::ffff:{ipv4}").packed)


def add_device(
    root: Path,
    name: str,
    *,
    state: str = "4: ACTIVE",
    link_layer: str = "Ethernet",
    gids: dict[int, tuple[str, str]] | None = None,
    port: int = 1,
    table: int = 8,
) -> None:
    """A device with one port: ``gids`` maps an index to (GID, sysfs type); the other slots of
    the table hold the all-zero GID, as unused ones do."""
    base = root / name / "ports" / str(port)
    (base / "gids").mkdir(parents=True)
    (base / "gid_attrs" / "types").mkdir(parents=True)
    (base / "state").write_text(state + "\n")
    (base / "link_layer").write_text(link_layer + "\n")
    gids = gids or {}
    for i in range(table):
        gid, kind = gids.get(i, ("0000:0000:0000:0000:0000:0000:0000:0000", ""))
        (base / "gids" / str(i)).write_text(gid + "\n")
        (base / "gid_attrs" / "types" / str(i)).write_text(kind + "\n")


@pytest.fixture
def sysfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "infiniband"
    monkeypatch.setattr(rdma_verbs, "SYSFS", root)
    monkeypatch.setattr(rdma_verbs, "pyverbs_found", lambda: True)
    return root


ROCE = {
    0: (LINK_LOCAL, "IB/RoCE v1"),
    1: (LINK_LOCAL, "RoCE v2"),
    2: (mapped("10.9.0.1"), "IB/RoCE v1"),
    3: (mapped("10.9.0.1"), "RoCE v2"),
    4: (mapped("10.9.1.7"), "RoCE v2"),
}


def test_no_device_tree_means_no_rdma_subsystem(sysfs: Path) -> None:
    c = probe("rdma", load_config({}))
    assert not c.available
    assert c.reason == (
        f"no RDMA device ({sysfs} is missing: no RDMA subsystem in the kernel, or no driver)"
    )
    sysfs.mkdir()
    assert probe("rdma", load_config({})).reason == f"no RDMA device ({sysfs} is empty)"


def test_an_active_roce_port_is_available_with_the_gid_of_our_address(sysfs: Path) -> None:
    add_device(sysfs, "mlx5_0", gids=ROCE)
    cfg = load_config({"transports": {"udp": {"bind": "10.9.1.7"}}})
    c = probe("rdma", cfg)
    assert c.available, c.reason
    assert c.details["device"] == "mlx5_0"
    assert c.details["gid_index"] == 4
    assert c.details["gid"] == "RoCE v2 GID 4 (10.9.1.7, the address of transports.udp.bind)"
    assert c.reason == (
        "RDMA device mlx5_0 port 1, RoCE v2 GID 4 (10.9.1.7, the address of transports.udp.bind)"
    )
    assert c.hardware_reliable and c.kernel_bypass
    # the doctor shows it with its checks
    text = format_doctor(doctor_report(cfg))
    assert "rdma  available    RDMA device mlx5_0 port 1" in text
    assert "      port_state: ACTIVE" in text


def test_a_port_that_is_down_says_so(sysfs: Path) -> None:
    add_device(sysfs, "mlx5_0", state="1: DOWN", gids=ROCE)
    c = probe("rdma", load_config({}))
    assert not c.available
    assert c.reason == "port 1 of mlx5_0 is DOWN, not ACTIVE: its link is not up"
    assert c.details["port_state"] == "DOWN"


def test_pyverbs_missing(sysfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add_device(sysfs, "mlx5_0", gids=ROCE)
    monkeypatch.setattr(rdma_verbs, "pyverbs_found", lambda: False)
    c = probe("rdma", load_config({}))
    assert c.reason == (
        "pyverbs is not installed for this Python "
        "(Debian: python3-pyverbs, which ./run links into .venv)"
    )


def test_a_named_device_or_port_that_does_not_exist(sysfs: Path) -> None:
    add_device(sysfs, "mlx5_0", gids=ROCE)
    add_device(sysfs, "rxe0", gids=ROCE)
    c = probe("rdma", load_config({"transports": {"rdma": {"device": "mlx5_9"}}}))
    assert c.reason == (
        "RDMA device 'mlx5_9' (transports.rdma.device) not found; there are: mlx5_0, rxe0"
    )
    c = probe("rdma", load_config({"transports": {"rdma": {"device": "rxe0", "port": 2}}}))
    assert c.reason == "rxe0 has no port 2 (transports.rdma.port)"
    c = probe("rdma", load_config({"transports": {"rdma": {"device": "rxe0"}}}))
    assert c.available and c.details["device"] == "rxe0"


def test_a_port_without_gids_or_with_a_wrong_gid_index(sysfs: Path) -> None:
    add_device(sysfs, "mlx5_0", gids={})
    c = probe("rdma", load_config({}))
    assert c.reason == (
        "port 1 of mlx5_0: the port has no GID (no address on its network interface?)"
    )
    add_device(sysfs, "mlx5_1", gids=ROCE)
    c = probe("rdma", load_config({"transports": {"rdma": {"device": "mlx5_1", "gid_index": 6}}}))
    assert c.reason == "port 1 of mlx5_1: transports.rdma.gid_index 6 is not a GID of this port"
    c = probe("rdma", load_config({"transports": {"rdma": {"device": "mlx5_1", "gid_index": 2}}}))
    assert c.available and c.details["gid"] == "GID 2 (roce_v1), set by transports.rdma.gid_index"


def test_disabled_comes_first(sysfs: Path) -> None:
    add_device(sysfs, "mlx5_0", gids=ROCE)
    c = probe("rdma", load_config({"transports": {"rdma": {"enabled": False}}}))
    assert c.reason == "disabled by transports.rdma.enabled"


# ---------------------------------------------------------------------------------------------
# The GID choice on its own


def entries(spec: dict[int, tuple[str, str]]) -> list[GidEntry]:
    return [GidEntry(i, parse_gid(g), k) for i, (g, k) in spec.items()]


def test_roce_v2_for_our_own_address_first() -> None:
    spec = {
        0: (LINK_LOCAL, "roce_v1"),
        1: (LINK_LOCAL, "roce_v2"),
        2: ("2001:db8::5", "roce_v2"),
        3: (mapped("10.0.0.2"), "roce_v2"),
        4: (mapped("10.0.0.1"), "roce_v2"),
        5: (mapped("10.0.0.1"), "roce_v1"),
    }
    best, why = choose_gid(entries(spec), "ethernet", prefer_ipv4="10.0.0.1")
    assert best.index == 4 and why.endswith("the address of transports.udp.bind)")
    # without an address of ours: any IPv4 RoCE v2, then global IPv6, then link-local
    assert choose_gid(entries(spec), "ethernet")[0].index == 3
    del spec[3], spec[4]
    assert choose_gid(entries(spec), "ethernet")[0].index == 2
    assert choose_gid(entries(spec), "ethernet")[1] == "RoCE v2 GID 2 (2001:db8::5)"
    del spec[2]
    assert choose_gid(entries(spec), "ethernet")[0].index == 1
    del spec[1]  # RoCE v1 only: still usable, on one L2 network
    assert choose_gid(entries(spec), "ethernet")[1] == "RoCE v1 GID 5 (10.0.0.1)"
    del spec[5]
    link_local = ipaddress.IPv6Address(LINK_LOCAL)
    assert choose_gid(entries(spec), "ethernet")[1] == f"RoCE v1 GID 0 ({link_local})"


def test_infiniband_uses_gid_zero() -> None:
    spec = {0: ("fe80::2:c903:31:7191", "ib"), 1: ("fe80::2:c903:31:7192", "ib")}
    best, why = choose_gid(entries(spec), "infiniband")
    assert best.index == 0 and why == "GID 0 (InfiniBand, the port's GUID)"


def test_sysfs_port_reads_types_and_skips_empty_slots(tmp_path: Path) -> None:
    add_device(tmp_path, "rxe0", gids=ROCE, table=16)
    info = rdma_verbs.sysfs_port("rxe0", 1, tmp_path)
    assert info is not None
    assert (info.state, info.link_layer) == ("ACTIVE", "ethernet")
    kinds = {e.index: e.kind for e in info.gids if any(e.gid)}
    assert kinds == {0: "roce_v1", 1: "roce_v2", 2: "roce_v1", 3: "roce_v2", 4: "roce_v2"}
    assert rdma_verbs.sysfs_port("rxe0", 2, tmp_path) is None
    assert gid_text(parse_gid(LINK_LOCAL)) == LINK_LOCAL
