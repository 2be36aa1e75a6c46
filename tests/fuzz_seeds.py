"""Seeds for the native engine's fuzzer (.ci/engine-fuzz): real datagrams as the Python data
plane writes them (messages, POSITION and SEQ, fragments, acknowledgements, sealed ones), each
file prefixed with the byte that chooses the harness's part (fuzz_receive.c).

    python tests/fuzz_seeds.py DIR
"""

from __future__ import annotations

import os
import random
import sys

from insane.protocol import security, wire

#: The key the harness's opener holds (aead_fuzz_one in insane/engine/src/aead.c).
FUZZ_KEY = bytes(0x5A ^ i for i in range(32))


def datagrams(rng: random.Random) -> list[bytes]:
    head = wire.encode_header(7, 0x1122334455667788)
    bodies = [
        wire.frame(wire.MSG, wire.encode_msg_body(b"a.b", b"", b"", (), b"x" * rng.randrange(64))),
        wire.frame(
            wire.MSG,
            wire.encode_msg_body(b"r", b"_INBOX.1", wire.encode_headers({"k": "v"}), (b"q",), b"y"),
        ),
        wire.encode_frag(5, 3000, 0, wire.MSG, b"z" * 100),
        wire.frame(wire.WINDOW, wire.window_body(1234, 4 << 20)),
        wire.frame(wire.ACK, wire.stream_number_body(2, 99, 5)),
        wire.frame(wire.TAIL, wire.stream_number_body(1, 99, 9)),
    ]
    out = [head + b for b in bodies]
    out.append(head + wire.position_frame(4096, 1) + bodies[0])
    seq = wire.seq_frame(2, 99, 3)
    for b in bodies[:2]:
        d = bytearray(head + seq + b)
        wire.write_seq(d, len(head), 2, 99, 3)
        out.append(bytes(d))
    for encrypt in (False, True):
        sealer = security.Sealer(security.Keyring(FUZZ_KEY), encrypt)
        out += [sealer.seal(d) for d in out[:4]]
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: fuzz_seeds.py DIR", file=sys.stderr)
        return 2
    rng = random.Random(1)
    seeds = datagrams(rng)
    for part in range(4):
        for i, d in enumerate(seeds):
            with open(os.path.join(argv[0], f"seed-{part}-{i}"), "wb") as f:
                f.write(bytes([part]) + d)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
