"""A million mutated and random datagrams through every decoder on the receive path (the secure
opener, the header, the frame walk, the native scan, every body decoder): nothing but
WireError may come out, and memory stays bounded (benchmarks/fuzz_decoders.py)."""

from __future__ import annotations

from benchmarks import fuzz_decoders


def test_a_million_hostile_datagrams_are_only_ever_dropped() -> None:
    assert fuzz_decoders.main(["--count", "1000000", "--seed", "3"]) == 0
