"""Authenticated, optionally encrypted datagrams with replay protection (sans-IO).

A domain shares a secret key (at least 32 bytes, from a file or an environment variable, never
from the YAML itself).  With ``security.mode: authenticate`` every datagram, discovery and
control traffic included, carries an AES-GCM tag over all of it; with ``encrypt`` its frames
are encrypted as well.  The 16-byte datagram header stays in clear (it says who sent it and
which domain it belongs to) and is authenticated too.

Secured datagram::

    header (16, flags: 0x01 authenticated, 0x02 encrypted)
    key id (4: the first bytes of SHA-256 of the key)
    counter (8: the sender's datagram counter, never repeated for a key)
    frames (clear, or encrypted)
    tag (16)

The nonce is the sender's peer id (in the header) and the counter, so no two datagrams of a
key share one while peer ids are unique.  A receiver keeps, per sender, the highest counter
seen and a window of the 1024 before it: a replayed (or much delayed) datagram is refused.

Key rotation: a :class:`Keyring` seals with its current key and opens with it or with any
previous key still accepted (``accept_until``), so peers can switch keys one by one.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from insane.protocol.wire import HEADER_SIZE, WireError

FLAG_AUTHENTICATED = 0x01
FLAG_ENCRYPTED = 0x02
MIN_KEY_BYTES = 32
TAG_SIZE = 16
_SECURE = struct.Struct("!4sQ")  # key id, counter
_LAST_COUNTER = 2**64 - 1  # (a sealer refuses to go past it: a nonce is never used twice)
PREFIX_SIZE = _SECURE.size
OVERHEAD = PREFIX_SIZE + TAG_SIZE
#: How far behind the highest counter seen a datagram may still arrive (reordering).
REPLAY_WINDOW = 1024


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:4]


@dataclass
class _Key:
    kid: bytes
    aead: AESGCM
    accept_until: float = float("inf")


@dataclass
class Keyring:
    """The current key and the previous ones still accepted."""

    current: bytes
    previous: list[tuple[bytes, float]] = field(default_factory=list)  # (key, accept until)

    def __post_init__(self) -> None:
        for key in [self.current] + [k for k, _ in self.previous]:
            if len(key) < MIN_KEY_BYTES:
                raise ValueError(f"a key must hold at least {MIN_KEY_BYTES} bytes")
        self._sealing = self._make(self.current, float("inf"))
        self._keys = {self._sealing.kid: self._sealing}
        for key, until in self.previous:
            k = self._make(key, until)
            self._keys.setdefault(k.kid, k)

    @staticmethod
    def _make(key: bytes, until: float) -> _Key:
        # AES-256-GCM with a key derived from the secret (whatever its length).
        return _Key(
            key_id(key), AESGCM(hashlib.sha256(b"insane-datagram-v1" + key).digest()), until
        )

    def rotate(self, new: bytes, accept_old_until: float) -> None:
        """Seal with ``new`` from now on; keep opening with the old key until then."""
        old = self.current
        self.previous.append((old, accept_old_until))
        self.current = new
        self.__post_init__()


class Sealer:
    """Seals what one sender sends."""

    def __init__(self, keyring: Keyring, encrypt: bool) -> None:
        self.keyring = keyring
        self.encrypt = encrypt
        self._counter = 0

    def seal(self, datagram: bytes | bytearray) -> bytes:
        key = self.keyring._sealing
        if self._counter >= _LAST_COUNTER:  # (a nonce is never used twice: refuse, count none)
            raise OverflowError("the sealer's 64-bit counter is spent")
        self._counter += 1
        flags = FLAG_AUTHENTICATED | (FLAG_ENCRYPTED if self.encrypt else 0)
        header = bytearray(datagram[:HEADER_SIZE])
        header[3] |= flags
        prefix = bytes(header) + _SECURE.pack(key.kid, self._counter)
        nonce = _nonce(bytes(header), self._counter)
        frames = bytes(datagram[HEADER_SIZE:])
        if self.encrypt:
            return prefix + key.aead.encrypt(nonce, frames, prefix)
        return prefix + frames + key.aead.encrypt(nonce, b"", prefix + frames)


def _nonce(header: bytes, counter: int) -> bytes:
    # 12 bytes: the low 32 bits of the sender id, then the counter (sender ids are random
    # 64-bit values; with the key id they make nonce reuse across senders implausible, and a
    # sender never repeats a counter).
    return header[12:16] + counter.to_bytes(8, "big")


@dataclass
class _ReplayWindow:
    highest: int = 0
    seen: int = 0  # bit i: counter highest - i was seen

    def check_and_mark(self, counter: int) -> bool:
        if counter > self.highest:
            shift = counter - self.highest
            if shift >= REPLAY_WINDOW:
                self.seen = 1
            else:
                self.seen = ((self.seen << shift) | 1) & ((1 << REPLAY_WINDOW) - 1)
            self.highest = counter
            return True
        back = self.highest - counter
        if back >= REPLAY_WINDOW or self.seen >> back & 1:
            return False
        self.seen |= 1 << back
        return True


class Opener:
    """Checks and opens what arrives; raises :class:`WireError` (a metric label) otherwise."""

    def __init__(self, keyring: Keyring, require_encryption: bool) -> None:
        self.keyring = keyring
        self.require_encryption = require_encryption
        self._windows: dict[int, _ReplayWindow] = {}
        #: The key id of the last datagram opened (who sent it, with identities).
        self.last_kid = b""

    def open(self, datagram: bytes, now: float = 0.0) -> bytes:
        if len(datagram) < HEADER_SIZE + OVERHEAD:
            raise WireError("unauthenticated", "too short to carry a tag")
        flags = datagram[3]
        if not flags & FLAG_AUTHENTICATED:
            raise WireError("unauthenticated", "no tag")
        encrypted = bool(flags & FLAG_ENCRYPTED)
        if self.require_encryption and not encrypted:
            raise WireError("unencrypted", "clear frames where encryption is required")
        kid, counter = _SECURE.unpack_from(datagram, HEADER_SIZE)
        key = self.keyring._keys.get(kid)
        if key is None or now > key.accept_until:
            raise WireError("unknown_key", "sealed with a key we do not hold")
        body_at = HEADER_SIZE + PREFIX_SIZE
        prefix = datagram[:body_at]
        nonce = _nonce(datagram[:HEADER_SIZE], counter)
        try:
            if encrypted:
                frames = key.aead.decrypt(nonce, datagram[body_at:], prefix)
            else:
                frames = datagram[body_at:-TAG_SIZE]
                key.aead.decrypt(nonce, datagram[-TAG_SIZE:], prefix + frames)
        except InvalidTag:
            raise WireError("bad_auth", "tag does not match") from None
        sender = int.from_bytes(datagram[8:16], "big")
        window = self._windows.get(sender)
        if window is None:
            if len(self._windows) >= 65536:
                self._windows.clear()
            window = self._windows[sender] = _ReplayWindow()
        if not window.check_and_mark(counter):
            raise WireError("replay", "counter already seen or too old")
        self.last_kid = kid
        header = bytearray(datagram[:HEADER_SIZE])
        header[3] &= ~(FLAG_AUTHENTICATED | FLAG_ENCRYPTED) & 0xFF
        return bytes(header) + frames
