"""Ethernet/IPv4/UDP framing and next-hop MAC resolution for the kernel-bypass transports.

A transport that bypasses the kernel (AF_XDP, DPDK) must write the headers the kernel would
have written. Per destination it keeps a 42-byte header template (:func:`udp_header`: MACs,
addresses, ports, TTL); the native layer copies it in front of each datagram and fills in the
lengths, the IP id and both checksums. :func:`build_frame` and :func:`parse_frame` do the same
in Python: the reference the native code is tested against, and what tests feed the kernel.

The next hop's MAC comes from the kernel: the route to the destination (its gateway, or the
destination itself on a directly connected network) and the neighbour table. When the table
has no entry, :func:`arp_resolve` asks on the wire with an ARP request from an AF_PACKET
socket (ARP replies are not ours to redirect, so the kernel and AF_PACKET both see them).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import struct
import subprocess
import time
from dataclasses import dataclass

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
HEADER_SIZE = 42  # Ethernet 14 + IPv4 20 + UDP 8
TTL = 64

_ETH = struct.Struct("!6s6sH")
_IP = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")


class FrameError(ValueError):
    """Not a well-formed IPv4/UDP frame; ``reason`` is a drop reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def mac_bytes(mac: str) -> bytes:
    parts = mac.split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return bytes(int(p, 16) for p in parts)


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The Internet checksum (RFC 1071) of ``data``: the complement of the folded sum."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total: int = initial + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo(src: bytes, dst: bytes, udp_len: int) -> int:
    words: tuple[int, ...] = struct.unpack("!4H", src + dst)
    return sum(words) + socket.IPPROTO_UDP + udp_len


def udp_header(
    src_mac: bytes, dst_mac: bytes, src: tuple[str, int], dst: tuple[str, int]
) -> bytes:
    """The header template for one destination: lengths and checksums left at 0."""
    eth = _ETH.pack(dst_mac, src_mac, ETH_P_IP)
    ip = _IP.pack(
        0x45, 0, 0, 0, 0x4000, TTL, socket.IPPROTO_UDP, 0,  # DF set, as the kernel does
        socket.inet_aton(src[0]), socket.inet_aton(dst[0]),
    )  # fmt: skip
    return eth + ip + _UDP.pack(src[1], dst[1], 0, 0)


def build_frame(header: bytes, payload: bytes, ip_id: int = 0) -> bytes:
    """A complete frame from a template and a payload, as the native layer builds it."""
    if len(header) != HEADER_SIZE:
        raise ValueError("header: 42 bytes")
    ip = bytearray(header[14:34])
    udp = bytearray(header[34:42])
    struct.pack_into("!H", ip, 2, 28 + len(payload))
    struct.pack_into("!H", ip, 4, ip_id & 0xFFFF)
    struct.pack_into("!H", ip, 10, 0)
    struct.pack_into("!H", ip, 10, checksum(ip))
    ulen = 8 + len(payload)
    struct.pack_into("!H", udp, 4, ulen)
    struct.pack_into("!H", udp, 6, 0)
    c = checksum(bytes(udp) + payload, _pseudo(bytes(ip[12:16]), bytes(ip[16:20]), ulen))
    struct.pack_into("!H", udp, 6, c or 0xFFFF)
    return header[:14] + bytes(ip) + bytes(udp) + payload


@dataclass(frozen=True)
class UdpFrame:
    src_mac: bytes
    dst_mac: bytes
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


def parse_frame(frame: bytes) -> UdpFrame:
    """Check and take apart an IPv4/UDP frame (the rules of the native receive path)."""
    if len(frame) < HEADER_SIZE:
        raise FrameError("truncated")
    dst_mac, src_mac, ethertype = _ETH.unpack_from(frame)
    if ethertype != ETH_P_IP:
        raise FrameError("malformed")
    vihl = frame[14]
    ihl = (vihl & 0x0F) * 4
    total = struct.unpack_from("!H", frame, 16)[0]
    frag = struct.unpack_from("!H", frame, 20)[0]
    if vihl >> 4 != 4 or ihl < 20 or frame[23] != socket.IPPROTO_UDP:
        raise FrameError("malformed")
    if total < ihl + 8 or 14 + total > len(frame) or frag & 0x3FFF:
        raise FrameError("malformed")
    ip = frame[14 : 14 + ihl]
    if checksum(ip) != 0:
        raise FrameError("bad_checksum")
    udp = frame[14 + ihl : 14 + total]
    sport, dport, ulen, field = _UDP.unpack_from(udp)
    if ulen < 8 or ulen > len(udp):
        raise FrameError("malformed")
    src, dst = ip[12:16], ip[16:20]
    if field:
        pseudo = _pseudo(src, dst, ulen)
        folded = pseudo
        while folded >> 16:
            folded = (folded & 0xFFFF) + (folded >> 16)
        # complete, or only the pseudo-header part (checksum offload to a NIC that a veth
        # does not have: CHECKSUM_PARTIAL as written by the sending kernel)
        if checksum(udp[:ulen], pseudo) != 0 and field != folded:
            raise FrameError("bad_checksum")
    return UdpFrame(
        src_mac,
        dst_mac,
        (socket.inet_ntoa(src), sport),
        (socket.inet_ntoa(dst), dport),
        bytes(udp[8:ulen]),
    )


# ------------------------------------------------------------------------- interfaces, MACs


def interface_mac(ifname: str) -> bytes:
    with open(f"/sys/class/net/{ifname}/address") as f:
        return mac_bytes(f.read().strip())


def interface_mtu(ifname: str) -> int:
    with open(f"/sys/class/net/{ifname}/mtu") as f:
        return int(f.read())


def interface_ipv4(ifname: str) -> str | None:
    """The interface's first IPv4 address."""
    out = subprocess.run(
        ["ip", "-j", "-4", "addr", "show", "dev", ifname], capture_output=True, text=True
    )
    if out.returncode != 0:
        return None
    for link in json.loads(out.stdout or "[]"):
        for a in link.get("addr_info", []):
            if a.get("family") == "inet":
                return str(a["local"])
    return None


def next_hop(dst: str, ifname: str) -> str | None:
    """The address whose MAC a frame to ``dst`` carries: the gateway, or ``dst`` itself; None
    when the route to ``dst`` does not leave through ``ifname``."""
    out = subprocess.run(["ip", "-j", "route", "get", dst], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    routes = json.loads(out.stdout or "[]")
    if not routes or routes[0].get("dev") != ifname:
        return None
    return str(routes[0].get("gateway", dst))


def routed_networks(ifname: str) -> list[ipaddress.IPv4Network]:
    """The IPv4 networks the kernel routes through ``ifname`` (0.0.0.0/0 for a default
    route): where datagrams that arrive by that interface come from."""
    out = subprocess.run(
        ["ip", "-j", "-4", "route", "show", "dev", ifname], capture_output=True, text=True
    )
    nets = []
    for r in json.loads(out.stdout or "[]") if out.returncode == 0 else []:
        dst = r.get("dst", "")
        nets.append(ipaddress.IPv4Network("0.0.0.0/0" if dst == "default" else dst, strict=False))
    return nets


def neighbour_mac(ip: str, ifname: str) -> bytes | None:
    """The kernel's neighbour-table entry for ``ip`` on ``ifname``, if it is usable."""
    out = subprocess.run(
        ["ip", "-j", "neigh", "show", ip, "dev", ifname], capture_output=True, text=True
    )
    if out.returncode != 0:
        return None
    for entry in json.loads(out.stdout or "[]"):
        states = set(entry.get("state", []))
        if "lladdr" in entry and not states & {"FAILED", "INCOMPLETE"}:
            return mac_bytes(entry["lladdr"])
    return None


def arp_request(src_mac: bytes, src_ip: str, target_ip: str) -> bytes:
    eth = _ETH.pack(b"\xff" * 6, src_mac, ETH_P_ARP)
    arp = _ARP.pack(
        1, ETH_P_IP, 6, 4, 1, src_mac, socket.inet_aton(src_ip), b"\0" * 6,
        socket.inet_aton(target_ip),
    )  # fmt: skip
    return eth + arp


def arp_reply_mac(frame: bytes, target_ip: str) -> bytes | None:
    """The sender MAC of an ARP reply from ``target_ip``, else None."""
    if len(frame) < 14 + _ARP.size or _ETH.unpack_from(frame)[2] != ETH_P_ARP:
        return None
    htype, ptype, hlen, plen, op, sha, spa, _tha, _tpa = _ARP.unpack_from(frame, 14)
    if (htype, ptype, hlen, plen, op) != (1, ETH_P_IP, 6, 4, 2):
        return None
    return bytes(sha) if spa == socket.inet_aton(target_ip) else None


def arp_resolve(ifname: str, src_ip: str, target_ip: str, timeout: float = 1.0) -> bytes | None:
    """Ask the wire for ``target_ip``'s MAC (three requests within ``timeout``)."""
    src_mac = interface_mac(ifname)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s:
        s.bind((ifname, ETH_P_ARP))
        request = arp_request(src_mac, src_ip, target_ip)
        deadline = time.monotonic() + timeout
        for attempt in range(3):
            s.send(request)
            until = min(deadline, time.monotonic() + timeout / 3)
            while (left := until - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    frame = s.recv(2048)
                except TimeoutError:
                    break
                mac = arp_reply_mac(frame, target_ip)
                if mac is not None:
                    return mac
            if time.monotonic() >= deadline or attempt == 2:
                break
    return None


def resolve_mac(dst: str, ifname: str, src_ip: str, arp_timeout: float = 1.0) -> bytes | None:
    """The next-hop MAC for ``dst``: neighbour table first, then ARP; None if unreachable
    through ``ifname``."""
    hop = next_hop(dst, ifname)
    if hop is None:
        return None
    if ipaddress.ip_address(hop).is_loopback:
        return None
    mac = neighbour_mac(hop, ifname)
    if mac is None and os.geteuid() == 0:
        mac = arp_resolve(ifname, src_ip, hop, arp_timeout)
    return mac
