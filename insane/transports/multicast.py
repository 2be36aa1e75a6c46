"""Kernel UDP multicast socket that receives discovery beacons on a LAN segment.

Beacons are *sent* from the session's unicast socket (so their source address is where to
answer); this socket only listens on the group, joined on the chosen interfaces. Several
processes on one host share the group port (SO_REUSEADDR): the kernel gives each a copy.
"""

from __future__ import annotations

import asyncio
import socket

from insane.transports.base import Address, ReceiveCallback
from insane.transports.netif import Interface


class MulticastListener:
    def __init__(self, group: str, port: int, interfaces: list[Interface]) -> None:
        self.group = group
        self.port = port
        self.interfaces = interfaces
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self, on_receive: ReceiveCallback) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setblocking(False)
            sock.bind((self.group, self.port))
            for iface in self.interfaces:
                assert iface.ipv4 is not None
                mreq = socket.inet_aton(self.group) + socket.inet_aton(iface.ipv4)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._loop = asyncio.get_running_loop()

        def readable() -> None:
            batch: list[tuple[bytes, Address]] = []
            try:
                for _ in range(64):
                    batch.append(sock.recvfrom(65536))
            except OSError:
                pass
            if batch:
                on_receive(batch)

        self._loop.add_reader(sock.fileno(), readable)

    async def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(sock.fileno())
        sock.close()


def configure_sender(sock: socket.socket, ttl: int) -> None:
    """Let the unicast socket send beacons to the group with the given TTL, looped locally too."""
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)


def send_beacon(sock: socket.socket, data: bytes, group: str, port: int, iface: Interface) -> None:
    assert iface.ipv4 is not None
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(iface.ipv4))
    try:
        sock.sendto(data, (group, port))
    except OSError:
        pass  # interface went away or no route: the next beacon tries again
