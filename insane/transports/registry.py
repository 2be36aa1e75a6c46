"""Which transports can run here, and why not: the probes behind ``insane doctor``.

Each probe runs a few cheap checks (privileges, kernel support, libraries, devices, the
configuration) and returns a `TransportCapability` whose ``details`` hold every check, so that
"unavailable" always comes with the exact reason. Probes never raise.

A transport is available only when its checks pass *and* its datapath is implemented, i.e.
listed in `IMPLEMENTATIONS` (``name -> "module:Class"``, imported lazily by `transport_class`).
A new datapath becomes selectable by adding one line there.
"""

from __future__ import annotations

import ctypes.util
import errno
import importlib
import os
import resource
import socket
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from insane.transports.base import ALL_TRANSPORTS, Transport, TransportCapability, TransportName

if TYPE_CHECKING:
    from insane.qos.model import Config

#: Implemented datapaths: name -> "module:Class". Only these can ever be reported available.
IMPLEMENTATIONS: dict[str, str] = {
    "udp": "insane.transports.udp:UdpTransport",
    "xdp": "insane.transports.xdp:XdpTransport",
    "dpdk": "insane.transports.dpdk:DpdkTransport",
    "rdma": "insane.transports.rdma.transport:RdmaTransport",
}

_CAP_NET_ADMIN, _CAP_NET_RAW, _CAP_IPC_LOCK, _CAP_SYS_ADMIN, _CAP_SYS_RESOURCE, _CAP_BPF = (
    12, 13, 14, 21, 24, 39
)
_AF_XDP = 44

Checks = dict[str, object]


def transport_class(name: str) -> type[Transport]:
    """Import and return the implementation of transport ``name`` (KeyError if none)."""
    module_name, _, class_name = IMPLEMENTATIONS[name].partition(":")
    cls: type[Transport] = getattr(importlib.import_module(module_name), class_name)
    return cls


def probe(name: str, config: Config) -> TransportCapability:
    """Probe one transport. Never raises: an unexpected error becomes the reason."""
    probes: dict[str, Callable[[Config], TransportCapability]] = {
        "udp": _probe_udp,
        "xdp": _probe_xdp,
        "dpdk": _probe_dpdk,
        "rdma": _probe_rdma,
    }
    if name not in probes:
        raise ValueError(f"unknown transport {name!r}; expected one of {', '.join(ALL_TRANSPORTS)}")
    try:
        return probes[name](config)
    except Exception as e:  # a probe must answer, whatever the host looks like
        return TransportCapability(
            name=name,  # type: ignore[arg-type]
            available=False,
            reason=f"probe failed: {type(e).__name__}: {e}",
        )


def probe_all(config: Config) -> dict[str, TransportCapability]:
    """Probe every transport, in `ALL_TRANSPORTS` order."""
    return {name: probe(name, config) for name in ALL_TRANSPORTS}


# ---------------------------------------------------------------------------------------------
# The probes


def _probe_udp(config: Config) -> TransportCapability:
    bind = config.transports.udp.bind
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    checks: Checks = {"bind": bind}
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((bind, 0))
        checks["socket_bind"] = True
        problems = []
    except OSError as e:
        checks["socket_bind"] = False
        problems = [f"cannot bind a UDP socket to {bind}: {e.strerror or e}"]
    return _capability(
        "udp", checks, problems, f"kernel UDP socket binds on {bind}", consumption={"low"}
    )


def _probe_xdp(config: Config) -> TransportCapability:
    cfg = config.transports.xdp
    caps = _effective_caps()
    checks: Checks = {
        "enabled": cfg.enabled,
        "cap_net_admin": _has_cap(caps, _CAP_NET_ADMIN),
        "cap_net_raw": _has_cap(caps, _CAP_NET_RAW),
        "cap_bpf_or_sys_admin": _has_cap(caps, _CAP_BPF) or _has_cap(caps, _CAP_SYS_ADMIN),
        "memlock": _memlock(caps, _xdp_umem_bytes()),
        "kernel_af_xdp": _kernel_af_xdp(),
        "libxdp": _find_library("xdp"),
        "libbpf": _find_library("bpf"),
        "native_module": _importable("insane._xdp"),
        "xdp_program": _xdp_program_present(),
        "interface": cfg.interface,
        "interface_present": cfg.interface is not None and _interface_present(cfg.interface),
    }
    checks["interface_ipv4"] = (
        _interface_ipv4(cfg.interface) if checks["interface_present"] and cfg.interface else None
    )
    problems: list[str] = []
    if not cfg.enabled:
        problems.append("disabled by transports.xdp.enabled")
    missing = [
        name
        for name, present in (
            ("CAP_NET_ADMIN", checks["cap_net_admin"]),
            ("CAP_BPF (or CAP_SYS_ADMIN)", checks["cap_bpf_or_sys_admin"]),
            ("CAP_NET_RAW", checks["cap_net_raw"]),
        )
        if not present
    ]
    if missing:
        problems.append(
            "needs CAP_NET_ADMIN (to attach the XDP program), CAP_BPF or CAP_SYS_ADMIN (to "
            "load it) and CAP_NET_RAW (for the AF_XDP socket); the effective capabilities "
            f"lack {', '.join(missing)}"
        )
    memlock = str(checks["memlock"])
    if memlock.startswith("too low"):
        problems.append(f"RLIMIT_MEMLOCK is {memlock}")
    if not checks["kernel_af_xdp"]:
        problems.append("the kernel has no AF_XDP support (EAFNOSUPPORT)")
    if not checks["libxdp"]:
        problems.append("libxdp not found (Debian: libxdp1)")
    if not checks["libbpf"]:
        problems.append("libbpf not found (Debian: libbpf1)")
    if not checks["native_module"]:
        problems.append(
            "insane._xdp is not built (install libxdp-dev, libbpf-dev and clang, then reinstall)"
        )
    elif not checks["xdp_program"]:
        problems.append("the XDP program insane/native/xdp_redirect.bpf.o is not built (clang)")
    if cfg.interface is None:
        problems.append("transports.xdp.interface is not set")
    elif not checks["interface_present"]:
        problems.append(f"interface {cfg.interface!r} (transports.xdp.interface) does not exist")
    elif _is_loopback(cfg.interface):
        problems.append(
            f"interface {cfg.interface!r} is a loopback interface: AF_XDP needs an Ethernet "
            "one (traffic on this host takes kernel UDP)"
        )
    elif checks["interface_ipv4"] is None:
        problems.append(f"interface {cfg.interface!r} has no IPv4 address")
    elif config.transports.udp.bind not in ("0.0.0.0", checks["interface_ipv4"]):
        # The session's address is its kernel socket's: AF_XDP sends and receives as that.
        problems.append(
            f"transports.udp.bind is {config.transports.udp.bind}: set it to "
            f"{checks['interface_ipv4']} (the address of {cfg.interface}) or 0.0.0.0"
        )
    return _capability(
        "xdp",
        checks,
        problems,
        f"AF_XDP on {cfg.interface} queue {cfg.queue}",
        consumption={"poll", "low"},
        kernel_bypass=True,
    )


def _probe_dpdk(config: Config) -> TransportCapability:
    """Static checks first; when they pass, the EAL is started (in this process, once: the
    session that probes is the one that uses it), so its own error message is the reason."""
    cfg = config.transports.dpdk
    hugepages = _hugepages_total()
    caps = _effective_caps()
    checks: Checks = {
        "enabled": cfg.enabled,
        "cap_net_raw": _has_cap(caps, _CAP_NET_RAW),
        "cap_net_admin": _has_cap(caps, _CAP_NET_ADMIN),
        "librte_eal": _find_library("rte_eal"),
        "native_module": _importable("insane._dpdk"),
        "eal_args": list(cfg.eal_args),
        "port": cfg.port,
        "hugepages_total": hugepages,
        "no_huge": hugepages == 0,  # informational: EAL then runs with --no-huge
    }
    problems: list[str] = []
    if not cfg.enabled:
        problems.append("disabled by transports.dpdk.enabled")
    missing = [c for c in ("cap_net_raw", "cap_net_admin") if not checks[c]]
    if missing:
        problems.append(
            "needs CAP_NET_RAW and CAP_NET_ADMIN (its virtual devices open packet sockets and "
            "set their interface promiscuous; PCI devices need the rights to the device too); "
            f"the effective capabilities lack {', '.join(c.upper() for c in missing)}"
        )
    if not checks["librte_eal"]:
        problems.append("librte_eal not found (install DPDK, Debian: dpdk)")
    if not checks["native_module"]:
        problems.append("insane._dpdk is not built (install dpdk-dev, then reinstall)")
    if not cfg.eal_args and cfg.port is None:
        problems.append(
            "transports.dpdk.eal_args is not set (a device: --vdev=net_af_packet0,iface=IF, "
            "or -a PCI_ADDRESS)"
        )
    if not problems:
        problems += _dpdk_runtime_checks(config, checks)
    return _capability(
        "dpdk",
        checks,
        problems,
        f"DPDK port {cfg.port or 0} of {checks.get('ports_found')}"
        + (" with --no-huge" if hugepages == 0 else f" with {hugepages} hugepages"),
        consumption={"poll", "low"},
        kernel_bypass=True,
    )


def _dpdk_runtime_checks(config: Config, checks: Checks) -> list[str]:
    """Start the EAL and find the port and this host's address on it."""
    from insane import _dpdk  # type: ignore[attr-defined]
    from insane.transports.dpdk import start_eal, vdev_interface
    from insane.transports.frames import interface_ipv4

    cfg = config.transports.dpdk
    try:
        checks["eal"] = " ".join(start_eal(cfg.eal_args))
    except OSError as exc:
        return [str(exc)]
    count = _dpdk.port_count()
    checks["ports_found"] = count
    port = cfg.port or 0
    if port >= count:
        said = " ".join(_dpdk.eal_log().split())[-300:]
        return [
            f"no DPDK port {port} (transports.dpdk.port): the EAL found {count}"
            + (f"; the EAL said: {said}" if said else "")
        ]
    interface = cfg.interface or vdev_interface(cfg.eal_args)
    checks["interface"] = interface
    bind = config.transports.udp.bind
    ip = cfg.ip or (bind if bind != "0.0.0.0" else None)
    if ip is None and interface is not None:
        ip = interface_ipv4(interface)
    checks["ip"] = ip
    if ip is None or ip.startswith("127."):
        return [
            "no address on the port: set transports.udp.bind (or transports.dpdk.ip) to this "
            "host's address on that network"
        ]
    return []


def _probe_rdma(config: Config) -> TransportCapability:
    """pyverbs, then the device, its port and a GID, as sysfs shows them (cheap: no device is
    opened; the session opens it with pyverbs when it starts)."""
    from insane.transports.rdma import verbs as rdma_verbs

    cfg = config.transports.rdma
    root = rdma_verbs.SYSFS
    devices = rdma_verbs.sysfs_devices(root)
    device = cfg.device or (devices[0] if devices else None)
    checks: Checks = {
        "enabled": cfg.enabled,
        "pyverbs": rdma_verbs.pyverbs_found(),
        "devices": devices,
        "device": device,
        "port": cfg.port,
    }
    problems: list[str] = []
    if not cfg.enabled:
        problems.append("disabled by transports.rdma.enabled")
    if not checks["pyverbs"]:
        problems.append(
            "pyverbs is not installed for this Python "
            "(Debian: python3-pyverbs, which ./run links into .venv)"
        )
    if not devices:
        why = "empty" if root.is_dir() else "missing: no RDMA subsystem in the kernel, or no driver"
        problems.append(f"no RDMA device ({root} is {why})")
    elif device not in devices:
        problems.append(
            f"RDMA device {device!r} (transports.rdma.device) not found; there are: "
            + ", ".join(devices)
        )
    else:
        assert device is not None
        port = rdma_verbs.sysfs_port(device, cfg.port, root)
        if port is None:
            problems.append(f"{device} has no port {cfg.port} (transports.rdma.port)")
        else:
            checks["port_state"] = port.state
            checks["link_layer"] = port.link_layer
            if port.state != "ACTIVE":
                problems.append(
                    f"port {cfg.port} of {device} is {port.state}, not ACTIVE: its link is not up"
                )
            try:
                bind = config.transports.udp.bind
                entry, why = rdma_verbs.choose_gid(
                    port.gids, port.link_layer, cfg.gid_index, bind if bind != "0.0.0.0" else None
                )
                checks["gid_index"] = entry.index
                checks["gid"] = why
            except LookupError as exc:
                problems.append(f"port {cfg.port} of {device}: {exc}")
    return _capability(
        "rdma",
        checks,
        problems,
        f"RDMA device {device} port {cfg.port}, {checks.get('gid', '')}",
        consumption={"poll", "low"},
        kernel_bypass=True,
        hardware_reliable=True,
    )


def _capability(
    name: TransportName,
    checks: Checks,
    problems: list[str],
    ok_reason: str,
    *,
    consumption: set[str],
    kernel_bypass: bool = False,
    hardware_reliable: bool = False,
) -> TransportCapability:
    """Turn the checks into a capability; available only if they pass and it is implemented."""
    implemented = name in IMPLEMENTATIONS
    checks["implemented"] = implemented
    if not implemented:
        not_built = f"no {name} datapath is built into this release"
        problems.append(not_built if problems else f"{not_built} (checks above would pass)")
    return TransportCapability(
        name=name,
        available=not problems,
        reason="; ".join(problems) if problems else ok_reason,
        kernel_bypass=kernel_bypass,
        hardware_reliable=hardware_reliable,
        consumption=frozenset(consumption),
        details=checks,
    )


# ---------------------------------------------------------------------------------------------
# Host checks


def _effective_caps() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _has_cap(caps: int, bit: int) -> bool:
    return bool(caps >> bit & 1)


def _memlock(caps: int, needed: int) -> str:
    """Whether ``needed`` bytes can be locked (the AF_XDP UMEM is charged to RLIMIT_MEMLOCK
    unless the process has CAP_IPC_LOCK): a short answer, "too low ..." when it cannot."""
    if _has_cap(caps, _CAP_IPC_LOCK):
        return "not limited (CAP_IPC_LOCK)"
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft == resource.RLIM_INFINITY:
        return "unlimited"
    mib = needed >> 20
    if soft >= needed:
        return f"{soft >> 20} MiB, enough for the UMEM's {mib} MiB"
    if hard == resource.RLIM_INFINITY or hard >= needed or _has_cap(caps, _CAP_SYS_RESOURCE):
        return f"{soft >> 20} MiB, raised at start for the UMEM's {mib} MiB"
    return (
        f"too low: {soft >> 20} MiB (hard limit {hard >> 20} MiB) for the UMEM's {mib} MiB, and "
        "it cannot be raised without CAP_SYS_RESOURCE (ulimit -l, systemd LimitMEMLOCK=, or "
        "grant CAP_IPC_LOCK)"
    )


def _xdp_umem_bytes() -> int:
    from insane.transports.xdp import UMEM_BYTES

    return UMEM_BYTES


def _kernel_af_xdp() -> bool:
    try:
        socket.socket(_AF_XDP, socket.SOCK_RAW).close()
    except OSError as e:
        # EPERM/EACCES: the family exists, we just may not open it.
        return e.errno != errno.EAFNOSUPPORT
    return True


@cache
@cache
def _find_library(name: str) -> str | None:
    """Cached: ``find_library`` runs ldconfig/gcc subprocesses, and libraries do not move."""
    return ctypes.util.find_library(name)


def _interface_present(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def _is_loopback(name: str) -> bool:
    try:
        flags = int(Path(f"/sys/class/net/{name}/flags").read_text(), 16)
    except (OSError, ValueError):
        return False
    return bool(flags & 0x8)  # IFF_LOOPBACK


def _xdp_program_present() -> bool:
    from insane.transports.xdp import program_path

    return os.path.exists(program_path())


def _interface_ipv4(name: str) -> str | None:
    from insane.transports.frames import interface_ipv4

    return interface_ipv4(name)


def _hugepages_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("HugePages_Total:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:
        return False
    return True
