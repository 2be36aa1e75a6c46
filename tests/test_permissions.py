"""Per-identity permissions (security.identities): what an identity may publish and subscribe
to is enforced where it publishes (a clear error) and where its traffic arrives (dropped and
counted), modelled on NATS permissions."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any

import pytest

import insane
from insane.ops.metrics import STORE
from insane.protocol.permissions import Permissions, Rules, covers


def test_patterns_cover_what_they_match() -> None:
    assert covers("a.>", "a.b.*") and covers("a.*", "a.b") and covers(">", "x.>")
    assert not covers("a.*", "a.>") and not covers("a.b", "a.*") and not covers("a.>", "a")
    p = Permissions(
        publish=Rules(allow=("sensors.>",), deny=("sensors.secret",)),
        subscribe=Rules(allow=("cmd.*",)),
    )
    assert p.may_publish("sensors.t") and not p.may_publish("sensors.secret")
    assert not p.may_publish("admin.x")
    assert p.may_subscribe("cmd.go") and p.may_subscribe("cmd.*") and not p.may_subscribe("cmd.>")


def config(tmp: Path, me: str, domain: int) -> dict[str, Any]:
    def key(name: str) -> str:
        path = tmp / name
        if not path.exists():
            path.write_bytes(os.urandom(32))
        return str(path)

    return {
        "domain": domain,
        "discovery": {"settle": 0.2},
        "security": {
            "mode": "authenticate",
            "identity": me,
            "identities": {
                "sensor": {
                    "key_file": key("sensor"),
                    "publish": {"allow": ["sensors.>"]},
                    "subscribe": {"deny": [">"]},
                },
                "dashboard": {
                    "key_file": key("dashboard"),
                    "publish": {"deny": [">"]},
                    "subscribe": {"allow": ["sensors.>", "admin.>"]},
                },
            },
        },
    }


async def test_identities_are_held_to_their_permissions(tmp_path: Path) -> None:
    domain = random.randrange(1, 2**32)
    sensor_cfg = config(tmp_path, "sensor", domain)
    dash_cfg = config(tmp_path, "dashboard", domain)
    async with (
        insane.connect(sensor_cfg, name="sensor") as sensor,
        insane.connect(dash_cfg, name="dash") as dash,
    ):
        readings = await dash.subscribe("sensors.>")
        admin = await dash.subscribe("admin.>")
        await sensor.flush()
        await sensor.publish("sensors.t", b"21.5")
        assert (await readings.next_msg(2)).data == b"21.5"
        with pytest.raises(insane.errors.PermissionDeniedError):
            await sensor.publish("admin.reboot", b"now")  # refused where it is published
        with pytest.raises(insane.errors.PermissionDeniedError):
            await sensor.subscribe("sensors.>")
        with pytest.raises(insane.errors.PermissionDeniedError):
            await dash.publish("sensors.t", b"fake")
        # A sensor that skips its own check (modified code) is stopped where it arrives.
        before = STORE.total("insane_dropped", reason="permission")
        ch = sensor._channels.get("admin.reboot")
        ch.may_publish = True
        await sensor.publish("admin.reboot", b"now")
        with pytest.raises(insane.errors.TimeoutError):
            await admin.next_msg(0.3)
        assert STORE.total("insane_dropped", reason="permission") > before
        await asyncio.sleep(0)


async def test_an_unknown_identity_name_fails_at_connect(tmp_path: Path) -> None:
    cfg = config(tmp_path, "sensor", 1)
    cfg["security"]["identity"] = "nobody"
    with pytest.raises(insane.ConfigError, match=r"security\.identity: expected one of"):
        await insane.connect(cfg)


async def test_limits_on_subscriptions_and_peers() -> None:
    domain = random.randrange(1, 2**32)
    cfg: dict[str, Any] = {"domain": domain, "limits": {"max_subscriptions": 3, "max_peers": 1}}
    async with insane.connect(cfg, name="small") as s:
        for i in range(3):
            await s.subscribe(f"x.{i}")
        with pytest.raises(insane.errors.Error, match="max_subscriptions"):
            await s.subscribe("x.3")
        before = STORE.total("insane_dropped", reason="too_many_peers")
        async with (
            insane.connect({"domain": domain}, name="first") as _first,
            insane.connect({"domain": domain}, name="second") as _second,
        ):
            await asyncio.sleep(0.5)
            assert len(s.peers) == 1  # the second is refused, and it is counted
            assert STORE.total("insane_dropped", reason="too_many_peers") > before
