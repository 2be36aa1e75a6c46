"""DPDK transport: batches of UDP datagrams through a DPDK poll-mode port, on the same UDP
port as the session's kernel socket.

The native layer (insane._dpdk, insane/native/_dpdk.c) runs the EAL and one ethdev port: a
PCI NIC, or a virtual device on a kernel interface (``net_af_packet``, ``net_af_xdp``,
``net_tap``). The EAL starts once per process, from ``transports.dpdk.eal_args`` plus what a
small machine needs when they do not say otherwise (:func:`eal_arguments`: ``--no-huge -m
512`` without hugepages, a private file prefix, no telemetry, the process's own CPUs); its
error message is what ``insane doctor`` shows. It is cleaned up at exit, and on SIGTERM when
the application has not taken that signal itself.

A port has no file descriptor to wake the event loop: ``consumption: poll`` busy-polls it
(``spin``), ``low`` polls it from a timer that backs off from 20 us to 1 ms while idle.
Next hops come from the kernel's neighbour table where a kernel interface is known, else from
ARP through the port itself; until then datagrams go by the kernel socket. A virtual device
on a kernel interface shows the kernel's copy of each frame to both sides: the kernel socket
ignores datagrams from sources the port delivers (:attr:`sources`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from insane.ops.process import at_exit, process_alive
from insane.transports import frames
from insane.transports.base import Address, ReceiveCallback, Transport
from insane.transports.bypass import BypassTransport

log = logging.getLogger("insane.dpdk")

#: Where the EAL keeps a runtime directory per file prefix (root; others: XDG_RUNTIME_DIR).
_RUNTIME = Path("/var/run/dpdk") if os.geteuid() == 0 else Path(
    os.environ.get("XDG_RUNTIME_DIR", "/tmp")
) / "dpdk"
_BURST = 64
_POLL_MIN, _POLL_MAX = 20e-6, 1e-3
_ARP_TIMEOUT = 1.0

_eal_args: list[str] | None = None


def hugepages_free() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("HugePages_Free:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


#: net_af_packet's ring: room for a flow-control window (4 MiB) of 2 KiB frames, and more
#: (its default of 512 frames overflows under a full window and costs retransmissions).
_AF_PACKET_FRAMES = 4096


def eal_arguments(user: Sequence[str]) -> list[str]:
    """The EAL's arguments: the configured ones, plus defaults for what they leave out."""
    args = [
        f"{a},framecnt={_AF_PACKET_FRAMES}"
        if "net_af_packet" in a and "framecnt=" not in a
        else a
        for a in user
    ]
    text = " ".join(args)
    if "--no-huge" not in text and "--huge-dir" not in text and hugepages_free() == 0:
        args.insert(0, "--no-huge")
        if not re.search(r"(^| )(-m|--socket-mem)", text):
            args[1:1] = ["-m", "512"]
    if "--file-prefix" not in text and "--in-memory" not in text:
        args += [f"--file-prefix=insane-{os.getpid()}", "--no-shconf"]
    if "--vdev" in text and not re.search(r"(^| )(-a|--allow|-b|--block|--no-pci)", text):
        args.append("--no-pci")  # virtual devices only: leave the host's PCI NICs alone
    if "telemetry" not in text:
        args.append("--no-telemetry")
    if not re.search(r"(^| )(-l|-c|--lcores)", text):
        cpus = ",".join(map(str, sorted(os.sched_getaffinity(0))))
        args.append(f"--lcores=0@({cpus})")  # the main lcore keeps the process's CPUs
    if "--log-level" not in text:
        args.append("--log-level=*:error")
    return args


def start_eal(user: Sequence[str]) -> list[str]:
    """Start the EAL in this process (once); raises OSError with the EAL's own message."""
    global _eal_args
    from insane import _dpdk  # type: ignore[attr-defined]

    args = eal_arguments(user)
    if _eal_args is not None:
        if _eal_args != args:
            raise OSError(
                "the EAL already runs in this process with other arguments "
                f"({' '.join(_eal_args)}); DPDK starts it once per process"
            )
        return args
    _prune_runtime_dirs()
    _dpdk.init(args)
    _eal_args = args
    at_exit(stop_eal)
    log.info("EAL: %s", " ".join(args))
    return args


def stop_eal() -> None:
    """Stop every port and end the EAL (it cannot start again in this process), and remove
    the runtime directory it leaves behind."""
    from insane import _dpdk  # type: ignore[attr-defined]

    if _dpdk.cleanup():
        shutil.rmtree(_RUNTIME / f"insane-{os.getpid()}", ignore_errors=True)
        log.info("EAL: ports stopped, cleaned up")


def _prune_runtime_dirs() -> None:
    """Runtime directories of our processes that are gone (killed: no cleanup ran)."""
    for d in _RUNTIME.glob("insane-*"):
        pid = d.name.removeprefix("insane-")
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def vdev_interface(eal_args: Sequence[str]) -> str | None:
    """The kernel interface of a virtual device in the EAL arguments (``iface=NAME``)."""
    for a in eal_args:
        m = re.search(r"--vdev[= ]?\S*iface=([^,\s]+)", a)
        if m:
            return m.group(1)
    return None


class DpdkTransport(BypassTransport):
    name = "dpdk"
    DROPS = {"malformed": "malformed", "bad_checksum": "bad_checksum", "rx_ring_full": "rx_missed"}

    def __init__(
        self,
        eal_args: Sequence[str],
        port: int,
        ip: str,
        udp_port: int,
        *,
        fallback: Transport,
        interface: str | None = None,
    ) -> None:
        interface = interface or vdev_interface(eal_args)
        mtu = frames.interface_mtu(interface) if interface else 1500
        super().__init__(ip, udp_port, fallback, mtu - 28)
        self._eal = list(eal_args)
        self._port_id = port
        self.interface = interface
        #: net_af_xdp takes every frame of its queue (ARP included) from the kernel: next hops
        #: are then resolved by ARP through the port, not by the kernel's neighbour table.
        self._kernel_neighbours = interface is not None and not any(
            "net_af_xdp" in a for a in eal_args
        )
        self._port: Any = None
        self._timer: asyncio.Handle | None = None
        self._delay = _POLL_MIN
        self._arp_asked: dict[str, float] = {}  # next hop -> when we asked
        self._arp_waiting: dict[str, list[Address]] = {}
        #: A tap (net_af_packet) shows the kernel every frame the port gets: the networks
        #: routed through its interface, whose datagrams the kernel socket must ignore.
        self._tap = interface is not None and any("net_af_packet" in a for a in eal_args)
        self._shadowed: list[ipaddress.IPv4Network] = []
        self._shadow_cache: dict[str, bool] = {}
        self.driver = ""

    # ------------------------------------------------------------------ lifecycle

    async def start(self, on_receive: ReceiveCallback) -> None:
        from insane import _dpdk  # type: ignore[attr-defined]

        start_eal(self._eal)
        self._port = _dpdk.Port(self._port_id, self._ip, [self._udp_port])
        self.driver = str(self._port.driver)
        self._opened(on_receive, bytes(self._port.mac))
        if self._tap and self.interface is not None:
            self._shadowed = frames.routed_networks(self.interface)
        assert self._loop is not None
        self._timer = self._loop.call_later(0, self._poll)
        log.info(
            "DPDK port %d (%s, %s) on port %d",
            self._port_id,
            self.driver,
            frames.mac_text(self._mac),
            self._udp_port,
        )

    async def close(self) -> None:
        if self._port is None:
            return
        await self._closing()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        port, self._port = self._port, None
        port.close()

    def _poll(self) -> None:
        """Poll the port from the event loop (it has no descriptor to wake it): at every
        loop turn while a ``poll`` subscription exists, else (``low``) from a timer that
        backs off while idle."""
        self._timer = None
        if self._port is None or self._loop is None:
            return
        got = self._deliver_available()
        if self._port is None:
            return
        if self.poll_idle:
            self._timer = self._loop.call_soon(self._poll)
            return
        self._delay = _POLL_MIN if got else min(self._delay * 2, _POLL_MAX)
        self._timer = self._loop.call_later(self._delay, self._poll)

    # ------------------------------------------------------------------ the datapath

    def _recv(self) -> list[tuple[bytes, Address]]:
        batch: list[tuple[bytes, Address]] = self._port.recv(_BURST)
        if self._arp_asked:
            self._take_arp_replies()
        return batch

    def shadows(self, addr: Address) -> bool:
        """Datagrams from ``addr`` reach the kernel socket too, as copies of what the port
        delivers (a tap on the interface they arrive by): the kernel's must be ignored."""
        if not self._shadowed or addr[0] == self._ip:  # this host's own, by loopback
            return False
        known = self._shadow_cache.get(addr[0])
        if known is None:
            ip = ipaddress.ip_address(addr[0])
            known = self._shadow_cache[addr[0]] = any(ip in n for n in self._shadowed)
        return known

    def _send_items(self, items: list[tuple[bytes, bytes]]) -> int:
        n: int = self._port.send(items)
        return n

    def _native_stats(self) -> dict[str, int]:
        return dict(self._port.stats())

    # ------------------------------------------------------------------ next hops

    def _resolve(self, addr: Address) -> None:
        """The kernel's neighbour table where a kernel interface stands behind the port (in a
        worker thread), else an ARP request through the port itself."""
        assert self._loop is not None
        if self._kernel_neighbours and self.interface is not None:
            fut = self._loop.run_in_executor(
                None, frames.resolve_mac, addr[0], self.interface, self._ip, _ARP_TIMEOUT
            )
            fut.add_done_callback(lambda f: self._resolved(addr, f))
            return
        hop = addr[0]
        self._arp_waiting.setdefault(hop, []).append(addr)
        if hop not in self._arp_asked:
            self._arp_asked[hop] = time.monotonic()
            self._port.send_raw(frames.arp_request(self._mac, self._ip, hop))

    def _take_arp_replies(self) -> None:
        now = time.monotonic()
        for frame in self._port.arp_replies():
            for hop in list(self._arp_asked):
                mac = frames.arp_reply_mac(frame, hop)
                if mac is not None:
                    del self._arp_asked[hop]
                    for addr in self._arp_waiting.pop(hop, []):
                        self._set_header(addr, mac)
        for hop, asked in list(self._arp_asked.items()):
            if now - asked > _ARP_TIMEOUT:  # no answer: ask again on the next send
                del self._arp_asked[hop]
                for addr in self._arp_waiting.pop(hop, []):
                    self._retry_later(addr)

    def _resolved(self, addr: Address, fut: asyncio.Future[bytes | None]) -> None:
        try:
            mac = fut.result()
        except Exception as exc:
            log.warning("next hop of %s:%d: %s", *addr, exc)
            mac = None
        if mac is None:
            self._unreachable(addr)
        else:
            self._set_header(addr, mac)

