"""Authenticated and encrypted datagrams with replay protection and key rotation
(insane/protocol/security.py), and hostile input against them."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insane.protocol import wire
from insane.protocol.security import Keyring, Opener, Sealer

KEY = os.urandom(32)  # as `head -c 32 /dev/urandom > key` makes it


def datagram(sender: int = 0xABCDEF, body: bytes = b"secret payload " * 4) -> bytes:
    frame = wire.frame(wire.MSG, wire.encode_msg_body(b"a.b", b"", b"", (), body))
    return wire.encode_header(7, sender) + frame


@pytest.mark.parametrize("encrypt", [False, True])
def test_sealed_datagrams_open_to_what_was_sent(encrypt: bool) -> None:
    ring = Keyring(KEY)
    sealer, opener = Sealer(ring, encrypt), Opener(Keyring(KEY), require_encryption=encrypt)
    d = datagram()
    sealed = sealer.seal(d)
    assert (b"secret payload" in sealed) is not encrypt  # encrypt: no plaintext on the wire
    assert opener.open(sealed) == d


@pytest.mark.parametrize("encrypt", [False, True])
def test_any_changed_byte_is_refused(encrypt: bool) -> None:
    sealed = Sealer(Keyring(KEY), encrypt).seal(datagram())
    for i in range(len(sealed)):
        forged = bytearray(sealed)
        forged[i] ^= 0x01
        with pytest.raises(wire.WireError):
            Opener(Keyring(KEY), False).open(bytes(forged))


def test_replays_are_refused_and_reordering_is_not() -> None:
    sealer, opener = Sealer(Keyring(KEY), False), Opener(Keyring(KEY), False)
    first, second, third = (sealer.seal(datagram()) for _ in range(3))
    opener.open(third)
    opener.open(first)  # late, within the window: fine
    with pytest.raises(wire.WireError) as e:
        opener.open(first)  # the same again: a replay
    assert e.value.reason == "replay"
    opener.open(second)


def test_wrong_key_missing_tag_and_clear_frames_where_encryption_is_required() -> None:
    sealed = Sealer(Keyring(os.urandom(32)), False).seal(datagram())
    with pytest.raises(wire.WireError) as e:
        Opener(Keyring(KEY), False).open(sealed)
    assert e.value.reason == "unknown_key"
    with pytest.raises(wire.WireError) as e:
        Opener(Keyring(KEY), False).open(datagram() + bytes(28))
    assert e.value.reason == "unauthenticated"
    with pytest.raises(wire.WireError) as e:
        Opener(Keyring(KEY), True).open(Sealer(Keyring(KEY), False).seal(datagram()))
    assert e.value.reason == "unencrypted"


def test_key_rotation_accepts_the_old_key_during_the_rollover() -> None:
    new = os.urandom(48)
    old_sender = Sealer(Keyring(KEY), True)
    receiver_ring = Keyring(KEY)
    receiver_ring.rotate(new, accept_old_until=100.0)
    opener = Opener(receiver_ring, True)
    new_sender = Sealer(Keyring(new), True)
    assert opener.open(new_sender.seal(datagram()), now=50.0)
    old_peer = datagram(sender=0x1234)  # another peer, still on the old key
    assert opener.open(old_sender.seal(old_peer), now=50.0)  # still in the rollover
    with pytest.raises(wire.WireError) as e:
        opener.open(old_sender.seal(old_peer), now=101.0)  # window closed
    assert e.value.reason == "unknown_key"


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        Keyring(b"too short")


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_opens_and_never_crashes(data: bytes) -> None:
    opener = Opener(Keyring(KEY), False)
    with pytest.raises(wire.WireError):
        opener.open(wire.encode_header(7, 1)[:4] + data)
