"""The verbs the RDMA transport uses, on pyverbs (rdma-core's Python bindings), and the choice
of the port's GID.

One `VerbsDevice` is one port of one device: its context, a protection domain, one completion
queue for every queue pair (with a completion channel, whose file descriptor the event loop
watches for ``consumption: low``), and memory regions sliced into equal slots. A
`VerbsQueuePair` is one reliable connection (RC): created in INIT, moved to ready-to-send
toward the peer's side once the control plane brought it, and used with single-slot SEND
and RECV work requests, every one signalled.

pyverbs is imported only when a device is opened (`import_pyverbs`, which undoes what its
import does to the application's logging), so the GID choice and the rest of the package work
(and are tested) where it is missing, and a probe finds it without importing it
(`pyverbs_found`). What the transport asks of a device is written down as the `Device`
protocol; tests/verbs_sim.py provides the same on a simulated fabric for the tests that have
no hardware.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
import os
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from insane.transports.rdma.endpoint import Endpoint

SYSFS = Path("/sys/class/infiniband")
#: wr_id bit that marks a send (the rest: the slot and its generation).
SEND_FLAG = 1 << 62
#: RC timing: local ACK timeout 4.096 us * 2^14 (about 67 ms), 7 retries; receiver-not-ready
#: retried without end (7), waiting 0.64 ms (12) between tries: credits keep that rare.
_TIMEOUT, _RETRY_CNT, _RNR_RETRY, _MIN_RNR_TIMER = 14, 7, 7, 12


# ---------------------------------------------------------------------------------------------
# GIDs


@dataclass(frozen=True, slots=True)
class GidEntry:
    index: int
    gid: bytes  # 16 bytes
    #: "ib" (InfiniBand), "roce_v1" (RoCE over Ethernet) or "roce_v2" (RoCE over UDP/IP).
    kind: str


def gid_text(gid: bytes) -> str:
    """A GID as pyverbs writes it: eight groups of four hex digits."""
    return ":".join(gid[i : i + 2].hex() for i in range(0, 16, 2))


def parse_gid(text: str) -> bytes:
    """The 16 bytes of a GID written in any IPv6 form (sysfs and pyverbs use the long one)."""
    return ipaddress.IPv6Address(text.strip()).packed


def choose_gid(
    entries: Sequence[GidEntry],
    link_layer: str,
    configured: int | None = None,
    prefer_ipv4: str | None = None,
) -> tuple[GidEntry, str]:
    """The GID this port uses, and why. ``configured`` (transports.rdma.gid_index) wins. On
    InfiniBand, GID 0 (the port's GUID). On Ethernet (RoCE), best first: RoCE v2 for the
    session's own IPv4 address (``prefer_ipv4``), RoCE v2 for any IPv4 address, RoCE v2 for a
    global IPv6 address, RoCE v2 link-local, then RoCE v1 in the same order. RoCE v2 is routable
    (UDP/IP), which is what two hosts on different subnets need. Raises LookupError."""
    usable = [e for e in entries if any(e.gid)]
    if configured is not None:
        for e in usable:
            if e.index == configured:
                return e, f"GID {e.index} ({e.kind}), set by transports.rdma.gid_index"
        raise LookupError(f"transports.rdma.gid_index {configured} is not a GID of this port")
    if not usable:
        raise LookupError("the port has no GID (no address on its network interface?)")
    if link_layer != "ethernet":
        first = min(usable, key=lambda e: e.index)
        return first, f"GID {first.index} (InfiniBand, the port's GUID)"

    def rank(e: GidEntry) -> tuple[int, int, int]:
        ip = ipaddress.IPv6Address(e.gid)
        v4 = ip.ipv4_mapped
        if v4 is not None:
            place = 0 if prefer_ipv4 is not None and str(v4) == prefer_ipv4 else 1
        elif not ip.is_link_local:
            place = 2
        else:
            place = 3
        return (0 if e.kind == "roce_v2" else 1, place, e.index)

    best = min(usable, key=rank)
    ip = ipaddress.IPv6Address(best.gid)
    shown = str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)
    kind = "RoCE v2" if best.kind == "roce_v2" else "RoCE v1" if best.kind == "roce_v1" else "IB"
    why = f"{kind} GID {best.index} ({shown}"
    why += ", the address of transports.udp.bind)" if shown == prefer_ipv4 else ")"
    return best, why


# ---------------------------------------------------------------------------------------------
# What the sysfs says (no pyverbs needed): devices, port state, link layer, GIDs


class PortInfo(NamedTuple):
    state: str  # "ACTIVE", "DOWN", ...
    link_layer: str  # "ethernet" or "infiniband"
    gids: list[GidEntry]


def sysfs_devices(root: Path | None = None) -> list[str]:
    """The RDMA devices under ``root`` (default: `SYSFS`, looked up at call time)."""
    root = SYSFS if root is None else root
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def sysfs_port(device: str, port: int, root: Path | None = None) -> PortInfo | None:
    """A port as sysfs describes it, or None when the device has no such port."""
    base = (SYSFS if root is None else root) / device / "ports" / str(port)
    if not base.is_dir():
        return None
    state = _read(base / "state").partition(":")[2].strip() or "UNKNOWN"
    link_layer = _read(base / "link_layer").strip().lower() or "infiniband"
    gids: list[GidEntry] = []
    gid_dir = base / "gids"
    if gid_dir.is_dir():
        for p in sorted(gid_dir.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1):
            if not p.name.isdigit():
                continue
            try:
                gid = parse_gid(_read(p))
            except ValueError:
                continue
            kind = "ib"
            if link_layer == "ethernet":
                sysfs_type = _read(base / "gid_attrs" / "types" / p.name).lower()
                kind = "roce_v2" if "v2" in sysfs_type else "roce_v1"
            gids.append(GidEntry(int(p.name), gid, kind))
    return PortInfo(state, link_layer, gids)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:  # (reading an empty GID slot fails with EINVAL on some kernels)
        return ""


# ---------------------------------------------------------------------------------------------
# The device, as the transport uses it


class Completion(NamedTuple):
    wr_id: int
    ok: bool
    status: str  # "" when ok, else what the device said
    byte_len: int
    qp_num: int


class Region(Protocol):
    """Registered memory in ``slots`` slots of ``slot_size`` bytes."""

    slots: int
    slot_size: int

    def write(self, slot: int, parts: Sequence[bytes]) -> int: ...
    def read(self, slot: int, length: int) -> bytes: ...
    def close(self) -> None: ...


class QueuePair(Protocol):
    qpn: int

    def connect(self, remote: Endpoint, psn: int, mtu: int) -> None: ...
    def post_recv(self, region: Region, slot: int, wr_id: int) -> None: ...
    def post_send(self, region: Region, slot: int, length: int, wr_id: int) -> None: ...
    def close(self) -> None: ...


class Device(Protocol):
    name: str
    port: int
    link_layer: str
    lid: int
    gid: bytes
    gid_index: int
    gid_reason: str
    mtu: int
    event_fd: int

    def region(self, slots: int, slot_size: int) -> Region: ...
    def queue_pair(self, send_depth: int, recv_depth: int) -> QueuePair: ...
    def poll(self, n: int) -> list[Completion]: ...
    def take_event(self) -> bool: ...
    def close(self) -> None: ...


def pyverbs_found() -> bool:
    """Whether pyverbs is installed for this Python (its compiled modules carry this
    interpreter's extension suffix), found without importing it."""
    try:
        spec = importlib.util.find_spec("pyverbs")
    except (ImportError, ValueError):
        return False
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return spec is not None and any(
        os.path.exists(os.path.join(d, "device" + suffix))
        for d in spec.submodule_search_locations or ()
    )


def import_pyverbs() -> None:
    """Import pyverbs, leaving the application's logging as it was.

    rdma-core's pyverbs.base calls ``logging.basicConfig(level=INFO)`` when imported: on an
    application that had not configured logging, that would add a stderr handler to the root
    logger and lower its level, and every library's INFO lines would start to show. The root
    logger's handlers and level are put back as they were."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import pyverbs.device  # noqa: F401
    finally:
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)


def open_device(
    name: str | None, port: int, gid_index: int | None, prefer_ipv4: str | None, cq_depth: int
) -> VerbsDevice:
    """Open ``port`` of device ``name`` (default: the first) with pyverbs. Raises OSError
    saying what is missing or wrong."""
    try:
        import_pyverbs()
    except ImportError as exc:
        raise OSError(f"pyverbs is not importable ({exc}); Debian: python3-pyverbs") from None
    names = sysfs_devices()
    if not names:
        raise OSError(f"no RDMA device ({SYSFS} is empty or missing)")
    name = name or names[0]
    if name not in names:
        raise OSError(f"no RDMA device {name!r}; there are: {', '.join(names)}")
    return VerbsDevice(name, port, gid_index, prefer_ipv4, cq_depth)


class VerbsDevice:
    """A port of an RDMA device through pyverbs (see the module docstring)."""

    def __init__(
        self, name: str, port: int, gid_index: int | None, prefer_ipv4: str | None, cq_depth: int
    ) -> None:
        import pyverbs.enums as e
        from pyverbs.cq import CQ, CompChannel
        from pyverbs.device import Context
        from pyverbs.pd import PD
        from pyverbs.pyverbs_error import PyverbsError

        self.name = name
        self.port = port
        try:
            self._ctx = Context(name=name)
            attr = self._ctx.query_port(port)
        except PyverbsError as exc:
            raise OSError(f"{name} port {port}: {exc}") from None
        if attr.state != e.IBV_PORT_ACTIVE:
            raise OSError(f"{name} port {port} is not active (state {attr.state})")
        self.link_layer = (
            "ethernet" if attr.link_layer == e.IBV_LINK_LAYER_ETHERNET else "infiniband"
        )
        self.lid = int(attr.lid)
        self.mtu = 128 << int(attr.active_mtu)  # IBV_MTU_256 is 1 ... IBV_MTU_4096 is 5
        info = sysfs_port(name, port)
        entries = info.gids if info is not None else []
        if not entries:
            entries = self._query_gids(int(attr.gid_tbl_len))
        try:
            entry, self.gid_reason = choose_gid(entries, self.link_layer, gid_index, prefer_ipv4)
        except LookupError as exc:
            raise OSError(f"{name} port {port}: {exc}") from None
        self.gid = entry.gid
        self.gid_index = entry.index
        self._pd = PD(self._ctx)
        before = _open_fds()
        self._channel = CompChannel(self._ctx)
        self.event_fd = _new_event_fd(before)
        os.set_blocking(self.event_fd, False)
        self._cq = CQ(self._ctx, cq_depth, None, self._channel, 0)
        self._cq.req_notify()
        self._e = e

    def _query_gids(self, count: int) -> list[GidEntry]:
        out = []
        for i in range(count):
            try:
                gid = parse_gid(self._ctx.query_gid(self.port, i).gid)
                entry = self._ctx.query_gid_ex(self.port, i)
            except Exception:
                continue
            kind = {0: "ib", 1: "roce_v1", 2: "roce_v2"}.get(int(entry.gid_type), "ib")
            out.append(GidEntry(i, gid, kind))
        return out

    def region(self, slots: int, slot_size: int) -> VerbsRegion:
        return VerbsRegion(self, slots, slot_size)

    def queue_pair(self, send_depth: int, recv_depth: int) -> VerbsQueuePair:
        return VerbsQueuePair(self, send_depth, recv_depth)

    def poll(self, n: int) -> list[Completion]:
        ok = self._e.IBV_WC_SUCCESS
        _count, wcs = self._cq.poll(n)
        return [
            Completion(
                wc.wr_id,
                wc.status == ok,
                "" if wc.status == ok else _status_text(wc.status, wc.vendor_err),
                wc.byte_len,
                wc.qp_num,
            )
            for wc in wcs
        ]

    def take_event(self) -> bool:
        """After the event fd was readable: take the completion event, acknowledge it and ask
        for the next. False when there was none (a spurious wake-up)."""
        try:
            self._channel.get_cq_event(self._cq)
        except Exception:
            return False
        self._cq.ack_events(1)
        self._cq.req_notify()
        return True

    def close(self) -> None:
        """Close the device; pyverbs closes what was made on it (queue pairs, regions) first."""
        for obj in (self._ctx, self._cq, self._channel, self._pd):
            try:
                obj.close()
            except Exception:
                pass


class VerbsRegion:
    """A memory region registered for local writes (receives land in it)."""

    def __init__(self, dev: VerbsDevice, slots: int, slot_size: int) -> None:
        from pyverbs.mr import MR

        self.slots = slots
        self.slot_size = slot_size
        self.mr = MR(dev._pd, slots * slot_size, dev._e.IBV_ACCESS_LOCAL_WRITE)
        self.addr = int(self.mr.buf)
        self.lkey = int(self.mr.lkey)

    def write(self, slot: int, parts: Sequence[bytes]) -> int:
        offset = slot * self.slot_size
        for p in parts:
            self.mr.write(p, len(p), offset)
            offset += len(p)
        return offset - slot * self.slot_size

    def read(self, slot: int, length: int) -> bytes:
        data: bytes = self.mr.read(length, slot * self.slot_size)
        return data

    def close(self) -> None:
        try:
            self.mr.close()
        except Exception:
            pass


class VerbsQueuePair:
    """One RC queue pair on the device's completion queue."""

    def __init__(self, dev: VerbsDevice, send_depth: int, recv_depth: int) -> None:
        from pyverbs.qp import QP, QPCap, QPInitAttr

        e = dev._e
        self._dev = dev
        cap = QPCap(max_send_wr=send_depth, max_recv_wr=recv_depth, max_send_sge=1, max_recv_sge=1)
        init = QPInitAttr(qp_type=e.IBV_QPT_RC, scq=dev._cq, rcq=dev._cq, cap=cap, sq_sig_all=1)
        self._qp = QP(dev._pd, init, init_attributes(dev.port))  # created, then INIT
        self.qpn = int(self._qp.qp_num)

    def connect(self, remote: Endpoint, psn: int, mtu: int) -> None:
        """INIT -> RTR -> RTS toward ``remote``."""
        dev = self._dev
        self._qp.to_rts(
            rts_attributes(dev.port, dev.link_layer, dev.gid_index, remote, psn, mtu)
        )

    def post_recv(self, region: Region, slot: int, wr_id: int) -> None:
        assert isinstance(region, VerbsRegion)
        at = region.addr + slot * region.slot_size
        self._qp.post_recv(receive_request(at, region.slot_size, region.lkey, wr_id))

    def post_send(self, region: Region, slot: int, length: int, wr_id: int) -> None:
        assert isinstance(region, VerbsRegion)
        at = region.addr + slot * region.slot_size
        self._qp.post_send(send_request(at, length, region.lkey, wr_id))

    def close(self) -> None:
        try:
            self._qp.close()
        except Exception:
            pass


# ---------------------------------------------------------------------------------------------
# The attributes and work requests, built apart from any device (tests check them on pyverbs)


def init_attributes(port: int) -> Any:
    """RESET -> INIT: the port, pkey 0, and local writes only (SEND/RECV: no remote access)."""
    import pyverbs.enums as e
    from pyverbs.qp import QPAttr

    attr = QPAttr()
    attr.port_num = port
    attr.pkey_index = 0
    attr.qp_access_flags = e.IBV_ACCESS_LOCAL_WRITE
    return attr


def rts_attributes(
    port: int, link_layer: str, gid_index: int, remote: Endpoint, psn: int, mtu: int
) -> Any:
    """INIT -> RTR -> RTS toward ``remote``: its QPN and PSN, the path (a GRH to its GID on
    RoCE; its LID on InfiniBand), the MTU both sides can take, and the retry settings."""
    from pyverbs.addr import GID, AHAttr, GlobalRoute
    from pyverbs.qp import QPAttr

    attr = QPAttr()
    attr.port_num = port
    attr.path_mtu = {256: 1, 512: 2, 1024: 3, 2048: 4, 4096: 5}[mtu]
    attr.dest_qp_num = remote.qpn
    attr.rq_psn = remote.psn
    attr.max_dest_rd_atomic = 1
    attr.min_rnr_timer = _MIN_RNR_TIMER
    if link_layer == "ethernet":
        gr = GlobalRoute(dgid=GID(gid_text(remote.gid)), sgid_index=gid_index, hop_limit=64)
        attr.ah_attr = AHAttr(port_num=port, is_global=1, gr=gr, dlid=0)
    else:
        attr.ah_attr = AHAttr(port_num=port, is_global=0, dlid=remote.lid)
    attr.timeout = _TIMEOUT
    attr.retry_cnt = _RETRY_CNT
    attr.rnr_retry = _RNR_RETRY
    attr.sq_psn = psn
    attr.max_rd_atomic = 1
    return attr


def receive_request(addr: int, length: int, lkey: int, wr_id: int) -> Any:
    from pyverbs.wr import SGE, RecvWR

    return RecvWR(wr_id=wr_id, num_sge=1, sg=[SGE(addr, length, lkey)])


def send_request(addr: int, length: int, lkey: int, wr_id: int) -> Any:
    """A signalled SEND of ``length`` bytes at ``addr``."""
    import pyverbs.enums as e
    from pyverbs.wr import SGE, SendWR

    return SendWR(
        wr_id=wr_id,
        opcode=e.IBV_WR_SEND,
        num_sge=1,
        sg=[SGE(addr, length, lkey)],
        send_flags=e.IBV_SEND_SIGNALED,
    )


def _status_text(status: int, vendor_err: int) -> str:
    try:
        from pyverbs.cq import cqe_status_to_str

        text = str(cqe_status_to_str(status))
    except Exception:
        text = f"status {status}"
    return f"{text} (vendor error {vendor_err:#x})" if vendor_err else text


def _open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd") if n.isdigit()}


def _new_event_fd(before: set[int]) -> int:
    """The completion channel's file descriptor: pyverbs does not expose it, so it is the one
    that appeared while the channel was made and reads as an InfiniBand event file."""
    for fd in sorted(_open_fds() - before):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "infinibandevent" in target:
            return fd
    raise OSError("cannot find the completion channel's file descriptor in /proc/self/fd")


def describe(dev: Any) -> dict[str, object]:
    """What `insane doctor` and the logs show of an opened device."""
    return {
        "device": dev.name,
        "port": dev.port,
        "lid": dev.lid,
        "gid_index": dev.gid_index,
        "gid": gid_text(dev.gid),
        "gid_choice": dev.gid_reason,
        "mtu": dev.mtu,
    }
