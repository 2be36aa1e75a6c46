"""The pyverbs objects the RDMA transport builds, checked on the real pyverbs without a device:
the queue pair's INIT and RTR/RTS attributes (path, PSNs, MTU, retries) and the work requests.
This is as far as pyverbs goes here: opening a device needs one (tests/test_rdma_hardware.py).
"""

from __future__ import annotations

import ipaddress

import pytest
from netns import strict_skip

from insane.control.rdma_setup import Endpoint
from insane.transports.rdma import verbs as rdma_verbs
from insane.transports.rdma.verbs import SEND_FLAG, gid_text

try:
    import pyverbs.enums as e
except ImportError as exc:  # ./run installs it (Debian's python3-pyverbs)
    e = None
    WHY = f"pyverbs is not importable: {exc}"


@pytest.fixture(autouse=True)
def _pyverbs() -> None:
    if e is None:
        strict_skip(WHY)


REMOTE = Endpoint(
    qpn=0x1234,
    psn=0xABCDE,
    lid=7,
    gid=ipaddress.IPv6Address("::ffff:10.0.0.2").packed,
    mtu=4096,
    credits=64,
    buffer=1476,
)


def test_init_attributes() -> None:
    attr = rdma_verbs.init_attributes(2)
    assert (attr.port_num, attr.pkey_index) == (2, 0)
    assert attr.qp_access_flags == e.IBV_ACCESS_LOCAL_WRITE  # SEND/RECV: no remote access


def test_roce_rts_attributes_route_to_the_peers_gid() -> None:
    attr = rdma_verbs.rts_attributes(1, "ethernet", 3, REMOTE, psn=0x42, mtu=1024)
    assert (attr.dest_qp_num, attr.rq_psn, attr.sq_psn) == (0x1234, 0xABCDE, 0x42)
    assert attr.path_mtu == e.IBV_MTU_1024
    assert attr.ah_attr.is_global == 1
    assert attr.ah_attr.dgid == gid_text(REMOTE.gid) == "0000:0000:0000:0000:0000:ffff:0a00:0002"
    assert attr.ah_attr.sgid_index == 3 and attr.ah_attr.hop_limit == 64
    assert attr.ah_attr.port_num == 1
    # the adapter retries: 7 times on a lost ACK, without end on receiver-not-ready
    assert (attr.retry_cnt, attr.rnr_retry, attr.timeout, attr.min_rnr_timer) == (7, 7, 14, 12)
    assert attr.max_rd_atomic == attr.max_dest_rd_atomic == 1


def test_infiniband_rts_attributes_route_to_the_peers_lid() -> None:
    attr = rdma_verbs.rts_attributes(1, "infiniband", 0, REMOTE, psn=1, mtu=4096)
    assert attr.ah_attr.is_global == 0 and attr.ah_attr.dlid == 7
    assert attr.path_mtu == e.IBV_MTU_4096


def test_work_requests() -> None:
    recv = rdma_verbs.receive_request(0x7000, 1476, 99, wr_id=5)
    assert (recv.wr_id, recv.num_sge) == (5, 1)
    send = rdma_verbs.send_request(0x8000, 300, 99, wr_id=SEND_FLAG | 6)
    assert send.wr_id == SEND_FLAG | 6
    assert send.opcode == e.IBV_WR_SEND and send.send_flags == e.IBV_SEND_SIGNALED
    assert send.num_sge == 1


def test_opening_without_a_device_says_why() -> None:
    if rdma_verbs.sysfs_devices():
        pytest.skip("this host has an RDMA device")
    with pytest.raises(OSError, match="no RDMA device"):
        rdma_verbs.open_device(None, 1, None, None, 128)
