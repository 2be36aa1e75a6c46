"""Network interfaces of this host (name, index, IPv4 address, flags, MTU), read through ioctls."""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass

_SIOCGIFFLAGS = 0x8913
_SIOCGIFADDR = 0x8915
_SIOCGIFMTU = 0x8921
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_MULTICAST = 0x1000


@dataclass(frozen=True)
class Interface:
    name: str
    index: int
    ipv4: str | None
    flags: int
    mtu: int

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def loopback(self) -> bool:
        return bool(self.flags & IFF_LOOPBACK)

    @property
    def multicast(self) -> bool:
        return bool(self.flags & IFF_MULTICAST)


def _ioctl(sock: socket.socket, request: int, name: str) -> bytes:
    return fcntl.ioctl(sock.fileno(), request, struct.pack("256s", name.encode()[:15]))


def interfaces() -> list[Interface]:
    out: list[Interface] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for index, name in socket.if_nameindex():
            try:
                flags = struct.unpack_from("H", _ioctl(s, _SIOCGIFFLAGS, name), 16)[0]
                mtu = struct.unpack_from("i", _ioctl(s, _SIOCGIFMTU, name), 16)[0]
            except OSError:
                continue
            try:
                ipv4: str | None = socket.inet_ntoa(_ioctl(s, _SIOCGIFADDR, name)[20:24])
            except OSError:
                ipv4 = None
            out.append(Interface(name, index, ipv4, flags, mtu))
    return out


def by_name(name: str) -> Interface | None:
    return next((i for i in interfaces() if i.name == name), None)


def by_address(addr: str) -> Interface | None:
    return next((i for i in interfaces() if i.ipv4 == addr), None)


def resolve_bind(bind: str) -> str:
    """Resolve ``transports.udp.bind``: an IPv4 address, ``0.0.0.0`` or an interface name."""
    try:
        ipaddress.IPv4Address(bind)
        return bind
    except ValueError:
        pass
    iface = by_name(bind)
    if iface is None or iface.ipv4 is None:
        raise OSError(f"transports.udp.bind: no interface with an IPv4 address named {bind!r}")
    return iface.ipv4


def multicast_interfaces(bind_addr: str) -> list[Interface]:
    """Interfaces on which discovery beacons go for a socket bound to ``bind_addr``.

    Bound to a loopback address: none (nothing may leave the host). Bound to one address: its
    interface. Bound to ``0.0.0.0``: every up, multicast-capable, non-loopback interface.
    """
    if ipaddress.IPv4Address(bind_addr).is_loopback:
        return []
    cands = [i for i in interfaces() if i.up and i.multicast and not i.loopback and i.ipv4]
    if bind_addr != "0.0.0.0":
        cands = [i for i in cands if i.ipv4 == bind_addr]
    return cands


def path_mtu(bind_addr: str) -> int:
    """The smallest MTU a datagram from ``bind_addr`` may cross (loopback: its own MTU)."""
    if bind_addr == "0.0.0.0":
        mtus = [i.mtu for i in interfaces() if i.up and not i.loopback]
        return min(mtus) if mtus else 1500
    iface = by_address(bind_addr)
    if iface is None:
        return 65536 if ipaddress.IPv4Address(bind_addr).is_loopback else 1500
    return iface.mtu
