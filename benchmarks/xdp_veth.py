"""Raw baselines and INSANE across a veth pair between two network namespaces: ping-pong RTT
and one-way throughput, as ratios to raw AF_XDP.

    .venv/bin/python -m benchmarks.xdp_veth                        # 64 B, 20000 round trips,
                                                                   # 200000 streamed, 3 runs
    .venv/bin/python -m benchmarks.xdp_veth --size 1024 --count 50000 --repeat 5 --json out.json
    .venv/bin/python -m benchmarks.xdp_veth --modes throughput --tput-count 500000

Needs root (network namespaces, XDP, DPDK).  The harness creates two namespaces, ``ixb-a`` and
``ixb-b``, joined by a veth pair (``ixb-va`` 10.77.200.1/24 in ``ixb-a``, ``ixb-vb``
10.77.200.2/24 in ``ixb-b``, MTU 1500, one queue each, IPv6 off, static neighbour entries),
runs every system's ping-pong on that same pair -- echo server in ``ixb-b``, client in
``ixb-a`` -- and its one-way throughput -- sink in ``ixb-b``, blaster in ``ixb-a`` -- and
deletes both namespaces at the end, also on errors and on SIGTERM.  No traffic leaves them; no
XDP program is attached outside them.

Systems (entries of :data:`SYSTEMS`; a system is a name plus a function that runs one ping-pong
repetition in the two namespaces and returns the client's result dict, and optionally one
that runs one throughput repetition and returns the sink's):

* ``raw-c-xdp`` -- ``raw/xdp_pingpong.c``: AF_XDP sockets through libxdp on both veth ends
  (copy mode, busy-polled rings, native XDP when the kernel takes it, else generic), frames
  built by hand.  The reference: the ratios are system / raw-c-xdp.
* ``raw-c-udp`` -- ``raw/udp_pingpong.c``: blocking kernel UDP sockets.
* ``raw-c-dpdk`` -- ``raw/dpdk_pingpong.c``: a DPDK port (net_af_packet on the veth end, one
  queue pair, busy-polled RX/TX bursts) in each namespace, EAL without hugepages and with a
  file prefix of its own per process (:func:`dpdk_eal_args`), frames built by hand.
* ``insane-xdp`` / ``insane-dpdk`` / ``insane-udp`` -- ``peers/pubsub.py insane``: INSANE
  pub/sub with the benchmark's channels (best effort, poll; ``fast`` for the first two) over
  AF_XDP / over DPDK (net_af_packet on the veth; a fast poll channel's route) / over kernel
  UDP, configured by :func:`insane_config`.

net_af_packet is a tap, not a bypass: the kernel gets a copy of every frame as well, and
answers the raw DPDK peers' (it has no socket on their ports) now and then with an ICMP port
unreachable, which the ports see and ignore (``icmp`` in their JSON).  The EAL leaves its
runtime directory under ``/var/run/dpdk`` behind; the harness removes those of its runs.

Throughput: each program's ``sink`` counts the data messages that arrive, from the first to
the last, and its ``blast`` sends ``--tput-count`` messages as fast as it can, then end
markers; ``msg/s`` is the sink's (received / first-to-last time), ``delivered`` is received /
sent.  Nothing has flow control (raw AF_XDP, raw DPDK, kernel UDP and INSANE's best-effort
channels alike), so what the sink cannot keep up with is lost, and shown.

The C programs are compiled here (``cc -O2``; DPDK's flags from ``pkg-config libdpdk``) when
missing or older than their source.
Each figure is the median over ``--repeat`` runs, the systems interleaved.  The set-up and
tear-down of the namespaces (:class:`VethPair`, :func:`setup_veth`, :func:`teardown_veth`,
:func:`veth_pair`) and the two-process runners (:func:`run_peers`, :func:`run_stream`) are
importable, so that further systems (Python processes in the namespaces) can be added as
:class:`System` entries.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import itertools
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    BENCH_DIR,
    Peer,
    PeerError,
    build_raw,
    default_warmup,
    environment,
    usable_cpus,
)

XDP_SRC = BENCH_DIR / "raw" / "xdp_pingpong.c"
XDP_BIN = BENCH_DIR / "raw" / "bin" / "xdp_pingpong"
DPDK_SRC = BENCH_DIR / "raw" / "dpdk_pingpong.c"
DPDK_BIN = BENCH_DIR / "raw" / "bin" / "dpdk_pingpong"
REFERENCE = "raw-c-xdp"
#: Namespaces made by this harness start with this, and its addresses lie in this subnet.
NS_PREFIX = "ixb-"
SUBNET = ipaddress.ip_network("10.77.200.0/24")
#: UDP port the raw AF_XDP client aims at (the AF_XDP server takes every frame of its queue).
XDP_PORT = 9000
#: UDP port of the raw DPDK server and sink (the client and blaster send from DPDK_PORT + 1).
DPDK_PORT = 9000
#: net_af_packet's ring (frames): room for a burst of the blaster (its default is 512).
AF_PACKET_FRAMES = 4096
#: Where the EAL of a root process keeps its runtime directory (one per --file-prefix).
DPDK_RUNTIME = Path("/var/run/dpdk")


# --------------------------------------------------------------------------- namespaces


@dataclass(frozen=True)
class VethPair:
    """Two network namespaces joined by a veth pair: side A (clients) and side B (servers)."""

    ns_a: str = "ixb-a"
    ns_b: str = "ixb-b"
    if_a: str = "ixb-va"
    if_b: str = "ixb-vb"
    ip_a: str = "10.77.200.1"
    ip_b: str = "10.77.200.2"
    mac_a: str = "02:77:c8:00:00:01"
    mac_b: str = "02:77:c8:00:00:02"
    prefix: int = 24
    mtu: int = 1500

    def check(self) -> None:
        """Refuse names and addresses outside what this harness may touch."""
        for ns in (self.ns_a, self.ns_b):
            if not ns.startswith(NS_PREFIX):
                raise ValueError(f"namespace {ns!r} does not start with {NS_PREFIX!r}")
        for ip in (self.ip_a, self.ip_b):
            if ipaddress.ip_address(ip) not in SUBNET:
                raise ValueError(f"address {ip} is outside {SUBNET}")
        if self.ns_a == self.ns_b:
            raise ValueError("the two sides need two namespaces")

    def in_a(self, argv: Sequence[Any]) -> list[str]:
        """``argv`` run inside namespace A."""
        return ["ip", "netns", "exec", self.ns_a, *(str(a) for a in argv)]

    def in_b(self, argv: Sequence[Any]) -> list[str]:
        """``argv`` run inside namespace B."""
        return ["ip", "netns", "exec", self.ns_b, *(str(a) for a in argv)]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def namespace_exists(name: str) -> bool:
    """Whether a named network namespace (``ip netns``) exists."""
    return Path("/run/netns", name).exists()


def setup_veth(pair: VethPair = VethPair(), replace: bool = True) -> VethPair:
    """Create the two namespaces and the veth pair between them; return ``pair``.

    Namespaces of the same names left by an earlier run that died are deleted first when
    ``replace`` (else it is an error).  On any failure, whatever was created is deleted.
    The veth is made inside namespace A with its peer placed straight into B, so no
    interface ever appears in the root namespace.
    """
    pair.check()
    for ns in (pair.ns_a, pair.ns_b):
        if namespace_exists(ns):
            if not replace:
                raise RuntimeError(f"network namespace {ns} exists already")
            print(f"# deleting stale network namespace {ns}", file=sys.stderr, flush=True)
            _ip("netns", "del", ns)
    one_queue = "numtxqueues 1 numrxqueues 1"
    try:
        for ns in (pair.ns_a, pair.ns_b):
            _ip("netns", "add", ns)
            # No IPv6: no router solicitations or MLD reports landing in the AF_XDP sockets.
            for conf in ("all", "default"):
                sysctl = f"echo 1 > /proc/sys/net/ipv6/conf/{conf}/disable_ipv6"
                _ip("netns", "exec", ns, "sh", "-c", sysctl)
            _ip(*f"-n {ns} link set lo up".split())
        _ip(
            *f"-n {pair.ns_a} link add {pair.if_a} address {pair.mac_a} mtu {pair.mtu} "
            f"{one_queue} type veth peer name {pair.if_b} address {pair.mac_b} mtu {pair.mtu} "
            f"{one_queue} netns {pair.ns_b}".split()
        )
        for ns, dev, ip, peer_ip, peer_mac in (
            (pair.ns_a, pair.if_a, pair.ip_a, pair.ip_b, pair.mac_b),
            (pair.ns_b, pair.if_b, pair.ip_b, pair.ip_a, pair.mac_a),
        ):
            _ip(*f"-n {ns} addr add {ip}/{pair.prefix} dev {dev}".split())
            _ip(*f"-n {ns} link set {dev} up".split())
            neigh = f"{peer_ip} lladdr {peer_mac} dev {dev} nud permanent"
            _ip(*f"-n {ns} neigh replace {neigh}".split())
    except BaseException:
        teardown_veth(pair)
        raise
    return pair


def teardown_veth(pair: VethPair = VethPair()) -> None:
    """Delete both namespaces (the veth pair and any XDP program on it go with them)."""
    for ns in (pair.ns_a, pair.ns_b):
        if namespace_exists(ns):
            proc = _ip("netns", "del", ns, check=False)
            if proc.returncode != 0:
                print(
                    f"# could not delete namespace {ns}: {proc.stderr.strip()}",
                    file=sys.stderr,
                    flush=True,
                )


@contextlib.contextmanager
def veth_pair(pair: VethPair = VethPair(), replace: bool = True) -> Iterator[VethPair]:
    """``with veth_pair() as p:`` -- the namespaces exist inside the block, never after it."""
    setup_veth(pair, replace)
    try:
        yield pair
    finally:
        teardown_veth(pair)


# --------------------------------------------------------------------------- systems


class Unavailable(RuntimeError):
    """A system cannot run here (missing compiler, library or module); the text says why."""


@dataclass(frozen=True)
class Settings:
    """What one repetition of every system measures."""

    size: int
    count: int
    warmup: int
    #: CPU placement: auto (each system's own preference), same, split, none
    pin: str = "auto"
    #: XDP_PINGPONG_MODE for the raw AF_XDP program: auto, native, generic
    xdp_mode: str = "auto"
    #: messages each throughput repetition sends (the same for every system)
    tput_count: int = 200_000


RunFn = Callable[[VethPair, Settings], dict[str, Any]]


@dataclass
class System:
    """One row of the table.

    ``run`` performs one repetition (server in ``pair.ns_b``, client in ``pair.ns_a``) and
    returns the client's result: at least ``p50_us``, ``p99_us``, ``msg_per_s``, ``done`` and
    ``lost``; anything else is kept in the JSON.  ``prepare`` runs once before the first
    repetition (build, import check) and raises :class:`Unavailable` when the system cannot
    run.  ``run`` chooses the placement ``--pin auto`` gives it (``preferred_pin`` of
    :func:`run_peers`): ``same`` (both peers on one CPU), ``split`` (one CPU each: needed by
    busy-polling peers) or ``none``.

    ``throughput``, when given, performs one throughput repetition (sink in ``pair.ns_b``,
    blaster in ``pair.ns_a``, ``settings.tput_count`` messages of ``settings.size`` bytes;
    :func:`run_stream` does the work) and returns the sink's result: at least ``msg_per_s``
    (received / first-to-last time at the sink), ``received``, ``sent`` (by the blaster) and
    ``delivered`` (received / sent).  Its peers always get a CPU each under ``--pin auto``.
    """

    name: str
    run: RunFn
    prepare: Callable[[], None] | None = None
    about: str = ""
    throughput: RunFn | None = None


def placement(settings: Settings, preferred: str) -> tuple[int | None, int | None]:
    """CPUs for (server, client) under ``settings.pin`` (``auto``: ``preferred``)."""
    pin = preferred if settings.pin == "auto" else settings.pin
    cpus = usable_cpus()
    if pin == "none":
        return None, None
    if pin == "same" or len(cpus) < 2:
        return cpus[0], cpus[0]
    return cpus[-1], cpus[0]


def run_peers(
    pair: VethPair,
    name: str,
    server_argv: Sequence[Any],
    client_argv: Callable[[int], Sequence[Any]],
    settings: Settings,
    preferred_pin: str = "same",
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Start ``server_argv`` in namespace B, wait for its ``ready [PORT]`` line, run
    ``client_argv(PORT)`` in namespace A and return the client's JSON result, with the
    server's (if it printed one) under ``"server"`` and the CPUs used under ``"cpus"``.

    Both are :class:`benchmarks.common.Peer` processes (repository root as cwd and on
    PYTHONPATH, ``env`` added to the environment), so a Python peer is started the same way
    as a C one: ``[sys.executable, "-m", "benchmarks.peers.x", ...]``.
    """
    server_cpu, client_cpu = placement(settings, preferred_pin)
    limit = 30.0 + (settings.count + settings.warmup) * 0.002
    with Peer(pair.in_b(server_argv), f"{name} server", server_cpu, env) as server:
        port = server.wait_ready()
        with Peer(pair.in_a(client_argv(port)), f"{name} client", client_cpu, env) as client:
            result = client.result(limit)
        with contextlib.suppress(PeerError):
            result["server"] = server.result(5.0)
    result["cpus"] = {"server": server_cpu, "client": client_cpu}
    return result


def run_stream(
    pair: VethPair,
    name: str,
    sink_argv: Sequence[Any],
    blast_argv: Callable[[int], Sequence[Any]],
    settings: Settings,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Start ``sink_argv`` in namespace B, wait for its ``ready [PORT]`` line, run
    ``blast_argv(PORT)`` in namespace A and return the sink's JSON result, completed with:
    ``sent`` (the blaster's count; the count the sink read from the end marker, -1 when none
    arrived, is kept as ``marker_sent``), ``delivered`` (received / sent), ``e2e_msg_per_s``
    (received / time from the blaster's first send to the sink's last receipt: both stamps are
    CLOCK_MONOTONIC, shared by the namespaces), the blaster's result under ``"blast"`` and the
    CPUs under ``"cpus"``.  The peers get a CPU each (``split``) unless ``--pin`` says
    otherwise: every sink here spins or would be starved by a spinning blaster.
    """
    sink_cpu, blast_cpu = placement(settings, "split")
    limit = 30.0 + settings.tput_count * 1e-4  # 10 us a message: far slower than any system
    with Peer(pair.in_b(sink_argv), f"{name} sink", sink_cpu, env) as sink:
        port = sink.wait_ready()
        with Peer(pair.in_a(blast_argv(port)), f"{name} blast", blast_cpu, env) as blaster:
            blasted = blaster.result(limit)
        result = sink.result(limit)
    received = int(result.get("received", 0))
    sent = int(blasted.get("sent", 0))
    result["marker_sent"] = result.pop("sent", -1)
    result["sent"] = sent
    result["delivered"] = received / sent if sent > 0 else 0.0
    span_s = (int(result.get("last_ns", 0)) - int(blasted.get("start_ns", 0))) / 1e9
    result["e2e_msg_per_s"] = received / span_s if received and span_s > 0 else 0.0
    result["blast"] = blasted
    result["cpus"] = {"sink": sink_cpu, "blast": blast_cpu}
    return result


def _compile(src: Path, out: Path, libs: Sequence[str] = (), cflags: Sequence[str] = ()) -> Path:
    """``cc -O2 -Wall -Wextra`` ``src`` into ``out`` when missing or older than the source."""
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            os.environ.get("CC", "cc"),
            "-O2",
            "-Wall",
            "-Wextra",
            *cflags,
            "-o",
            str(out),
            str(src),
            *libs,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise Unavailable(f"building {src.name} failed: {' '.join(cmd)}\n{proc.stderr}")
    return out


def build_xdp() -> Path:
    """The raw AF_XDP program, compiled when missing or stale (needs libxdp-dev, libbpf-dev)."""
    return _compile(XDP_SRC, XDP_BIN, ["-lxdp", "-lbpf"])


def _pkg_config(*args: str) -> list[str]:
    """``pkg-config ARGS`` split into words; :class:`Unavailable` when it fails."""
    try:
        proc = subprocess.run(
            ["pkg-config", *args], capture_output=True, text=True, timeout=30, check=False
        )
    except FileNotFoundError:
        raise Unavailable("pkg-config is not installed") from None
    if proc.returncode != 0:
        raise Unavailable(
            f"pkg-config {' '.join(args)}: {proc.stderr.strip() or proc.returncode} "
            "(DPDK's development files: Debian dpdk-dev)"
        )
    return proc.stdout.split()


def build_dpdk() -> Path:
    """The raw DPDK program, compiled when missing or stale (needs DPDK's development files,
    found through ``pkg-config libdpdk``)."""
    if DPDK_BIN.exists() and DPDK_BIN.stat().st_mtime >= DPDK_SRC.stat().st_mtime:
        return DPDK_BIN
    cflags = _pkg_config("--cflags", "libdpdk")
    libs = _pkg_config("--libs", "libdpdk")
    return _compile(DPDK_SRC, DPDK_BIN, libs, cflags)


def _build_xdp() -> None:
    build_xdp()


def _build_dpdk() -> None:
    build_dpdk()


def _build_udp() -> None:
    try:
        build_raw()
    except PeerError as e:
        raise Unavailable(str(e)) from None


def run_raw_xdp(pair: VethPair, s: Settings) -> dict[str, Any]:
    """Raw AF_XDP ping-pong: ``xdp_pingpong server`` on B's veth, ``client`` on A's."""
    binary = str(XDP_BIN)
    env = None if s.xdp_mode == "auto" else {"XDP_PINGPONG_MODE": s.xdp_mode}
    flow = [pair.mac_a, pair.mac_b, pair.ip_a, pair.ip_b, XDP_PORT]
    result = run_peers(
        pair,
        "raw-c-xdp",
        [binary, "server", pair.if_b, 0],
        lambda _port: [binary, "client", pair.if_a, 0, *flow, s.size, s.count, s.warmup],
        s,
        "split",
        env,
    )
    server_mode = result.get("server", {}).get("xdp_mode")
    if server_mode and server_mode != result.get("xdp_mode"):  # "client/server" when they differ
        result["xdp_mode"] = f"{result.get('xdp_mode')}/{server_mode}"
    return result


def tput_raw_xdp(pair: VethPair, s: Settings) -> dict[str, Any]:
    """Raw AF_XDP throughput: ``xdp_pingpong sink`` on B's veth, ``blast`` on A's."""
    binary = str(XDP_BIN)
    env = None if s.xdp_mode == "auto" else {"XDP_PINGPONG_MODE": s.xdp_mode}
    flow = [pair.mac_a, pair.mac_b, pair.ip_a, pair.ip_b, XDP_PORT]
    result = run_stream(
        pair,
        "raw-c-xdp",
        [binary, "sink", pair.if_b, 0, s.tput_count],
        lambda _port: [binary, "blast", pair.if_a, 0, *flow, s.size, s.tput_count],
        s,
        env,
    )
    blast_mode = result["blast"].get("xdp_mode")
    if blast_mode and blast_mode != result.get("xdp_mode"):  # "blaster/sink" when they differ
        result["xdp_mode"] = f"{blast_mode}/{result.get('xdp_mode')}"
    return result


def run_raw_udp(pair: VethPair, s: Settings) -> dict[str, Any]:
    """Raw kernel UDP ping-pong: ``udp_pingpong server`` bound to B's address."""
    binary = str(build_raw())
    return run_peers(
        pair,
        "raw-c-udp",
        [binary, "server", 0, pair.ip_b],
        lambda port: [binary, "client", pair.ip_b, port, s.size, s.count, s.warmup],
        s,
        "same",
    )


def tput_raw_udp(pair: VethPair, s: Settings) -> dict[str, Any]:
    """Raw kernel UDP throughput: ``udp_pingpong sink`` bound to B's address (recvmmsg),
    ``blast`` (sendmmsg) from A."""
    binary = str(build_raw())
    return run_stream(
        pair,
        "raw-c-udp",
        [binary, "sink", 0, s.tput_count, pair.ip_b],
        lambda port: [binary, "blast", pair.ip_b, port, s.size, s.tput_count],
        s,
    )


_eal_runs = itertools.count()


def dpdk_eal_args(iface: str, side: str) -> list[str]:
    """EAL arguments of one raw DPDK process on ``iface``: no hugepages (512 MiB of ordinary
    memory), no PCI scan, no shared files, a file prefix of its own (``ixb-dpdk-SIDE-PID-N``,
    so two processes run at once), no telemetry, errors only, and a net_af_packet port on the
    veth.  The program adds ``--lcores=0@(its CPUs)`` itself, keeping the harness's pinning."""
    prefix = f"ixb-dpdk-{side}-{os.getpid()}-{next(_eal_runs)}"
    return [
        "--no-huge", "-m", "512", "--no-pci", "--no-shconf", f"--file-prefix={prefix}",
        "--no-telemetry", "--log-level=*:error",
        f"--vdev=net_af_packet0,iface={iface},framecnt={AF_PACKET_FRAMES}",
    ]  # fmt: skip


@contextlib.contextmanager
def _eal_runtime_dirs(*eal_args: Sequence[str]) -> Iterator[None]:
    """Remove the runtime directories (``/var/run/dpdk/PREFIX``) that the EAL leaves behind
    even after ``rte_eal_cleanup``: those of the ``ixb-dpdk-`` prefixes in ``eal_args``, and
    the ``insane-PID`` ones (INSANE's default prefix) that appeared meanwhile, once empty and
    their process gone."""
    before = set(_runtime_dirs())
    try:
        yield
    finally:
        for args in eal_args:
            for a in args:
                prefix = a.partition("--file-prefix=")[2]
                if prefix.startswith("ixb-dpdk-") and "/" not in prefix:
                    shutil.rmtree(DPDK_RUNTIME / prefix, ignore_errors=True)
        for name in set(_runtime_dirs()) - before:
            pid = name.removeprefix("insane-")
            if name.startswith("insane-") and pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    (DPDK_RUNTIME / name).rmdir()  # only when empty


def _runtime_dirs() -> list[str]:
    try:
        return os.listdir(DPDK_RUNTIME)
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_raw_dpdk(pair: VethPair, s: Settings) -> dict[str, Any]:
    """Raw DPDK ping-pong: ``dpdk_pingpong server`` on a net_af_packet port on B's veth,
    ``client`` on A's."""
    binary = str(DPDK_BIN)
    eal_b, eal_a = dpdk_eal_args(pair.if_b, "b"), dpdk_eal_args(pair.if_a, "a")
    flow = [pair.mac_a, pair.mac_b, pair.ip_a, pair.ip_b, DPDK_PORT]
    with _eal_runtime_dirs(eal_a, eal_b):
        return run_peers(
            pair,
            "raw-c-dpdk",
            [binary, *eal_b, "--", "server", DPDK_PORT],
            lambda _port: [binary, *eal_a, "--", "client", *flow, s.size, s.count, s.warmup],
            s,
            "split",
        )


def tput_raw_dpdk(pair: VethPair, s: Settings) -> dict[str, Any]:
    """Raw DPDK throughput: ``dpdk_pingpong sink`` on B's veth, ``blast`` on A's."""
    binary = str(DPDK_BIN)
    eal_b, eal_a = dpdk_eal_args(pair.if_b, "b"), dpdk_eal_args(pair.if_a, "a")
    flow = [pair.mac_a, pair.mac_b, pair.ip_a, pair.ip_b, DPDK_PORT]
    with _eal_runtime_dirs(eal_a, eal_b):
        return run_stream(
            pair,
            "raw-c-dpdk",
            [binary, *eal_b, "--", "sink", DPDK_PORT, s.tput_count],
            lambda _port: [binary, *eal_a, "--", "blast", *flow, s.size, s.tput_count],
            s,
        )


#: Port of the INSANE peers' kernel sockets (AF_XDP and DPDK take the same one).
INSANE_PORT = 7700


def insane_config(pair: VethPair, side: str, transport: str) -> Path:
    """A YAML for one side: bound to its address, the other side as a static peer, and the
    benchmark's channels on ``transport`` (``xdp``: fast, over AF_XDP; ``dpdk``: fast, over a
    DPDK net_af_packet port on the side's veth -- the route of a fast poll channel is DPDK
    when DPDK is available, and INSANE adds the other EAL arguments itself; ``udp``: kernel
    UDP), best effort with busy polling, like the raw programs."""
    ip, other, iface = (
        (pair.ip_a, pair.ip_b, pair.if_a) if side == "a" else (pair.ip_b, pair.ip_a, pair.if_b)
    )
    words = ["best_effort", "poll"] if transport == "udp" else ["fast", "best_effort", "poll"]
    transports: dict[str, Any] = {"udp": {"bind": ip, "port": INSANE_PORT}}
    if transport == "xdp":
        transports["xdp"] = {"interface": iface}
    elif transport == "dpdk":
        transports["dpdk"] = {"eal_args": [f"--vdev=net_af_packet0,iface={iface}"]}
    config = {
        "domain": 7700,
        "transports": transports,
        "discovery": {
            "peers": [f"{other}:{INSANE_PORT}"],
            "multicast": {"enabled": False},
            "host_registry": False,
        },
        "channels": {"bench.>": {"qos": words}},
    }
    path = Path(f"/tmp/insane-xdp-veth-{side}-{transport}.yaml")
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def _insane_peer(pair: VethPair, transport: str, side: str, *role: Any) -> list[Any]:
    """argv of a ``pubsub.py insane ROLE ...`` peer on ``side`` with that side's config."""
    cfg = insane_config(pair, side, transport)
    return ["env", f"INSANE_CONFIG={cfg}", sys.executable, "-m",
            "benchmarks.peers.pubsub", "insane", *role]  # fmt: skip


def run_insane(transport: str) -> RunFn:
    """INSANE's pub/sub ping-pong (benchmarks/peers/pubsub.py) with its channels on
    ``transport``, one process per namespace."""

    def run(pair: VethPair, s: Settings) -> dict[str, Any]:
        def peer(side: str, *role: Any) -> list[Any]:
            return _insane_peer(pair, transport, side, *role)

        with _eal_runtime_dirs() if transport == "dpdk" else contextlib.nullcontext():
            return run_peers(
                pair,
                f"insane-{transport}",
                peer("b", "server", 0),
                lambda _port: peer("a", "client", pair.ip_b, 0, s.size, s.count, s.warmup),
                s,
                "split",
            )

    return run


def tput_insane(transport: str) -> RunFn:
    """INSANE's pub/sub throughput (``pubsub.py insane sink`` in B, ``blast`` in A; HOST and
    PORT are ignored by INSANE, whose peers find each other) with the same configs as the
    ping-pong: best effort, poll, no flow control."""

    def run(pair: VethPair, s: Settings) -> dict[str, Any]:
        with _eal_runtime_dirs() if transport == "dpdk" else contextlib.nullcontext():
            return run_stream(
                pair,
                f"insane-{transport}",
                _insane_peer(pair, transport, "b", "sink", 0, s.tput_count),
                lambda port: _insane_peer(
                    pair, transport, "a", "blast", pair.ip_b, port, s.size, s.tput_count
                ),
                s,
            )

    return run


def _insane_xdp_built() -> None:
    try:
        import insane._xdp  # type: ignore[import-not-found]  # noqa: F401
    except ImportError as e:
        raise Unavailable(f"insane._xdp is not built: {e}") from None


def _insane_dpdk_built() -> None:
    try:
        import insane._dpdk  # type: ignore[import-not-found]  # noqa: F401
    except ImportError as e:
        raise Unavailable(f"insane._dpdk is not built: {e}") from None


#: The rows, in the order they are run and shown.  Add entries here (or append to the list
#: from another module before calling :func:`main`).
SYSTEMS: list[System] = [
    System(
        "raw-c-xdp",
        run_raw_xdp,
        _build_xdp,
        about="C, AF_XDP via libxdp, copy mode, busy-polled rings, one CPU per peer",
        throughput=tput_raw_xdp,
    ),
    System(
        "raw-c-udp",
        run_raw_udp,
        _build_udp,
        about="C, blocking kernel UDP sockets, both peers on one CPU (throughput: one each)",
        throughput=tput_raw_udp,
    ),
    System(
        "raw-c-dpdk",
        run_raw_dpdk,
        _build_dpdk,
        about="C, DPDK net_af_packet port on each veth end, busy-polled bursts, one CPU per peer",
        throughput=tput_raw_dpdk,
    ),
    System(
        "insane-xdp",
        run_insane("xdp"),
        _insane_xdp_built,
        about="INSANE pub/sub, fast best-effort poll channel over AF_XDP, one CPU per peer",
        throughput=tput_insane("xdp"),
    ),
    System(
        "insane-dpdk",
        run_insane("dpdk"),
        _insane_dpdk_built,
        about="INSANE pub/sub, the fast channel over DPDK (net_af_packet), one CPU per peer",
        throughput=tput_insane("dpdk"),
    ),
    System(
        "insane-udp",
        run_insane("udp"),
        about="INSANE pub/sub, the same channel on kernel UDP (poll), one CPU per peer",
        throughput=tput_insane("udp"),
    ),
]


# --------------------------------------------------------------------------- measuring

#: What one run can measure (``--modes``), in the order they are run within a repetition.
MODES = ("pingpong", "throughput")


@dataclass
class Outcome:
    """Every repetition of one system, and their medians."""

    system: str
    about: str = ""
    runs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unavailable: str | None = None
    #: throughput repetitions (sink results, see :func:`run_stream`) and their failures
    tput_runs: list[dict[str, Any]] = field(default_factory=list)
    tput_errors: list[str] = field(default_factory=list)
    #: the system has no throughput function
    no_tput: bool = False

    def median(self, key: str) -> float | None:
        values = [float(r[key]) for r in self.runs if r.get("done") and key in r]
        return statistics.median(values) if values else None

    def summary(self) -> dict[str, Any]:
        modes = sorted({str(r["xdp_mode"]) for r in self.runs if "xdp_mode" in r})
        return {
            "p50_us": self.median("p50_us"),
            "p99_us": self.median("p99_us"),
            "msg_per_s": self.median("msg_per_s"),
            "runs": len(self.runs),
            "lost": sum(int(r.get("lost", 0)) for r in self.runs),
            **({"xdp_mode": ",".join(modes)} if modes else {}),
        }

    def tput_summary(self) -> dict[str, Any]:
        """Medians of the throughput runs; ``delivered`` is over all of them (sum received /
        sum sent), ``worst_delivered`` the lowest single run's."""
        runs = self.tput_runs

        def med(key: str) -> float | None:
            values = [float(r[key]) for r in runs if key in r]
            return statistics.median(values) if values else None

        received = sum(int(r.get("received", 0)) for r in runs)
        sent = sum(int(r.get("sent", 0)) for r in runs)
        modes = sorted({str(r["xdp_mode"]) for r in runs if "xdp_mode" in r})
        return {
            "msg_per_s": med("msg_per_s"),
            "e2e_msg_per_s": med("e2e_msg_per_s"),
            "send_msg_per_s": (
                statistics.median(float(r["blast"]["send_msg_per_s"]) for r in runs)
                if runs and all("send_msg_per_s" in r.get("blast", {}) for r in runs)
                else None
            ),
            "received": received,
            "sent": sent,
            "delivered": received / sent if sent > 0 else None,
            "worst_delivered": min((float(r["delivered"]) for r in runs), default=None),
            "duplicates": sum(int(r.get("duplicates", 0)) for r in runs),
            "reordered": sum(int(r.get("reordered", 0)) for r in runs),
            "runs": len(runs),
            **({"xdp_mode": ",".join(modes)} if modes else {}),
        }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    body = [list(headers), *(list(r) for r in rows)]
    widths = [max(len(r[i]) for r in body) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(body):
        cells = [
            r[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)),
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _rat(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _pct(fraction: float | None) -> str:
    """A delivered fraction as a percentage, rounded down: a loss never shows as 100.00."""
    return "-" if fraction is None else f"{math.floor(fraction * 10000) / 100:.2f}"


def _error_lines(system: str, errors: Sequence[str], what: str = "") -> list[str]:
    out = []
    for e in errors:
        lines = [ln for ln in e.strip().splitlines() if ln.strip()]
        out.append(
            f"! {system}{what}: {lines[0]}" + (f" ... {lines[-1]}" if len(lines) > 1 else "")
        )
    return out


def format_table(outcomes: Sequence[Outcome], reference: str, settings: Settings) -> str:
    """Ping-pong medians per system and ratios to ``reference`` (RTT: above 1 is slower;
    msg/s: below 1 is fewer round trips per second)."""
    ref = next((o.summary() for o in outcomes if o.system == reference and o.runs), None)
    rows = []
    for o in outcomes:
        if o.unavailable:
            continue
        s = o.summary()
        rows.append(
            [
                o.system,
                _fmt(s["p50_us"], ".1f"),
                _fmt(s["p99_us"], ".1f"),
                _fmt(s["msg_per_s"], ",.0f"),
                _rat(_ratio(s["p50_us"], ref["p50_us"] if ref else None)),
                _rat(_ratio(s["p99_us"], ref["p99_us"] if ref else None)),
                _rat(_ratio(s["msg_per_s"], ref["msg_per_s"] if ref else None)),
                f"{s['runs']}",
                s.get("xdp_mode", ""),
            ]
        )
    out = [
        f"== {settings.size} B ping-pong over veth, {settings.count} round trips "
        f"(+{settings.warmup} warm-up), medians; ratios are system / {reference} ==",
        _table(
            [
                "system",
                "p50 us",
                "p99 us",
                "rtt/s",
                "p50 ratio",
                "p99 ratio",
                "rtt/s ratio",
                "runs",
                "xdp",
            ],
            rows,
        ),
    ]
    for o in outcomes:
        if o.unavailable:
            out.append(f"{o.system}: unavailable ({o.unavailable.strip().splitlines()[0]})")
        out.extend(_error_lines(o.system, o.errors))
        lost = sum(int(r.get("lost", 0)) for r in o.runs)
        if lost:
            out.append(f"! {o.system}: {lost} round trips lost (1 s timeout each)")
    return "\n".join(out)


def format_tput_table(outcomes: Sequence[Outcome], reference: str, settings: Settings) -> str:
    """Throughput medians per system (msg/s at the sink, first to last message received),
    the share delivered, and msg/s as a ratio to ``reference`` (below 1: fewer per second)."""
    ref = next((o.tput_summary() for o in outcomes if o.system == reference and o.tput_runs), None)
    rows = []
    for o in outcomes:
        if o.unavailable or o.no_tput:
            continue
        s = o.tput_summary()
        rows.append(
            [
                o.system,
                _fmt(s["msg_per_s"], ",.0f"),
                _pct(s["delivered"]),
                _rat(_ratio(s["msg_per_s"], ref["msg_per_s"] if ref else None)),
                _fmt(s["send_msg_per_s"], ",.0f"),
                _fmt(s["e2e_msg_per_s"], ",.0f"),
                f"{s['runs']}",
                s.get("xdp_mode", ""),
            ]
        )
    out = [
        f"== {settings.size} B one-way throughput over veth, {settings.tput_count} messages "
        f"a run, medians; ratios are system / {reference} ==",
        _table(
            [
                "system",
                "msg/s",
                "delivered %",
                "msg/s ratio",
                "sent msg/s",
                "e2e msg/s",
                "runs",
                "xdp",
            ],
            rows,
        ),
        "(msg/s: received / first-to-last receipt at the sink; sent msg/s: the blaster's "
        "rate; e2e: received / blaster's first send to sink's last receipt; the raw programs "
        "send a datagram per message, INSANE packs a loop turn's messages into datagrams)",
    ]
    for o in outcomes:
        if o.unavailable:
            out.append(f"{o.system}: unavailable ({o.unavailable.strip().splitlines()[0]})")
            continue
        if o.no_tput:
            out.append(f"{o.system}: no throughput run")
            continue
        out.extend(_error_lines(o.system, o.tput_errors, " throughput"))
        s = o.tput_summary()
        if s["sent"] and s["received"] < s["sent"]:
            stops = ",".join(sorted({str(r.get("stop", "?")) for r in o.tput_runs}))
            out.append(
                f"! {o.system}: {s['sent'] - s['received']} of {s['sent']} messages lost over "
                f"{s['runs']} runs (worst run {_pct(s['worst_delivered'])} % delivered; "
                f"sink stopped on: {stops})"
            )
        for key in ("duplicates", "reordered"):
            if s[key]:
                out.append(f"! {o.system}: {s[key]} {key} messages")
        burst = _ratio(s["msg_per_s"], s["e2e_msg_per_s"])
        if burst is not None and burst > 1.25:
            out.append(
                f"! {o.system}: first-to-last rate is {burst:.1f}x the end-to-end one: messages "
                "arrived in bursts (try a larger --tput-count)"
            )
    return "\n".join(out)


def measure(
    systems: Sequence[System],
    settings: Settings,
    repeat: int,
    pair: VethPair,
    log: Callable[[str], None],
    modes: Sequence[str] = MODES,
) -> list[Outcome]:
    """Prepare every system, then run each ``repeat`` times on one veth pair: in each
    repetition every mode of ``modes`` in turn, and within a mode every system in turn."""
    outcomes = [Outcome(s.name, s.about, no_tput=s.throughput is None) for s in systems]
    for s, o in zip(systems, outcomes, strict=True):
        if s.prepare is not None:
            try:
                s.prepare()
            except Unavailable as e:
                o.unavailable = str(e)
                log(f"{s.name}: unavailable: {e}")
    with veth_pair(pair):
        for rep in range(repeat):
            for mode in (m for m in MODES if m in modes):
                for s, o in zip(systems, outcomes, strict=True):
                    if o.unavailable:
                        continue
                    if mode == "pingpong":
                        _pingpong_once(s, o, settings, pair, log, f"{rep + 1}/{repeat}")
                    elif s.throughput is not None:
                        _throughput_once(s, o, settings, pair, log, f"{rep + 1}/{repeat}")
    return outcomes


def _pingpong_once(
    s: System, o: Outcome, settings: Settings, pair: VethPair, log: Callable[[str], None], n: str
) -> None:
    started = time.monotonic()
    try:
        r = s.run(pair, settings)
    except PeerError as e:
        o.errors.append(str(e))
        log(f"{s.name:>12} ping-pong  {n}  FAILED: {e}")
        return
    o.runs.append(r)
    mode = f"  {r['xdp_mode']} XDP" if "xdp_mode" in r else ""
    log(
        f"{s.name:>12} ping-pong  {n}  p50 {r['p50_us']:7.1f} us"
        f"  p99 {r['p99_us']:7.1f} us  {r['msg_per_s']:10,.0f} rtt/s"
        f"  {r['done']}/{settings.count} done{mode}"
        f"  ({time.monotonic() - started:.1f} s)"
    )


def _throughput_once(
    s: System, o: Outcome, settings: Settings, pair: VethPair, log: Callable[[str], None], n: str
) -> None:
    assert s.throughput is not None
    started = time.monotonic()
    try:
        r = s.throughput(pair, settings)
    except PeerError as e:
        o.tput_errors.append(str(e))
        log(f"{s.name:>12} throughput {n}  FAILED: {e}")
        return
    o.tput_runs.append(r)
    mode = f"  {r['xdp_mode']} XDP" if "xdp_mode" in r else ""
    log(
        f"{s.name:>12} throughput {n}  {r['msg_per_s']:12,.0f} msg/s"
        f"  {r['received']}/{r['sent']} delivered ({_pct(r['delivered'])} %)"
        f"  sink stopped on {r.get('stop', '?')}{mode}"
        f"  ({time.monotonic() - started:.1f} s)"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.xdp_veth",
        description="Ping-pong and one-way throughput of the raw baselines (AF_XDP, kernel "
        "UDP, DPDK) and INSANE across a veth pair between two network namespaces of its own, as "
        "ratios to raw AF_XDP. Needs root.",
    )
    p.add_argument("--size", type=int, default=64, help="UDP payload bytes (1..1472)")
    p.add_argument("--count", type=int, default=20_000, help="measured round trips per run")
    p.add_argument("--warmup", type=int, default=None, help="warm-up round trips (10%%, <=1000)")
    p.add_argument(
        "--tput-count",
        type=int,
        default=200_000,
        help="messages each throughput run sends (the same for every system)",
    )
    p.add_argument(
        "--modes",
        default=",".join(MODES),
        help="comma-separated subset of " + ",".join(MODES) + " (default: both)",
    )
    p.add_argument("--repeat", type=int, default=3, help="runs per system (medians are shown)")
    p.add_argument(
        "--systems",
        default=None,
        help="comma-separated subset of " + ",".join(s.name for s in SYSTEMS) + " (default: all)",
    )
    p.add_argument(
        "--pin",
        choices=["auto", "same", "split", "none"],
        default="auto",
        help="CPU placement of server/sink and client/blaster: auto = each system's own for "
        "ping-pong (AF_XDP, DPDK and INSANE peers busy-poll, so one CPU each; UDP peers share "
        "one) and one CPU each for every throughput run; same, split or none apply to both modes",
    )
    p.add_argument(
        "--xdp-mode",
        choices=["auto", "native", "generic"],
        default="auto",
        help="XDP attach mode of the raw AF_XDP program (auto: native, else generic)",
    )
    p.add_argument("--reference", default=REFERENCE, help="the system ratios are taken against")
    p.add_argument("--json", metavar="FILE", help="also write every run and median to FILE")
    args = p.parse_args(argv)
    if not 1 <= args.size <= 1472:
        p.error("--size: 1..1472 bytes (one frame at an MTU of 1500)")
    if args.count < 1 or args.repeat < 1 or args.tput_count < 1:
        p.error("--count, --tput-count and --repeat must be positive")
    if args.warmup is None:
        args.warmup = default_warmup(args.count)
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad_modes = set(args.mode_list) - set(MODES)
    if bad_modes or not args.mode_list:
        p.error(f"--modes: unknown {', '.join(sorted(bad_modes))}; known: {','.join(MODES)}")
    names = [s.name for s in SYSTEMS]
    args.system_list = (
        names if args.systems is None else [n.strip() for n in args.systems.split(",") if n]
    )
    unknown = set(args.system_list) - set(names)
    if unknown:
        p.error(f"--systems: unknown {', '.join(sorted(unknown))}; known: {','.join(names)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("xdp_veth: needs root (network namespaces, XDP)", file=sys.stderr)
        return 2

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def on_term(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through veth_pair's clean-up

    signal.signal(signal.SIGTERM, on_term)
    settings = Settings(
        args.size, args.count, args.warmup, args.pin, args.xdp_mode, args.tput_count
    )
    systems = [s for s in SYSTEMS if s.name in args.system_list]
    modes = args.mode_list
    pair = VethPair()
    t0 = time.monotonic()
    outcomes = measure(systems, settings, args.repeat, pair, log, modes)
    log(f"# measured in {time.monotonic() - t0:.1f} s on {len(usable_cpus())} CPUs")
    tables = []
    if "pingpong" in modes:
        tables.append(format_table(outcomes, args.reference, settings))
    if "throughput" in modes:
        tables.append(format_tput_table(outcomes, args.reference, settings))
    print("\n\n".join(tables), flush=True)
    if args.json:
        ref = next((o.summary() for o in outcomes if o.system == args.reference), None)
        tref = next((o.tput_summary() for o in outcomes if o.system == args.reference), None)
        doc = {
            "environment": environment(),
            "settings": {
                **asdict(settings),
                "repeat": args.repeat,
                "modes": modes,
                "reference": args.reference,
                "veth": asdict(pair),
            },
            "results": [
                {
                    "system": o.system,
                    "about": o.about,
                    "unavailable": o.unavailable,
                    "median": o.summary(),
                    "ratios": {
                        k: _ratio(o.summary()[k], ref[k] if ref else None)
                        for k in ("p50_us", "p99_us", "msg_per_s")
                    },
                    "runs": o.runs,
                    "errors": o.errors,
                    "throughput": None
                    if o.no_tput
                    else {
                        "median": o.tput_summary(),
                        "ratios": {
                            "msg_per_s": _ratio(
                                o.tput_summary()["msg_per_s"], tref["msg_per_s"] if tref else None
                            )
                        },
                        "runs": o.tput_runs,
                        "errors": o.tput_errors,
                    },
                }
                for o in outcomes
            ],
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    failed = False
    for o in outcomes:
        failed |= o.unavailable is not None
        if "pingpong" in modes:
            failed |= bool(o.errors) or not o.runs
        if "throughput" in modes and not o.no_tput:
            failed |= bool(o.tput_errors) or not o.tput_runs
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
