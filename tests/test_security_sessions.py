"""security.mode between sessions: keys from files, sealed traffic that flows, and traffic
that does not belong (wrong key, no key, replayed) dropped and counted."""

from __future__ import annotations

import asyncio
import os
import random
import socket
from pathlib import Path
from typing import Any

import pytest

import insane
from insane.ops.metrics import STORE
from insane.qos import load_config
from insane.qos.config import ConfigError
from insane.qos.keys import load_keyring


def key_file(tmp_path: Path, name: str = "key", size: int = 32) -> str:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))  # as `head -c 32 /dev/urandom > key` makes it
    return str(path)


def config(domain: int, mode: str, key: str | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {"domain": domain, "discovery": {"settle": 0.2}}
    if key is not None:
        cfg["security"] = {"mode": mode, "key_file": key}
    return cfg


@pytest.mark.parametrize("mode", ["authenticate", "encrypt"])
async def test_sessions_sharing_a_key_talk(tmp_path: Path, mode: str) -> None:
    domain, key = random.randrange(1, 2**32), key_file(tmp_path)
    async with (
        insane.connect(config(domain, mode, key), name="a") as a,
        insane.connect(config(domain, mode, key), name="b") as b,
    ):
        sub = await b.subscribe("s.x")

        async def echo(msg: insane.Msg) -> None:
            await msg.respond(msg.data[::-1])

        await b.subscribe("s.echo", cb=echo)
        await a.flush()
        for i in range(50):
            await a.publish("s.x", b"%d" % i + b"." * 3000)  # fragmented too
        assert [(await sub.next_msg(2)).data[:2] for _ in range(3)] == [b"0.", b"1.", b"2."]
        assert (await a.request("s.echo", b"abc", timeout=2)).data == b"cba"


async def test_a_peer_with_another_key_or_none_gets_nowhere(tmp_path: Path) -> None:
    domain = random.randrange(1, 2**32)
    good = config(domain, "encrypt", key_file(tmp_path, "good"))
    before = {
        r: STORE.total("insane_dropped", reason=r) for r in ("unknown_key", "unauthenticated")
    }
    async with insane.connect(good, name="a") as a:
        sub = await a.subscribe("s.x")
        for cfg in (config(domain, "encrypt", key_file(tmp_path, "bad")), config(domain, "", None)):
            async with insane.connect(cfg, name="intruder") as intruder:
                await asyncio.sleep(0.3)
                assert [p.name for p in a.peers] == []  # never admitted
                assert intruder.peers == []
                await intruder.publish("s.x", b"forged")
        with pytest.raises(insane.errors.TimeoutError):
            await sub.next_msg(0.3)
    assert STORE.total("insane_dropped", reason="unknown_key") > before["unknown_key"]
    assert STORE.total("insane_dropped", reason="unauthenticated") > before["unauthenticated"]


async def test_a_replayed_datagram_is_dropped(tmp_path: Path) -> None:
    domain, key = random.randrange(1, 2**32), key_file(tmp_path)
    async with (
        insane.connect(config(domain, "authenticate", key), name="a") as a,
        insane.connect(config(domain, "authenticate", key), name="b") as b,
    ):
        sub = await b.subscribe("s.x")
        await a.flush()
        captured: list[bytes] = []
        real = a._driver.udp.send_batch

        def record(datagrams: Any) -> int:
            captured.extend(d for d, addr in datagrams if addr == b.address)
            return real(datagrams)

        a._driver.udp.send_batch = record  # type: ignore[method-assign]
        await a.publish("s.x", b"once")
        assert (await sub.next_msg(2)).data == b"once"
        before = STORE.total("insane_dropped", reason="replay")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
            for d in captured:
                attacker.sendto(d, b.address)  # the capture, played again
        with pytest.raises(insane.errors.TimeoutError):
            await sub.next_msg(0.3)
        assert STORE.total("insane_dropped", reason="replay") > before


async def test_bad_keys_fail_at_connect_naming_file_and_key(tmp_path: Path) -> None:
    short = key_file(tmp_path, "short", size=16)
    with pytest.raises(ConfigError, match=r"security\.key_file: expected at least 32 bytes"):
        await insane.connect(config(1, "encrypt", short))
    with pytest.raises(ConfigError, match=r"security: expected key_file or key_env"):
        await insane.connect({"domain": 1, "security": {"mode": "authenticate"}})


def test_key_files_are_relative_to_the_yaml_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service started from elsewhere (systemd: cwd /) finds the key beside its YAML."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "domain.key").write_bytes(os.urandom(32))
    (etc / "old.key").write_bytes(os.urandom(32))
    (etc / "insane.yaml").write_text(
        "security: {mode: encrypt, key_file: domain.key, previous_key_file: old.key}\n"
        "metrics: {targets_dir: targets}\n"
    )
    monkeypatch.chdir(tmp_path)
    cfg = load_config(etc / "insane.yaml")
    ring = load_keyring(cfg)
    assert ring is not None
    assert cfg.file_path("targets") == str(etc / "targets")
    assert cfg.file_path("/abs/key") == "/abs/key"
    (etc / "domain.key").unlink()
    with pytest.raises(ConfigError) as e:
        load_keyring(cfg)
    assert str(e.value) == (
        f"{etc / 'insane.yaml'}: security.key_file: expected a readable key file, got "
        f"'domain.key' ({etc / 'domain.key'}: No such file or directory)"
    )
    # Without a file behind the configuration, paths stay relative to the working directory.
    assert load_config({}).file_path("k") == "k"
