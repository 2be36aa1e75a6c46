"""The engine's Sealer and Opener (insane/engine/src/aead.c, py_aead.c) against their reference,
insane/protocol/security.py: the same bytes sealed for the same counters, the same results and
the same WireErrors (reason and message) opened, on random and hostile schedules (tampered,
truncated, replayed, reordered, unknown keys, rotations, both modes); `open_batch` against the
node's `Inbound._open`; the bound of 65536 replay windows."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from insane.engine import native
from insane.engine.node import NATIVE_PARTS, NativeNode
from insane.protocol import security, wire
from insane.protocol.inbound import Inbound
from insane.protocol.security import Keyring

E = native()
KEYS = [os.urandom(32), os.urandom(40), os.urandom(64), os.urandom(33)]
DOMAIN = 7
U64 = 2**64 - 1

Outcome = tuple[Any, ...]


def outcome(call: Callable[[], Any]) -> Outcome:
    """What a call gives: its value, or its exception's type, message and reason."""
    try:
        return ("ok", call())
    except Exception as exc:
        return (type(exc).__name__, str(exc), getattr(exc, "reason", None))


def header(sender: int = 0xABCDEF, domain: int = DOMAIN, flags: int = 0) -> bytes:
    return wire.encode_header(domain, sender, flags)


def pair_sealers(ring: Keyring, encrypt: bool) -> tuple[security.Sealer, Any]:
    return security.Sealer(ring, encrypt), E.Sealer(ring, encrypt)


def pair_openers(ring: Keyring, require: bool) -> tuple[security.Opener, Any]:
    return security.Opener(ring, require), E.Opener(ring, require)


def both_seal(ps: security.Sealer, cs: Any, datagram: Any) -> Outcome:
    got = outcome(lambda: ps.seal(datagram))
    assert outcome(lambda: cs.seal(datagram)) == got
    assert ps._counter == cs._counter
    return got


def both_open(po: security.Opener, co: Any, datagram: bytes, now: float = 0.0) -> Outcome:
    got = outcome(lambda: po.open(datagram, now))
    assert outcome(lambda: co.open(datagram, now=now)) == got
    assert co.last_kid == po.last_kid
    return got


frames = st.binary(max_size=200)
datagrams = st.one_of(
    st.binary(max_size=60),
    st.builds(
        lambda sender, flags, body: header(sender, flags=flags) + body,
        st.integers(0, U64),
        st.integers(0, 255),
        frames,
    ),
)


# ------------------------------------------------------------------------------- sealing


@settings(max_examples=250, deadline=None)
@given(
    key=st.sampled_from(KEYS) | st.binary(min_size=32, max_size=80),
    encrypt=st.booleans(),
    start=st.integers(0, 50) | st.integers(0, U64 - 10),
    items=st.lists(
        st.tuples(datagrams, st.sampled_from([bytes, bytearray, memoryview])), max_size=8
    ),
)
def test_seal_is_byte_identical(
    key: bytes, encrypt: bool, start: int, items: list[tuple[bytes, Callable[[bytes], Any]]]
) -> None:
    ps, cs = pair_sealers(Keyring(key), encrypt)
    ps._counter = cs._counter = start
    for data, kind in items:  # (shorter than 16 bytes too: a shorter nonce; 4: IndexError)
        both_seal(ps, cs, kind(data))


def test_seal_of_datagrams_without_a_full_header() -> None:
    ps, cs = pair_sealers(Keyring(KEYS[0]), True)
    for n in range(20):
        got = both_seal(ps, cs, header()[:n])
        assert (got[0] == "IndexError") is (n < 4)
    assert cs._counter == 20  # (a failed seal spends its counter, as the reference's)


def test_attributes_follow_the_reference() -> None:
    ring = Keyring(KEYS[0])
    cs = E.Sealer(keyring=ring, encrypt=False)
    assert cs.keyring is ring and cs.encrypt is False and cs._counter == 0
    co = E.Opener(ring, require_encryption=True)
    assert co.keyring is ring and co.require_encryption is True and co.last_kid == b""
    cs.encrypt = True
    sealed = cs.seal(header() + b"frames")
    assert co.open(sealed) == header() + b"frames" and co.last_kid == security.key_id(KEYS[0])
    with pytest.raises(TypeError):
        E.Sealer(ring)
    with pytest.raises(TypeError):
        co.open(sealed, 0.0, 1)
    with pytest.raises(TypeError):
        co.open(datagram=sealed, when=1.0)
    with pytest.raises(TypeError):
        cs.seal("not bytes")
    assert NativeNode.sealer_class is E.Sealer and NativeNode.opener_class is E.Opener
    assert "aead" in NATIVE_PARTS


# ------------------------------------------------------------------------------- opening


@pytest.mark.parametrize("encrypt", [False, True])
def test_any_changed_bit_or_length_is_refused_alike(encrypt: bool) -> None:
    ps, cs = pair_sealers(Keyring(KEYS[1]), encrypt)
    sealed = both_seal(ps, cs, header() + b"some frames " * 5)[1]
    po, co = pair_openers(Keyring(KEYS[1]), False)
    reasons: Counter[str] = Counter()
    for i in range(len(sealed)):
        for bit in range(8):
            forged = bytearray(sealed)
            forged[i] ^= 1 << bit
            got = both_open(po, co, bytes(forged))
            assert got[0] == "WireError"
            reasons[got[2]] += 1
    for n in range(len(sealed)):
        assert both_open(po, co, sealed[:n])[0] == "WireError"
    assert both_open(po, co, sealed)[1] == header() + b"some frames " * 5
    assert both_open(po, co, sealed)[2] == "replay"
    assert set(reasons) <= {"unauthenticated", "unknown_key", "bad_auth"}


# One sealer per (key, sender, mode); an operation on the opened pair.
SEALERS = [(k, s, e) for k in range(3) for s in (1, 2, 0xFFFFFFFF00000001) for e in (False, True)]

op = st.one_of(
    st.tuples(st.just("seal"), st.integers(0, len(SEALERS) - 1), frames),
    st.tuples(st.just("replay"), st.integers(0, 1000)),
    st.tuples(st.just("flip"), st.integers(0, 1000), st.integers(0, 10_000), st.integers(0, 7)),
    st.tuples(st.just("cut"), st.integers(0, 1000), st.integers(0, 300)),
    st.tuples(st.just("flags"), st.integers(0, 1000), st.integers(0, 255)),
    st.tuples(st.just("jump"), st.integers(0, len(SEALERS) - 1), st.integers(-1100, 1100)),
    st.tuples(st.just("far"), st.integers(0, len(SEALERS) - 1), st.integers(0, U64)),
    st.tuples(st.just("garbage"), st.binary(max_size=120)),
    st.tuples(st.just("forged"), st.integers(0, 2), st.integers(0, 3), st.binary(max_size=80)),
)


@settings(max_examples=150, deadline=None)
@given(
    require=st.booleans(),
    until=st.floats(0, 100),
    ops=st.lists(st.tuples(op, st.floats(0, 200)), max_size=40),
)
def test_open_schedules_give_the_same_results(
    require: bool, until: float, ops: list[tuple[tuple[Any, ...], float]]
) -> None:
    # The opener holds keys 0 (current) and 1 (previous, until `until`); key 2 is unknown.
    po, co = pair_openers(Keyring(KEYS[0], [(KEYS[1], until)]), require)
    sealers = [pair_sealers(Keyring(KEYS[k]), e) for k, _s, e in SEALERS]
    sent: list[bytes] = [b""]
    for (name, *args), now in ops:
        last = sent[args[0] % len(sent)] if name in ("replay", "flip", "cut", "flags") else b""
        if name in ("seal", "jump", "far"):
            ps, cs = sealers[args[0]]
            if name == "jump":
                ps._counter = cs._counter = max(0, min(U64 - 1, ps._counter + args[1]))
            if name == "far":
                ps._counter = cs._counter = min(args[1], U64 - 1)
            body = args[1] if name == "seal" else b"x"
            sealed = both_seal(ps, cs, header(SEALERS[args[0]][1]) + body)
            if sealed[0] != "ok":  # (a spent counter: refused alike, nothing to open)
                continue
            data = sealed[1]
            sent.append(data)
        elif name == "replay":
            data = last
        elif name == "flip":
            data = bytearray(last) or bytearray(1)
            data[args[1] % len(data)] ^= 1 << args[2]
        elif name == "cut":
            data = last[: args[1]]
        elif name == "flags":
            data = bytearray(last.ljust(4, b"\0"))
            data[3] = args[1]
        elif name == "garbage":
            data = args[0]
        else:  # a known key id with a made-up counter and tag: refused by the tag
            flags = args[1] | security.FLAG_AUTHENTICATED
            data = header(flags=flags) + security.key_id(KEYS[args[0]]) + args[2].ljust(24, b"!")
        both_open(po, co, bytes(data), now)
    assert co.senders == len(po._windows)


counters = st.lists(
    st.one_of(
        st.integers(0, 3000),
        st.integers(U64 - 2000, U64),
        st.sampled_from([0, 1, 1023, 1024, 1025, 2047, 2048, 2049, 64, 63, 65, 128]),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(seq=counters, senders=st.lists(st.integers(0, 3), min_size=60, max_size=60))
def test_replay_windows_accept_and_refuse_alike(seq: list[int], senders: list[int]) -> None:
    ring = Keyring(KEYS[2])
    po, co = pair_openers(ring, False)
    ps = security.Sealer(ring, False)
    for counter, sender in zip(seq, senders, strict=False):
        ps._counter = counter - 1  # (counter 0 too)
        both_open(po, co, ps.seal(header(sender) + b"m"))


def test_reordering_within_the_window_and_replays() -> None:
    ring = Keyring(KEYS[0])
    po, co = pair_openers(ring, True)
    cs = E.Sealer(ring, True)
    sealed = [cs.seal(header() + bytes([i % 256])) for i in range(3000)]
    order = [2999, 1976, 1975, 2998, 0, 2000, 2999, 1980, 1980, *range(2500, 2600)]
    results = [both_open(po, co, sealed[i])[0] for i in order]
    assert results[:9] == ["ok", "ok", "WireError", "ok", "WireError", "ok", "WireError", "ok"] + [
        "WireError"
    ]


def test_windows_are_forgotten_when_65536_senders_are_held() -> None:
    ring = Keyring(KEYS[0])
    po, co = pair_openers(ring, False)
    cs = E.Sealer(ring, False)
    first = cs.seal(header(0) + b"m")
    both_open(po, co, first)
    for sender in range(1, E.AEAD_MAX_SENDERS):
        data = cs.seal(header(sender))
        assert po.open(data) == co.open(data)
    assert co.senders == len(po._windows) == 65536
    assert both_open(po, co, first)[2] == "replay"  # sender 0 still held
    both_open(po, co, cs.seal(header(65536)))  # one more: every window is forgotten first
    assert co.senders == len(po._windows) == 1
    assert both_open(po, co, first)[0] == "ok"  # (as the reference: a replay let through)


# ------------------------------------------------------------------------------- rotation


@settings(max_examples=60, deadline=None)
@given(
    encrypt=st.booleans(),
    rotations=st.lists(st.tuples(st.sampled_from(KEYS), st.floats(0, 100)), max_size=4),
    nows=st.lists(st.floats(0, 120), min_size=1, max_size=6),
)
def test_rotation_is_followed_by_objects_made_before_it(
    encrypt: bool, rotations: list[tuple[bytes, float]], nows: list[float]
) -> None:
    ring = Keyring(KEYS[0])  # the receiver's and sender's both
    po, co = pair_openers(ring, encrypt)
    ps, cs = pair_sealers(ring, encrypt)
    olds = [pair_sealers(Keyring(k), encrypt) for k in KEYS]  # peers that did not rotate
    n = 0
    for new, until in rotations:
        ring.rotate(new, accept_old_until=until)
        for now in nows:
            n += 1
            body = header(1000 + n) + b"after rotation"
            both_open(po, co, both_seal(ps, cs, body)[1], now)
            for i, (ops, ocs) in enumerate(olds):
                both_open(po, co, both_seal(ops, ocs, header(i) + b"old peer")[1], now)


def test_rotation_accepts_the_old_key_until_its_time() -> None:
    new = os.urandom(48)
    ring = Keyring(KEYS[0])
    opener = E.Opener(ring, True)
    old_sender, new_sender = E.Sealer(Keyring(KEYS[0]), True), E.Sealer(Keyring(new), True)
    assert opener.open(old_sender.seal(header(1)), now=50.0)
    with pytest.raises(wire.WireError) as e:
        opener.open(new_sender.seal(header(2)), now=50.0)
    assert e.value.reason == "unknown_key"
    ring.rotate(new, accept_old_until=100.0)
    assert opener.open(new_sender.seal(header(2)), now=50.0)
    assert opener.last_kid == security.key_id(new)
    assert opener.open(old_sender.seal(header(1)), now=100.0)
    with pytest.raises(wire.WireError, match=r"^unknown_key: sealed with a key we do not hold$"):
        opener.open(old_sender.seal(header(1)), now=100.5)


# ------------------------------------------------------------------------------- batches


def reference_open_batch(
    opener: security.Opener, batch: list[tuple[bytes, Any]], now: float, domain: int
) -> tuple[list[tuple[bytes, Any]], list[str], list[bytes]]:
    """Inbound._open's loop, with what it learns per datagram (the key id)."""
    out, drops, kids = [], [], []
    for data, addr in batch:
        try:
            if len(data) >= wire.HEADER_SIZE and wire.decode_header(data).domain != domain:
                raise wire.WireError("foreign_domain")
            opened = opener.open(data, now)
        except wire.WireError as exc:
            drops.append(exc.reason)
            continue
        out.append((opened, addr))
        kids.append(opener.last_kid)
    return out, drops, kids


item = st.one_of(
    st.tuples(st.just("sealed"), st.integers(0, 2), st.integers(0, 3), frames),
    st.tuples(st.just("domain"), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("again"), st.integers(0, 100)),
    st.tuples(st.just("magic"), st.binary(min_size=3, max_size=3)),
    st.tuples(st.just("raw"), st.binary(max_size=50)),
)


@settings(max_examples=150, deadline=None)
@given(
    require=st.booleans(),
    batches=st.lists(st.lists(item, max_size=12), max_size=4),
    domain=st.sampled_from([DOMAIN, DOMAIN, 0, 2**32 - 1, 2**32, -1, 2**70]),
)
def test_open_batch_is_the_nodes_open(
    require: bool, batches: list[list[tuple[Any, ...]]], domain: int
) -> None:
    po, co = pair_openers(Keyring(KEYS[0], [(KEYS[1], 50.0)]), require)
    sealers = [E.Sealer(Keyring(KEYS[k]), e) for k in range(3) for e in (False, True)]
    sent = [header()]
    for n, items in enumerate(batches):
        batch = []
        for i, (name, *args) in enumerate(items):
            if name == "sealed":
                data = sealers[args[0] * 2 + args[1] % 2].seal(header(args[1]) + args[2])
            elif name == "domain":  # sealed for another domain, or this one
                data = sealers[0].seal(header(9, domain=args[0] % 3 + DOMAIN - 1) + b"frames")
            elif name == "again":
                data = sent[args[0] % len(sent)]
            elif name == "magic":  # another magic or version
                data = args[0] + sealers[1].seal(header(5))[3:]
            else:
                data = args[0]
            sent.append(data)
            batch.append((data, ("10.0.0.1", i)))
        now = n * 30.0
        want = reference_open_batch(po, batch, now, domain)
        opened, drops = co.open_batch(batch, now, domain)
        assert (opened, drops, co.batch_kids) == want
        assert co.last_kid == po.last_kid


class _Stub:
    """What Inbound._open touches on a node."""

    def __init__(self, opener: Any, identities: Any) -> None:
        self._opener = opener
        self._identities = identities
        self._sender_perms: dict[int, Any] = {}
        self.domain = DOMAIN
        self.dropped: Counter[str] = Counter()

    def _wall_clock(self) -> float:
        return 10.0

    def _drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] += n


class _Identities:
    def __init__(self) -> None:
        self.by_key = {security.key_id(KEYS[0]): "me", security.key_id(KEYS[1]): "other"}
        self.permissions = {"me": "perms of me", "other": "perms of other"}


@pytest.mark.parametrize("identities", [None, _Identities()])
def test_native_nodes_open_has_the_references_effects(identities: Any) -> None:
    ring = Keyring(KEYS[0], [(KEYS[1], float("inf"))])
    py_node, c_node = (
        _Stub(security.Opener(ring, False), identities),
        _Stub(E.Opener(ring, False), identities),
    )
    sealers = [E.Sealer(Keyring(k), False) for k in KEYS[:3]]
    batch = []
    for i in range(40):
        data = sealers[i % 3].seal(header(i % 5) + b"frames")
        batch += [(data, i), (data, i), (data[:-1], i), (header(domain=3) + data[16:], i)]
    batch += [(b"", 0), (b"IN\x09" + bytes(20), 0), (b"XX" + bytes(50), 0)]
    node_open: Any = NativeNode._open
    assert node_open(c_node, batch) == Inbound._open(py_node, batch)  # type: ignore[arg-type]
    assert c_node.dropped == py_node.dropped
    assert c_node._sender_perms == py_node._sender_perms
    assert (c_node._sender_perms != {}) is (identities is not None)


@pytest.mark.parametrize("encrypt", [False, True])
def test_a_spent_counter_is_refused_alike_and_never_reused(encrypt: bool) -> None:
    """At the last 64-bit counter both seal once more, then refuse with the same
    OverflowError, and the counter stays where it was (a nonce is never used twice)."""
    ps, cs = pair_sealers(Keyring(KEYS[0]), encrypt)
    ps._counter = cs._counter = U64 - 1
    both_seal(ps, cs, header() + b"last")
    for _ in range(2):
        assert both_seal(ps, cs, header() + b"spent")[0] == "OverflowError"
        assert ps._counter == cs._counter == U64
