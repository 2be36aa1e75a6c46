"""Fuzz every decoder that sees network input: at least 1,000,000 inputs, nothing may escape.

    .venv/bin/python -m benchmarks.fuzz_decoders                 # 1,000,000 inputs (~1 min)
    .venv/bin/python -m benchmarks.fuzz_decoders --count 5000000 --seed 7

Inputs are built from valid datagrams of every kind (messages with replies, headers and queue
groups, fragments, interest, heartbeats, announcements, flow control and reliability frames,
sealed and encrypted datagrams) mutated at random: bytes flipped, inserted, deleted,
truncated, lengths set to extremes, frames spliced from other datagrams, and plain random
bytes.  Each input goes through what the receive path does with it: the secure opener, the
header, the frame walk, the native scan of plain frames, and every body decoder.  The only
exception allowed is ``WireError`` (counted as a drop); anything else is a failure, printed
with the input.  Memory is sampled: the process may not grow by more than 64 MiB.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import time

from insane.protocol import speedups, wire
from insane.protocol.security import Keyring, Opener, Sealer
from insane.protocol.validate import decode_body

KEY = b"k" * 32


def corpus() -> list[bytes]:
    head = wire.encode_header(9, 0x0102030405060708)
    frames = [
        wire.frame(wire.MSG, wire.encode_msg_body(b"a.b", b"", b"", (), b"payload")),
        wire.frame(
            wire.MSG,
            wire.encode_msg_body(
                b"orders.eu",
                b"_INBOX.x.1",
                wire.encode_headers({"k": "v"}),
                (b"q1", b"q2"),
                b"x" * 40,
            ),
        ),
        wire.frame(wire.HEARTBEAT, wire.heartbeat_body(1, 2, 3, 4)),
        wire.frame(wire.ANNOUNCE, wire.announce_body({"name": "n", "transports": ["udp"]})),
        wire.frame(wire.WINDOW, wire.window_body(100, 4096)),
        wire.frame(wire.ACK, wire.stream_number_body(2, 77, 10)),
        wire.frame(wire.NACK, wire.nack_body(2, 77, [(1, 3), (5, 9)])),
        wire.frame(wire.TAIL, wire.stream_number_body(1, 77, 7)),
        wire.frame(wire.GAP, wire.gap_body(2, 77, 3, 4, 5)),
        wire.encode_frag(1, 100, 0, wire.MSG, b"y" * 50),
        wire.position_frame(12345),
        wire.seq_frame(2, 77, 99, 16 + 21),
    ]
    out = [head + f for f in frames]
    numbered = bytearray(head + wire.position_frame(5) + wire.seq_frame(2, 77, 1))
    numbered += b"".join(frames[:2])
    wire.write_seq(numbered, len(head) + wire.POSITION_FRAME_SIZE, 2, 77, 1)
    out.append(bytes(numbered))
    sealer = Sealer(Keyring(KEY), False)
    encrypter = Sealer(Keyring(KEY), True)
    out += [sealer.seal(d) for d in out[:4]] + [encrypter.seal(d) for d in out[:4]]
    return out


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    d = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        if op == 0 and d:
            d[rng.randrange(len(d))] = rng.randrange(256)
        elif op == 1:
            d.insert(rng.randrange(len(d) + 1), rng.randrange(256))
        elif op == 2 and d:
            del d[rng.randrange(len(d))]
        elif op == 3:
            d = d[: rng.randrange(len(d) + 1)]
        elif op == 4 and len(d) > 20:
            at = rng.randrange(16, len(d) - 2)  # a length field to an extreme
            d[at : at + 2] = rng.choice([b"\xff\xff", b"\x00\x00", b"\x80\x00"])
        elif op == 5:
            other = rng.choice(seeds)
            d += other[rng.randrange(len(other)) :]
        else:
            d = bytearray(os.urandom(rng.randrange(0, 80)))
    return bytes(d)


def consume(data: bytes, opener: Opener) -> None:
    """What the receive path does with a datagram, minus delivery."""
    if len(data) > 3 and data[3] & 0x01:
        data = opener.open(data)
    wire.decode_header(data)
    table = {b"a.b": 1, b"orders.eu": 2}
    pos = wire.HEADER_SIZE
    while pos < len(data):
        _runs, pos = speedups.scan_plain(data, pos, table)
        if pos >= len(data):
            break
        if len(data) - pos < wire.FRAME_HEADER_SIZE:
            raise wire.WireError("truncated")
        ftype, _f, length = wire.FRAME_HEADER.unpack_from(data, pos)
        start, pos = pos + wire.FRAME_HEADER_SIZE, pos + wire.FRAME_HEADER_SIZE + length
        if pos > len(data):
            raise wire.WireError("truncated")
        decode_body(ftype, data, start, pos)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fuzz_decoders", description=__doc__)
    p.add_argument("--count", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    seeds = corpus()
    opener = Opener(Keyring(KEY), False)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    dropped = accepted = 0
    t0 = time.monotonic()
    for i in range(args.count):
        data = mutate(rng, seeds)
        try:
            consume(data, opener)
            accepted += 1
        except wire.WireError:
            dropped += 1
        except Exception as exc:
            print(f"FAIL at input {i}: {type(exc).__name__}: {exc}\n  input: {data.hex()}")
            return 1
        if i % 100_000 == 0:
            opener = Opener(Keyring(KEY), False)  # (fresh replay windows now and then)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    seconds = time.monotonic() - t0
    print(
        f"{args.count:,} inputs in {seconds:.1f} s ({args.count / seconds:,.0f}/s): "
        f"{dropped:,} dropped as malformed, {accepted:,} accepted, no other exception; "
        f"native scan: {speedups.NATIVE}; max RSS grew {grown_mib:.1f} MiB"
    )
    return 0 if grown_mib < 64 else 1


if __name__ == "__main__":
    sys.exit(main())
