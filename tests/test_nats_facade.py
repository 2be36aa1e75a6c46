"""The NATS facade's surface, checked against nats-py itself (no server needed): every connect
option, every error class with its hierarchy, the objects handed out being INSANE's own, and
the broker features that raise a clear error. Behaviour is compared with a real nats-server in
test_nats_differential.py."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats as real_nats
import nats.aio.client
import nats.aio.msg
import nats.aio.subscription
import nats.errors
import pytest

import compat.nats as nats_facade
import insane
from compat.nats import errors
from compat.nats.aio.client import Client

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def domain_config() -> dict[str, Any]:
    return {"domain": random.randrange(1, 2**32)}


@pytest.fixture
async def nc(domain_config: dict[str, Any]) -> AsyncIterator[Client]:
    c = await nats_facade.connect(insane_config=domain_config)
    try:
        yield c
    finally:
        await c.close()


def test_connect_accepts_every_nats_py_option_with_the_same_default() -> None:
    theirs = inspect.signature(nats.aio.client.Client.connect).parameters
    ours = inspect.signature(Client.connect).parameters
    missing = [name for name in theirs if name not in ours]
    assert not missing, f"connect() lacks nats-py options {missing}"
    for name, p in theirs.items():
        assert ours[name].default == p.default, name
        assert ours[name].kind == p.kind, name


def test_module_level_connect_has_nats_py_signature() -> None:
    theirs = inspect.signature(real_nats.connect).parameters
    ours = inspect.signature(nats_facade.connect).parameters
    assert list(theirs) == list(ours)
    assert theirs["servers"].default == ours["servers"].default


def test_error_classes_have_nats_py_names_and_hierarchy() -> None:
    theirs = {
        n: c
        for n, c in vars(nats.errors).items()
        if isinstance(c, type) and issubclass(c, Exception) and c.__module__ == "nats.errors"
    }
    assert len(theirs) > 25
    for name, cls in theirs.items():
        ours = getattr(errors, name, None)
        assert ours is not None, f"compat.nats.errors lacks {name}"
        # Same ancestry among nats-py's classes (and the built-in ones, e.g. TimeoutError).
        their_bases = [
            b.__name__ for b in cls.__mro__ if b.__module__ in ("nats.errors", "builtins")
        ]
        our_bases = [
            b.__name__ for b in ours.__mro__ if b.__name__ in theirs or b.__module__ == "builtins"
        ]
        assert [b for b in our_bases if b in their_bases] == their_bases, name
    assert issubclass(errors.TimeoutError, asyncio.TimeoutError)
    assert issubclass(errors.FlushTimeoutError, errors.TimeoutError)
    assert issubclass(errors.DrainTimeoutError, errors.TimeoutError)


def test_the_errors_insane_raises_are_the_facade_classes() -> None:
    assert errors.TimeoutError is insane.errors.TimeoutError
    assert errors.Error is insane.errors.Error is insane.errors.InsaneError
    assert issubclass(errors.BrokerFeatureError, errors.Error)
    assert issubclass(errors.JetStreamMsgError, errors.NotJSMessageError)
    assert str(errors.NoRespondersError()) == str(nats.errors.NoRespondersError())
    e = errors.SlowConsumerError(subject="a", reply="r", sid=3, sub=None)
    assert (e.subject, e.reply, e.sid, e.sub) == ("a", "r", 3, None)


def test_message_and_subscription_carry_nats_py_surface() -> None:
    for name in ("subject", "reply", "data", "headers", "header", "sid", "respond", "ack", "nak"):
        assert hasattr(nats.aio.msg.Msg, name) or name in ("subject", "reply", "data", "headers")
        assert hasattr(nats_facade.Msg, name), name
    public = [
        n
        for n in vars(nats.aio.client.Client)
        if not n.startswith("_") and n not in ("set_server_pool", "server_pool", "ssl_context")
    ]
    missing = [
        n for n in public if not hasattr(Client, n) and n not in ("connected_server_version",)
    ]
    assert not missing, f"Client lacks {missing}"


async def test_objects_handed_out_are_insanes_own(nc: Client) -> None:
    sub = await nc.subscribe("fac.x")
    await nc.publish("fac.x", b"hi", headers={"k": "v"})
    msg = await sub.next_msg(timeout=1)
    assert type(sub) is insane.Subscription
    for name in (
        "subject",
        "queue",
        "next_msg",
        "messages",
        "unsubscribe",
        "drain",
        "pending_msgs",
        "pending_bytes",
        "delivered",
    ):
        assert hasattr(nats.aio.subscription.Subscription, name), name
        assert hasattr(sub, name), name
    assert type(msg) is insane.Msg
    assert msg.header == {"k": "v"} and msg.sid == sub.sid
    assert nc.session is not None and isinstance(nc.session, insane.Session)
    assert nc.is_connected and not nc.is_closed
    assert nc.client_id == nc.session.peer_id
    assert nc.connected_url is not None and nc.connected_url.scheme == "insane"
    assert nc.servers[0].geturl() == "nats://localhost:4222"
    assert nc.max_payload == nc.session.max_payload
    assert nc.new_inbox().startswith("_INBOX.")
    assert nc.stats["out_msgs"] >= 0


async def test_broker_features_raise_a_clear_error(nc: Client) -> None:
    with pytest.raises(errors.BrokerFeatureError, match="NATS server"):
        nc.jetstream()
    with pytest.raises(errors.Error):
        nc.jsm()
    sub = await nc.subscribe("fac.js")
    await nc.publish("fac.js", b"x", reply="fac.r")
    msg = await sub.next_msg(timeout=1)
    for op in (msg.ack(), msg.nak(), msg.term(), msg.in_progress(), msg.ack_sync()):
        with pytest.raises(errors.NotJSMessageError):
            await op
    with pytest.raises(errors.BrokerFeatureError):
        _ = msg.metadata
    assert msg.is_acked is False


async def test_broker_only_options_are_accepted_and_logged(
    domain_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    async def cb(*args: Any) -> None:
        pass

    caplog.set_level(logging.DEBUG, logger="insane.nats")
    c = await nats_facade.connect(
        ["nats://a:4222", "tls://b:4443"],
        name="opts",
        user="u",
        password="p",
        token="t",
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        ping_interval=5,
        reconnected_cb=cb,
        discovered_server_cb=cb,
        lame_duck_mode_cb=cb,
        pending_size=1,
        flush_timeout=1.0,
        inbox_prefix="MY",
        no_echo=True,
        insane_config=domain_config,
    )
    try:
        text = caplog.text
        for option in ("user", "password", "token", "max_reconnect_attempts", "ping_interval"):
            assert f"connect({option}=...) has no effect" in text
        assert "connect(no_echo=True) is not supported" in text
        assert [u.netloc for u in c.servers] == ["a:4222", "b:4443"]
        assert c.session is not None and c.session.name == "opts"
    finally:
        await c.close()


async def test_closed_and_disconnected_callbacks_once(domain_config: dict[str, Any]) -> None:
    calls: list[str] = []

    async def closed() -> None:
        calls.append("closed")

    async def disconnected() -> None:
        calls.append("disconnected")

    c = await nats_facade.connect(
        insane_config=domain_config, closed_cb=closed, disconnected_cb=disconnected
    )
    await c.close()
    await c.close()
    assert calls == ["disconnected", "closed"]
    async with await nats_facade.connect(insane_config=domain_config, closed_cb=closed) as c2:
        pass
    assert c2.is_closed and calls[-1] == "closed"


async def test_drain_timeout_reports_and_closes(domain_config: dict[str, Any]) -> None:
    seen: list[Exception] = []

    async def error_cb(e: Exception) -> None:
        seen.append(e)

    release = asyncio.Event()

    async def stuck(msg: Any) -> None:
        await release.wait()

    c = await nats_facade.connect(insane_config=domain_config, error_cb=error_cb, drain_timeout=0.2)
    await c.subscribe("fac.stuck", cb=stuck)
    await c.publish("fac.stuck", b"")
    await asyncio.sleep(0.02)
    await c.drain()
    release.set()
    assert c.is_closed
    assert [type(e) for e in seen] == [errors.DrainTimeoutError]


async def test_config_from_insane_config_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "insane.yaml"
    path.write_text(
        f"domain: {random.randrange(1, 2**32)}\nchannels:\n  'fac.>': {{qos: [fast]}}\n"
    )
    monkeypatch.setenv("INSANE_CONFIG", str(path))
    c = await nats_facade.connect()
    try:
        assert c.session is not None
        assert c.session.config.source == str(path)
        assert c.session.config.qos_for("fac.x")[1].datapath == "fast"
    finally:
        await c.close()


async def test_publish_to_malformed_or_wildcard_subject_is_refused(nc: Client) -> None:
    """A deliberate difference: nats-py leaves the shape of a published subject to the server,
    which drops ``a..b`` silently and delivers ``a.*`` literally; INSANE refuses both."""
    for subject in ("a..b", "a.*", "a.>", ".a"):
        with pytest.raises(errors.BadSubjectError):
            await nc.publish(subject, b"")


def test_compat_is_importable_as_installed(tmp_path: Path) -> None:
    """``import compat.nats`` works from any directory (the editable install provides it), and
    is ``insane.nats`` itself, submodules and exception classes included."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = (
        "import compat.nats as c, insane.nats as i\n"
        "from compat.nats.errors import TimeoutError as T\n"
        "from compat.nats.aio.client import Client\n"
        "assert c is i and T is i.errors.TimeoutError and Client is i.Client\n"
        "print(c.connect.__module__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "insane.nats"


def test_insane_nats_works_beside_an_apps_own_compat_module(tmp_path: Path) -> None:
    """An app with a ``compat.py`` of its own shadows our ``compat`` package; it imports the
    facade as ``insane.nats`` and runs the same."""
    (tmp_path / "compat.py").write_text("VALUE = 1\n")
    (tmp_path / "app.py").write_text(
        "import asyncio\n"
        "import compat\n"
        "import insane.nats as nats\n"
        "async def main():\n"
        f"    nc = await nats.connect(insane_config={{'domain': {random.randrange(1, 2**32)}}})\n"
        "    sub = await nc.subscribe('x')\n"
        "    await nc.publish('x', b'hi')\n"
        "    print(compat.VALUE, (await sub.next_msg(timeout=2)).data.decode())\n"
        "    await nc.close()\n"
        "asyncio.run(main())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "app.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1 hi"
