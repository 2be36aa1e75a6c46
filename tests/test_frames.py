"""Ethernet/IPv4/UDP framing for the kernel-bypass transports (insane/transports/frames.py):
frames round-trip, checksums are right, and every malformed or corrupted frame is refused."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from insane.transports import frames
from insane.transports.frames import FrameError

SRC_MAC, DST_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
HEADER = frames.udp_header(SRC_MAC, DST_MAC, ("10.77.1.1", 7000), ("10.77.1.2", 7001))


def test_header_template_fields() -> None:
    assert len(HEADER) == frames.HEADER_SIZE
    assert HEADER[:6] == DST_MAC and HEADER[6:12] == SRC_MAC and HEADER[12:14] == b"\x08\x00"
    assert HEADER[14] == 0x45 and HEADER[22] == frames.TTL and HEADER[23] == socket.IPPROTO_UDP
    assert HEADER[26:30] == socket.inet_aton("10.77.1.1")
    assert struct.unpack("!HH", HEADER[34:38]) == (7000, 7001)


@given(st.binary(max_size=1472), st.integers(0, 0xFFFF))
def test_round_trip(payload: bytes, ip_id: int) -> None:
    frame = frames.build_frame(HEADER, payload, ip_id)
    assert len(frame) == 42 + len(payload)
    assert frames.checksum(frame[14:34]) == 0  # the IP header checksum verifies
    f = frames.parse_frame(frame)
    assert (f.src, f.dst, f.payload) == (("10.77.1.1", 7000), ("10.77.1.2", 7001), payload)
    assert (f.src_mac, f.dst_mac) == (SRC_MAC, DST_MAC)


def test_known_checksum() -> None:
    """RFC 1071's example: the sum of 0001 f203 f4f5 f6f7 is ddf2, complemented 220d."""
    assert frames.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


@given(st.binary(min_size=1, max_size=200), st.data())
def test_any_flipped_bit_is_refused_or_harmless(payload: bytes, data: st.DataObject) -> None:
    """A bit flipped anywhere in the IP or UDP header or the payload is caught by a checksum
    or a length check (MACs are the link's business, not checked here)."""
    frame = bytearray(frames.build_frame(HEADER, payload, 1))
    pos = data.draw(st.integers(14, len(frame) - 1))
    frame[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(FrameError):
        frames.parse_frame(bytes(frame))


def test_partial_checksum_from_a_veth_kernel_sender_is_accepted() -> None:
    """CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum, not the checksum."""
    payload = b"kernel sent this"
    frame = bytearray(frames.build_frame(HEADER, payload))
    ulen = 8 + len(payload)
    pseudo = sum(struct.unpack("!4H", bytes(frame[26:34]))) + 17 + ulen
    while pseudo >> 16:
        pseudo = (pseudo & 0xFFFF) + (pseudo >> 16)
    struct.pack_into("!H", frame, 40, pseudo)
    assert frames.parse_frame(bytes(frame)).payload == payload
    struct.pack_into("!H", frame, 40, pseudo ^ 0x0100)  # anything else is refused
    with pytest.raises(FrameError, match="bad_checksum"):
        frames.parse_frame(bytes(frame))


def test_no_checksum_is_allowed_in_ipv4() -> None:
    frame = bytearray(frames.build_frame(HEADER, b"x"))
    frame[40:42] = b"\0\0"
    assert frames.parse_frame(bytes(frame)).payload == b"x"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda f: f[:30], "truncated"),
        (lambda f: f[:12] + b"\x86\xdd" + f[14:], "malformed"),  # IPv6
        (lambda f: f[:20] + b"\x20\x00" + f[22:], "malformed"),  # more fragments
        (lambda f: f[:23] + b"\x06" + f[24:], "malformed"),  # TCP
        (lambda f: f[:16] + b"\x05\xdc" + f[18:], "malformed"),  # total length past the end
    ],
)
def test_malformed_frames(mutate: object, reason: str) -> None:
    frame = frames.build_frame(HEADER, b"0123456789")
    with pytest.raises(FrameError, match=reason):
        frames.parse_frame(mutate(frame))  # type: ignore[operator]


def test_arp_request_and_reply() -> None:
    req = frames.arp_request(SRC_MAC, "10.77.1.1", "10.77.1.2")
    assert req[:6] == b"\xff" * 6 and req[12:14] == b"\x08\x06" and len(req) == 42
    reply = (
        SRC_MAC + DST_MAC + b"\x08\x06"
        + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + DST_MAC + socket.inet_aton("10.77.1.2")
        + SRC_MAC + socket.inet_aton("10.77.1.1")
    )  # fmt: skip
    assert frames.arp_reply_mac(reply, "10.77.1.2") == DST_MAC
    assert frames.arp_reply_mac(reply, "10.77.1.3") is None
    assert frames.arp_reply_mac(req, "10.77.1.2") is None  # a request is not a reply
